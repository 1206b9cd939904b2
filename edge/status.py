"""What the agent tells people about itself: the rejection ledger and the status file.

How this works: every adapter outcome is recorded in the `Ledger` (mapped, forwarded nothing with a note,
or rejected with a code), rejections counted per (adapter, device, code) with the last reason, so an
operator sees *which* device sends *what* we cannot read. The agent writes a JSON snapshot to the status
file every few seconds (write to a temporary file, then rename: a reader never sees half a file), and
`shouwang edge status` reads it back. Beside it, `<status>.prom` holds the same figures in Prometheus's text format
for node_exporter's textfile collector (the gateway's metrics, docs/operations.md). The patrol heartbeat carries `rejected_total` to the centre.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import ProcessCollector, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from edge.adapters import Mapped, Outcome

__all__ = ["Ledger", "read_status", "write_status"]

log = logging.getLogger("edge.rejections")


@dataclass(slots=True)
class _Rejections:
    count: int
    last_detail: str
    last_topic: str


class Ledger:
    def __init__(self) -> None:
        self.lan_messages = 0
        self.mapped = 0
        self.silent = 0  # understood, nothing to forward (see the note)
        self.rejected_total = 0
        self._rejected: dict[tuple[str, str, str], _Rejections] = {}

    def record(self, outcome: Outcome) -> None:
        self.lan_messages += 1
        if isinstance(outcome, Mapped):
            if outcome.messages:
                self.mapped += 1
            else:
                self.silent += 1
            return
        self.rejected_total += 1
        key = (outcome.adapter, outcome.device or "-", outcome.code.value)
        entry = self._rejected.get(key)
        if entry is None:
            entry = self._rejected[key] = _Rejections(0, "", "")
        entry.count += 1
        entry.last_detail = outcome.detail
        entry.last_topic = outcome.topic
        # 1st, 10th, 100th... of a kind: enough to notice, never a log flood from one chatty device
        if len(str(entry.count)) == str(entry.count).count("0") + 1 and str(entry.count).startswith("1"):
            log.warning(
                "rejected (%s x%d) adapter=%s device=%s topic=%r: %s", outcome.code.value, entry.count, outcome.adapter, key[1], outcome.topic, outcome.detail
            )

    def rejections(self) -> list[dict[str, Any]]:
        return [
            {"adapter": a, "device": d, "code": c, "count": e.count, "last_detail": e.last_detail, "last_topic": e.last_topic}
            for (a, d, c), e in sorted(self._rejected.items(), key=lambda kv: -kv[1].count)
        ]

    def by_adapter(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (a, _, _), e in self._rejected.items():
            out[a] = out.get(a, 0) + e.count
        return out


def write_status(path: Path, status: dict[str, Any]) -> None:
    """The JSON status file, and beside it (same name, `.prom`) the same figures in Prometheus's text format for
    node_exporter's textfile collector (docs/operations.md); both replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    write_to_textfile(str(path.with_suffix(".prom")), _registry(status))


class _StatusCollector(Collector):
    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        s, gw = self.status, [str(self.status.get("gateway", ""))]

        def gauge(name: str, doc: str, value: Any) -> Metric:
            m = GaugeMetricFamily(name, doc, labels=["gateway"])
            m.add_metric(gw, float(value or 0))
            return m

        def counter(name: str, doc: str, value: Any) -> Metric:
            m = CounterMetricFamily(name, doc, labels=["gateway"])
            m.add_metric(gw, float(value or 0))
            return m

        lan, up, ob, intake = s.get("lan", {}), s.get("uplink", {}), s.get("outbox", {}), s.get("intake", {})
        yield counter("shouwang_edge_lan_messages", "Messages read from the building's LAN broker.", intake.get("lan_messages"))
        yield counter("shouwang_edge_mapped", "LAN messages mapped to contract messages.", intake.get("mapped"))
        rejected = CounterMetricFamily("shouwang_edge_rejected", "LAN messages the adapters could not read, by adapter and reason code.",
                                       labels=["gateway", "adapter", "reason"])
        by_code: dict[tuple[str, str], int] = {}
        for r in s.get("rejections", []):
            key = (str(r.get("adapter")), str(r.get("code")))
            by_code[key] = by_code.get(key, 0) + int(r.get("count", 0))
        for (adapter, code), n in sorted(by_code.items()):
            rejected.add_metric([*gw, adapter, code], float(n))
        yield rejected
        yield gauge("shouwang_edge_lan_connected", "1 while connected to the LAN broker.", int(bool(lan.get("connected"))))
        yield gauge("shouwang_edge_uplink_connected", "1 while connected to the centre's broker.", int(bool(up.get("connected"))))
        yield counter("shouwang_edge_forwarded", "Messages the centre acknowledged.", up.get("forwarded_total"))
        depth = GaugeMetricFamily("shouwang_edge_outbox_depth", "Messages waiting in the outbox, by priority.", labels=["gateway", "priority"])
        for priority, n in sorted(ob.get("depth", {}).items()):
            depth.add_metric([*gw, str(priority)], float(n))
        yield depth
        yield gauge("shouwang_edge_outbox_bytes", "Bytes held by the outbox.", ob.get("stored_bytes"))
        yield counter("shouwang_edge_outbox_evicted", "Low-priority messages evicted from a full outbox (never life-safety).", ob.get("evicted_total"))
        yield gauge("shouwang_edge_status_written_seconds", "When the agent last wrote its status (Unix time): a stale file is a dead agent.",
                    (s.get("written_ms") or 0) / 1000)


def _registry(status: dict[str, Any]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_StatusCollector(status))
    ProcessCollector(registry=registry)  # the agent's own memory and CPU (written from the agent's process)
    return registry


def read_status(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
