"""Issue 19: a round of notices published at once on the real broker is normal, not a warning per publish (aiomqtt's
default threshold of 10 pending publishes logged ~7,400 lines in a 2,000-alarm storm, on the event loop)."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import pytest

from backend.notify.publisher import MqttPublisher
from broker.process import MosquittoProcess

pytestmark = pytest.mark.mosquitto


async def test_a_round_of_notices_published_at_once_logs_no_warning(mosquitto: MosquittoProcess, caplog: pytest.LogCaptureFixture) -> None:
    n = 300  # a round of 100 notices on the app, the sounder and the display
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="app-listener") as app:
        await app.subscribe("bench/notice/#", qos=1)
        async with MqttPublisher(mosquitto.host, mosquitto.port, client_id="backend-notify") as pub:
            with caplog.at_level(logging.WARNING):
                await asyncio.gather(*(pub.publish(f"bench/notice/{i}", b"{}") for i in range(n)))
        got = 0
        async with asyncio.timeout(10):
            async for _ in app.messages:
                got += 1
                if got == n:
                    break
    assert got == n
    assert not [r for r in caplog.records if "pending publish calls" in r.getMessage()]
