"""The agent's LAN side without brokers: what a batch of LAN messages leaves in the outbox, across an agent
restart (latches) and when an adapter fails on a message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiomqtt import Message

from broker.ids import DeviceId
from broker.kinds import EventKind, Priority
from broker.schemas import DeviceEvent, decode_uplink
from edge import EdgeAgent
from edge.adapters.zigbee2mqtt import Zigbee2MqttAdapter
from edge.config import parse_config
from edge.outbox import OutboxError


def config(tmp_path: Path) -> dict[str, Any]:
    return {
        "gateway": "gw-b01", "lan": {"host": "127.0.0.1", "port": 1}, "uplink": {"host": "127.0.0.1", "port": 1},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        "adapters": [{"dialect": "zigbee2mqtt", "prefix": "zigbee2mqtt",
                      "devices": {f"smoke_{k}": {"id": f"smoke-{k}", "kind": "smoke"} for k in range(3)}}],
    }


def lan(device: str, payload: dict[str, Any], mid: int = 1) -> Message:
    return Message(f"zigbee2mqtt/{device}", json.dumps(payload).encode(), 1, False, mid, None)


def events(agent: EdgeAgent) -> list[tuple[str, EventKind]]:
    rows = agent.outbox.take(list(Priority), 100)
    out = []
    for r in rows:
        msg = decode_uplink(r.topic, r.payload).message
        if isinstance(msg, DeviceEvent):
            out.append((r.topic.split("/")[-2], msg.event))
    return out


def test_a_detector_alarming_before_an_agent_restart_still_sends_its_clear(tmp_path: Path) -> None:
    first = EdgeAgent(parse_config(config(tmp_path)))
    first.open_state()
    first.accept_lan([lan("smoke_0", {"smoke": True}), lan("smoke_1", {"smoke": False}, 2)])
    assert events(first) == [("smoke-0", EventKind.SMOKE_ALARM)]
    first.outbox.close()  # the agent restarts (power cut at the gateway)
    again = EdgeAgent(parse_config(config(tmp_path)))
    again.open_state()
    again.accept_lan([lan("smoke_0", {"smoke": False}), lan("smoke_1", {"smoke": False}, 2)])
    taken = events(again)
    assert ("smoke-0", EventKind.SMOKE_CLEAR) in taken, f"the clear of the detector that was alarming: {taken}"
    assert not any(d == "smoke-1" for d, _ in taken), "a detector that never alarmed sends no clear"
    assert again.outbox.raised_latches() == {}, "nothing is raised any more"
    again.outbox.close()


def test_an_adapter_that_fails_on_a_message_costs_that_message_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in an adapter (here injected: Zigbee2MQTT raising on one payload) must not end the LAN intake: the
    message is rejected as `adapter_error`, counted and logged, and the smoke alarms around it are kept."""
    real_handle = Zigbee2MqttAdapter.handle

    def buggy(self: Zigbee2MqttAdapter, topic: str, payload: bytes, retained: bool, ctx: Any) -> Any:
        if b"boom" in payload:
            raise KeyError("a bug in the adapter")
        return real_handle(self, topic, payload, retained, ctx)

    monkeypatch.setattr(Zigbee2MqttAdapter, "handle", buggy)
    agent = EdgeAgent(parse_config(config(tmp_path)))
    agent.open_state()
    try:
        batch = [Message(f"zigbee2mqtt/smoke_{k}", payload, 1, False, k + 1, None)
                 for k, payload in enumerate([b'{"smoke": true}', b'{"smoke": true, "boom": 1}', b'{"smoke": true}'])]
        agent.accept_lan(batch)
        assert agent.outbox.pending(Priority.LIFE_SAFETY) == 2, "the smoke alarms on either side of the failing message are kept"
        assert agent.ledger.rejected_total == 1
        [entry] = [e for k, e in agent.ledger._rejected.items() if k[2] == "adapter_error"]
        assert "KeyError" in entry.last_detail
    finally:
        agent.outbox.close()


def test_a_batch_the_outbox_cannot_take_leaves_its_edges_to_be_made_again(tmp_path: Path) -> None:
    """A real SQLite 'database or disk is full' (max_page_count at the file's size): nothing is stored, the error
    reaches the LAN loop (which reconnects so the broker redelivers), and the redelivered smoke is still an alarm,
    not a repeat of an edge that was never sent."""
    agent = EdgeAgent(parse_config(config(tmp_path)))
    agent.open_state()
    db = agent.outbox.db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(OutboxError, match="full"):
        agent.accept_lan([lan("smoke_0", {"smoke": True})] + [lan("smoke_1", {"smoke": False, "battery": k}, 2 + k) for k in range(200)])
    assert events(agent) == [], "nothing was stored"
    assert agent.outbox.raised_latches() == {}
    assert agent.liveness.state(DeviceId("smoke-0")) is None, "not heard: its first report was not stored"
    db.execute("PRAGMA max_page_count = 1073741823")  # the disk has room again; the broker redelivers
    agent.accept_lan([lan("smoke_0", {"smoke": True})])
    assert events(agent) == [("smoke-0", EventKind.SMOKE_ALARM)]
    online = [t for (t,) in db.execute("SELECT topic FROM outbox") if t.endswith("smoke-0/availability")]
    assert len(online) == 1, "its first report makes it online, once"
    agent.outbox.close()
