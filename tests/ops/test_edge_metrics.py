"""The gateway's metrics: every status write leaves `<status>.prom` beside the JSON status file, in Prometheus's text
format for node_exporter's textfile collector: messages in, rejections by adapter and reason, outbox depth, the two
connections, and the agent's own memory."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from edge.status import write_status

STATUS = {
    "gateway": "c01-gw-b01",
    "written_ms": 1_765_000_000_000,
    "lan": {"connected": True, "connects": 1, "outbox_failures": 0, "host": "127.0.0.1", "port": 1883},
    "uplink": {"connected": False, "connects": 2, "forwarded_total": 41, "last_error": "refused", "host": "centre", "port": 8883},
    "outbox": {"depth": {"life_safety": 1, "telemetry": 250}, "stored_bytes": 64_000, "in_flight": 0, "accepted_total": 292, "acked_total": 41,
               "evicted_total": 3, "over_bound": False},
    "intake": {"lan_messages": 300, "mapped": 292, "nothing_to_forward": 3, "rejected_total": 5},
    "rejections": [{"adapter": "tasmota:tele", "device": "d1", "code": "unknown_device", "count": 4},
                   {"adapter": "tasmota:tele", "device": "d2", "code": "unknown_device", "count": 1}],
}


def test_the_status_write_leaves_a_prometheus_textfile(tmp_path: Path) -> None:
    write_status(tmp_path / "status.json", STATUS)
    text = (tmp_path / "status.prom").read_text(encoding="utf-8")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text) for s in fam.samples}
    gw = ("gateway", "c01-gw-b01")
    assert samples[("shouwang_edge_lan_messages_total", (gw,))] == 300
    assert samples[("shouwang_edge_rejected_total", (("adapter", "tasmota:tele"), gw, ("reason", "unknown_device")))] == 5
    assert samples[("shouwang_edge_outbox_depth", (gw, ("priority", "life_safety")))] == 1
    assert samples[("shouwang_edge_outbox_depth", (gw, ("priority", "telemetry")))] == 250
    assert samples[("shouwang_edge_uplink_connected", (gw,))] == 0
    assert samples[("shouwang_edge_lan_connected", (gw,))] == 1
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert not list(tmp_path.glob("*.tmp*")), "written atomically: no temporary file left for the collector to read"
