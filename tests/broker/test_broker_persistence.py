"""A broker started with a persistence folder keeps a subscriber's session and its queued messages across a restart,
also when the folder did not exist yet (Mosquitto does not create it; it only logs that it cannot save)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from broker.embedded import free_port
from broker.process import MosquittoProcess, open_config


async def test_a_persistent_session_and_its_queued_message_survive_a_restart_in_a_new_folder(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "not-yet" / "data"
    config = open_config(port, persistence_dir=data)
    assert data.is_dir()
    with MosquittoProcess(tmp_path / "run", port=port, config=config) as broker:
        async with aiomqtt.Client(broker.host, port, identifier="centre", clean_session=False) as centre:
            await centre.subscribe("t/#", qos=1)
        async with aiomqtt.Client(broker.host, port, identifier="gateway") as gateway:
            await gateway.publish("t/smoke", b"queued while the centre is away", qos=1)
        broker.stop()  # a clean stop saves the sessions
        broker.start()
        async with aiomqtt.Client(broker.host, port, identifier="centre", clean_session=False) as centre:
            async with asyncio.timeout(10):
                message = await anext(aiter(centre.messages))
        assert (str(message.topic), message.payload) == ("t/smoke", b"queued while the centre is away")
        assert "Error saving" not in (tmp_path / "run" / "mosquitto.out").read_text(errors="replace")

