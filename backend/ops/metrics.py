"""Prometheus metrics of one process (`/metrics`, Prometheus text format), read from the stats components already keep.

How this works: `Metrics` owns a private `CollectorRegistry` (never the library's global one: tests run many
backends in one process). Three kinds of figures go into it:

- histograms observed as things happen: the life-safety latency per stage (`ingest`: MQTT intake to the
  hand-off to alerting, from the pipeline's own latency record; `raise`: the device's event time to the alarm
  committed, from the alarm service's listener) and the event-loop lag (backend/loopwatch.py's heartbeat);
- counters and gauges copied at scrape time from the stats the process already keeps (`stats()`: what
  /api/ingest/stats serves: ingest counters, rejections by reason, lanes, backlog, rules seat, loop, memory);
- figures read from the alarm database at scrape time, in a worker thread: open alarms by state, ladder
  deadlines missed by rung, notices by channel and outcome, the notice outbox's depth, the scale-out uplink
  queue's depth. If the database does not answer, `shouwang_store_up` is 0 and the rest is still served.

`render()` is called on the event loop: it reads the in-loop stats there (no thread touches the
components' counters), the database in a thread, then encodes. Names are listed in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, GCCollector, Histogram, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from alerting.model import Persist
from backend.stream import Event

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS_S", "Metrics", "ObservedList", "stats_families", "store_families"]

log = logging.getLogger(__name__)

# Life-safety targets are in hundreds of milliseconds (docs/reliability.md): fine buckets below a second,
# coarse ones up to the ladder's first deadline scale.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_MIB = 1024 * 1024


class ObservedList(list[float]):
    """A latency record (a plain list the pipeline appends to and trims) that also feeds a histogram, so the
    pipeline keeps its own bounded record and the histogram sees every value, without a second counting path."""

    def __init__(self, items: Iterable[float], observe: Callable[[float], None]) -> None:
        super().__init__(items)
        self._observe = observe

    def append(self, value: float) -> None:
        super().append(value)
        self._observe(value)


class _Snapshot(Collector):
    """Families computed by `Metrics.render` just before encoding."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


def _counter(name: str, doc: str, value: object, labels: Mapping[str, str] | None = None) -> CounterMetricFamily | None:
    if not isinstance(value, int | float):
        return None
    m = CounterMetricFamily(name, doc, labels=list(labels or {}))
    m.add_metric(list((labels or {}).values()), float(value))
    return m


def _gauge(name: str, doc: str, value: object) -> GaugeMetricFamily | None:
    if not isinstance(value, int | float):
        return None
    return GaugeMetricFamily(name, doc, value=float(value))


_INGEST_COUNTERS = {
    "accepted": ("shouwang_ingest_messages", "Messages accepted by ingest (after decoding and validation)."),
    "duplicates": ("shouwang_ingest_duplicates", "Redelivered or repeated messages recognised by (gateway, msg_id) and acknowledged once."),
    "reconnects": ("shouwang_ingest_broker_reconnects", "Times ingest lost the broker and reconnected."),
    "unknown_device_events": ("shouwang_ingest_unknown_device_events", "Life-safety events from devices not in the site directory (raised)."),
}
_LANE_COUNTERS = {
    "telemetry_messages": "Telemetry messages taken by the telemetry lane.",
    "readings_stored": "Readings written to the time-series store.",
    "uplinks_delivered": "Events, availability and status messages handed to alerting.",
    "dead_letters": "Messages alerting refused repeatedly, parked in dead-letters.jsonl.",
    "store_failures": "Failed time-series store writes (retried).",
    "feed_failures": "Failed hand-offs to alerting (retried).",
    "journal_failures": "Failed journal commits.",
    "sync_failures": "Batches alerting committed whose sync to the disk failed (left pending in the journal, offered again at the next start).",
    "replayed_from_journal": "Messages replayed from the journal after a restart.",
    "raised_cleaned": "Life-safety events refused for their content, then raised without detail and value.",
    "alerting_outages": "Times alerting (the alarm store or the uplink queue) became unavailable to ingest.",
}


def stats_families(stats: Mapping[str, Any]) -> list[Metric]:
    """The figures of /api/ingest/stats as Prometheus families (absent figures are left out)."""
    out: list[Metric | None] = []
    for key, (name, doc) in _INGEST_COUNTERS.items():
        out.append(_counter(name, doc, stats.get(key)))
    by_reason = stats.get("rejected_by_reason")
    if isinstance(by_reason, Mapping):
        rej = CounterMetricFamily("shouwang_ingest_rejected", "Messages rejected by ingest, by reason code (broker/errors.py).", labels=["reason"])
        for reason, n in sorted(by_reason.items()):
            rej.add_metric([str(reason)], float(n))
        out.append(rej)
    lanes = stats.get("lanes")
    if isinstance(lanes, Mapping):
        for key, doc in _LANE_COUNTERS.items():
            out.append(_counter(f"shouwang_ingest_{key}", doc, lanes.get(key)))
        if "alerting_down" in lanes:
            out.append(_gauge("shouwang_alerting_down", "1 while alerting is unavailable to ingest (events wait in the journal).",
                              int(bool(lanes["alerting_down"]))))
    out.append(_gauge("shouwang_ingest_telemetry_backlog", "Telemetry messages journaled but not yet stored (ingest keeping up: near 0).",
                      stats.get("backlog")))
    if "rules_leader" in stats:
        out.append(_gauge("shouwang_rules_leader", "1 while this backend holds the rules seat (cluster).", int(bool(stats["rules_leader"]))))
        out.append(_counter("shouwang_rules_terms", "Terms this backend has held the rules seat.", stats.get("rules_terms")))
        out.append(_counter("shouwang_rules_queue_rows", "Uplink-queue rows this backend applied as rules leader.", stats.get("rows")))
        out.append(_counter("shouwang_rules_parked_rows", "Uplink-queue rows the rules leader parked after bounded retries (their content).",
                            stats.get("parked")))
    loop = stats.get("loop")
    if isinstance(loop, Mapping):
        out.append(_counter("shouwang_event_loop_stalls", "Event-loop stalls longer than runtime.loop_stall_log_ms.", loop.get("stalls")))
        out.append(_counter("shouwang_full_gc", "Full garbage collections.", loop.get("full_gcs")))
        worst = loop.get("full_gc_worst_ms")
        out.append(_gauge("shouwang_full_gc_worst_seconds", "Longest full garbage collection pause.", worst / 1000 if isinstance(worst, int | float) else None))
        out.append(_counter("shouwang_young_gc", "Garbage collections of the young generations (0 and 1).", loop.get("young_gcs")))
        young = loop.get("young_gc_worst_ms")
        out.append(_gauge("shouwang_young_gc_worst_seconds", "Longest pause of a young-generation garbage collection (runtime.gc_thresholds).",
                          young / 1000 if isinstance(young, int | float) else None))
        memory = loop.get("memory")
        if isinstance(memory, Mapping):
            mem = GaugeMetricFamily("shouwang_memory_bytes", "Process memory by holder (backend/memstats.py): rss, anon, file, malloc_in_use, "
                                    "malloc_free_held, malloc_mmapped, anon_other, sqlite.", labels=["holder"])
            for key, mib in memory.items():
                if key.endswith("_mib") and isinstance(mib, int | float):
                    mem.add_metric([key.removesuffix("_mib")], float(mib) * _MIB)
            out.append(mem)
    return [m for m in out if m is not None]


def _table_exists(conn: sa.Connection, name: str) -> bool:
    return sa.inspect(conn).has_table(name)


def store_families(engine: sa.Engine) -> list[Metric]:
    """Figures read from the alarm database; `shouwang_store_up` 0 (and nothing else) when it does not answer."""
    from backend.alarms.schema import alarms
    from backend.escalation.store import escalation_log, outbox
    from backend.notify.receipts import receipts

    out: list[Metric] = []
    try:
        with engine.connect() as conn:
            a = alarms.c
            if _table_exists(conn, "alarms"):
                fam = GaugeMetricFamily("shouwang_alarms_open", "Open alarms (not drills) by state and life-safety.", labels=["state", "life_safety"])
                q = sa.select(a.state, a.life_safety, sa.func.count()).where(a.is_open, a.drill.is_(False)).group_by(a.state, a.life_safety)
                for state, life, n in conn.execute(q):
                    fam.add_metric([str(state), "true" if life else "false"], float(n))
                out.append(fam)
            if _table_exists(conn, "escalation_log"):
                e = escalation_log.c
                fam_late = CounterMetricFamily("shouwang_ladder_steps_late", "Ladder deadlines missed (a rung did not answer in time), by rung; "
                                               "drills not counted.", labels=["rung"])
                q = sa.select(e.rung, sa.func.count()).where(e.kind == "deadline_missed", e.drill.is_(False)).group_by(e.rung)
                for rung, n in conn.execute(q):
                    fam_late.add_metric([str(rung)], float(n))
                out.append(fam_late)
            if _table_exists(conn, "notify_outbox"):
                o = outbox.c
                depth = GaugeMetricFamily("shouwang_notify_outbox", "Notices queued and not yet delivered, by status (pending, sending).",
                                          labels=["status"])
                counts: dict[str, int] = dict(conn.execute(sa.select(o.status, sa.func.count()).where(o.status != "done").group_by(o.status)).all())
                for status in ("pending", "sending"):
                    depth.add_metric([status], float(counts.get(status, 0)))
                out.append(depth)
            if _table_exists(conn, "notify_receipts"):
                r = receipts.c
                fam_n = CounterMetricFamily("shouwang_notices", "Notices by channel and outcome (delivery receipts; drills not counted).",
                                            labels=["channel", "outcome"])
                q = sa.select(r.channel, r.status, sa.func.count()).where(r.drill.is_(False)).group_by(r.channel, r.status)
                for channel, status, n in conn.execute(q):
                    fam_n.add_metric([str(channel), str(status)], float(n))
                out.append(fam_n)
            if engine.dialect.name == "postgresql" and _table_exists(conn, "uplink_queue"):
                n = conn.execute(sa.text("SELECT count(*) FROM uplink_queue WHERE consumed_ms IS NULL")).scalar_one()
                out.append(GaugeMetricFamily("shouwang_uplink_queue_pending", "Scale-out uplink-queue rows not yet applied by the rules leader.",
                                             value=float(n)))
    except sa.exc.SQLAlchemyError as exc:
        log.debug("metrics: the alarm database did not answer: %s", exc)
        return [GaugeMetricFamily("shouwang_store_up", "1 when the alarm database answered the last scrape.", value=0.0)]
    out.append(GaugeMetricFamily("shouwang_store_up", "1 when the alarm database answered the last scrape.", value=1.0))
    return out


class Metrics:
    """The metrics of one process. `stats` and `engine` are read at every scrape; hooks feed the histograms."""

    def __init__(self, *, stats: Callable[[], Mapping[str, Any]] | None = None, engine: sa.Engine | None = None, process: str = "backend") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._stats = stats
        self._engine = engine
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.latency = Histogram("shouwang_life_safety_latency_seconds", "Life-safety message latency by stage: ingest (MQTT intake to the "
                                 "hand-off to alerting), raise (the device's event time to the alarm committed).", ["stage"],
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.loop_lag = Histogram("shouwang_event_loop_lag_seconds", "How much later than asked the event loop's heartbeat woke up.",
                                  buckets=LAG_BUCKETS_S, registry=self.registry)
        info = GaugeMetricFamily("shouwang_process_info", "What this process is.", labels=["process"])
        info.add_metric([process], 1.0)
        self._info = info

    def watch_pipeline(self, lanes: Any) -> None:
        """Feed the ingest stage from the pipeline's own life-safety latency record (backend/ingest/lanes.py LaneStats)."""
        observe = self.latency.labels(stage="ingest").observe
        lanes.life_safety_latency_s = ObservedList(lanes.life_safety_latency_s, observe)

    def alarm_listener(self, now_ms: Callable[[], int]) -> Callable[[Sequence[Event]], Any]:
        """A subscriber of the centre's stream observing the raise stage of every newly raised life-safety alarm (drills excluded)."""
        raised = self.latency.labels(stage="raise")

        async def listener(actions: Sequence[Event]) -> None:
            now = now_ms()
            for act in actions:
                if isinstance(act, Persist) and act.alarm.life_safety and not act.alarm.drill and any(e.from_state is None for e in act.audit):
                    raised.observe(max(0, now - act.alarm.first_seen_ms) / 1000)

        return listener

    async def render(self) -> bytes:
        families: list[Metric] = [self._info]
        if self._stats is not None:
            families += stats_families(self._stats())
        if self._engine is not None:
            families += await asyncio.to_thread(store_families, self._engine)
        self._snapshot.families = families
        return generate_latest(self.registry)
