"""The MQTT notice channel against a real Mosquitto: a responder's app receives the notice on its own topic."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from alerting.ladder import Contact
from backend.notify import Message
from backend.notify.mqtt import MqttNoticeChannel
from broker.notices import decode_notice
from broker.process import MosquittoProcess
from broker.topics import building_notice_topic, responder_notice_topic

pytestmark = pytest.mark.mosquitto


async def test_responder_app_and_building_sounder_receive_notices(mosquitto: MosquittoProcess) -> None:
    msg = Message(key="A1/1/c01-g1-w1", alarm_id="A1", contact=Contact("c01-g1-w1", "杨敏"), channels=("app",), text="【守望】紧急烟感报警。回复链接：https://sw.example/r/t",
                  title="烟感报警", link="https://sw.example/r/t", building="c01-b01", severity="critical", created_ms=1)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="app-c01-g1-w1") as app, \
            aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="backend-notify") as backend:
        await app.subscribe(str(responder_notice_topic("c01-g1-w1")), qos=1)
        await app.subscribe(str(building_notice_topic("c01-b01", "sounder")), qos=1)

        async def publish(topic: str, payload: bytes, qos: int) -> None:
            await backend.publish(topic, payload, qos=qos)

        app_channel, sounder = MqttNoticeChannel("app", publish), MqttNoticeChannel("sounder", publish)
        assert not app_channel.outside
        assert sounder.outside  # a sounder reaches every resident: drills need consent
        await app_channel.send(msg)
        await sounder.send(msg)
        got = {}
        async with asyncio.timeout(10):
            async for m in app.messages:
                got[str(m.topic)] = decode_notice(m.payload)
                if len(got) == 2:
                    break
    notice = got[str(responder_notice_topic("c01-g1-w1"))]
    assert notice.key == "A1/1/c01-g1-w1"
    assert notice.link is None  # any client of the broker may be listening (issue 22): the one-tap link goes by SMS only
    assert notice.text == "【守望】紧急烟感报警。"
    assert got[str(building_notice_topic("c01-b01", "sounder"))].building == "c01-b01"
