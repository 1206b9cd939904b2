"""Alarm-store writes per second (SQLite and PostgreSQL) and uplink-queue throughput (PostgreSQL): the
figures docs/scaling.md builds its capacity model on.

Figures:
  bare commit         single-row INSERT + COMMIT into a plain table: the baseline, same database, same run
  alarm write         AlarmStore.apply of one raised alarm (alarm row upsert + one audit entry) per transaction:
                      what the rules process pays per alarm change; ratio to the bare commit
  queue readings      uplink_queue rows/s written the way an ingest worker writes telemetry (QueueFeed:
                      1,000 rows per INSERT ... ON CONFLICT DO NOTHING + NOTIFY), one writer
  queue uplinks       uplink_queue rows/s written one per transaction (life-safety and status messages)
  queue consume       rows/s the rules leader marks consumed (fetch 500 pending, one fenced UPDATE per batch)
PostgreSQL is backend/store/pg_local.py's private server, which runs with fsync=off (the test setting): the
PostgreSQL figures are an upper bound for a server that fsyncs (a production server with a battery-backed or
NVMe disk commits in ~0.1-1 ms). SQLite runs as the alarm store does: WAL, synchronous=FULL.
Targets: an alarm write costs at most 5x a bare commit; the queue takes >= 5,000 readings rows/s (a street's
~300 msg/s with a wide margin).

    .venv/bin/python benchmarks/alarmstore.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from alerting.lifecycle import AlarmState
from alerting.model import Alarm, AlarmKey, AuditEntry, Persist, Place, Severity
from backend.alarms.store import AlarmStore
from backend.ingest.handoff import Reading
from backend.relay.queue import UplinkQueue, mark_consumed, readings_rows
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres

T0 = 1_767_225_600_000
TARGET_RATIO = 5.0
TARGET_QUEUE_ROWS_S = 5_000.0


def _alarm(i: int) -> Persist:
    a = Alarm(id=f"B{i:08d}", key=AlarmKey(f"device:d{i}", "smoke"), state=AlarmState.RAISED, severity=Severity.CRITICAL, life_safety=True,
              title="烟感报警 1号楼 3F", place=Place(f"d{i}", "gw1", "b01", 1, None), occurrences=1, first_seen_ms=T0 + i, last_seen_ms=T0 + i,
              raised_at_ms=T0 + i, updated_ms=T0 + i, audit_seq=1)
    return Persist(a, (AuditEntry(a.id, 0, T0 + i, "rules", "raise", None, AlarmState.RAISED),))


def _rate(n: int, fn: Callable[[int], object]) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def _store_figures(engine: sa.Engine, n: int, offset: int) -> tuple[float, float]:
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE IF NOT EXISTS bench_bare (id bigint PRIMARY KEY, v text)"))

    def bare(i: int) -> None:
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO bench_bare VALUES (:i, 'x')"), {"i": offset + i})

    store = AlarmStore(engine)
    bare_s = _rate(n, bare)
    alarm_s = _rate(n, lambda i: store.apply([_alarm(offset + i)]))
    return bare_s, alarm_s


def _queue_figures(url: str, rows: int) -> dict[str, float]:
    q = UplinkQueue(url)
    q.ensure_tables()
    readings = [Reading(f"d{i % 5000}", "gw1", "residual_current_ma", 3.0, T0 + i, T0 + i) for i in range(rows)]
    t = time.perf_counter()
    for i in range(0, rows, 1000):
        q.put_rows(readings_rows(readings[i:i + 1000]))
    readings_s = rows / (time.perf_counter() - t)
    n_up = max(200, rows // 20)
    up = [(f"gw1/u{i}", "uplink", 0, "sw/v1/gw/gw1/dev/d1/event", b"{}", T0) for i in range(n_up)]
    t = time.perf_counter()
    for row in up:
        q.put_rows([row])
    uplinks_s = n_up / (time.perf_counter() - t)
    engine = sa.create_engine(url)
    total = rows + n_up
    t = time.perf_counter()
    done = 0
    while done < total:
        pending = q.pending(500)
        if not pending:
            break
        with engine.begin() as c:
            mark_consumed(c, [r.id for r in pending], T0)
        done += len(pending)
    consume_s = done / (time.perf_counter() - t)
    engine.dispose()
    q.close()
    return {"queue_readings_rows_s": readings_s, "queue_uplink_rows_s": uplinks_s, "queue_consume_rows_s": consume_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a fast smoke run (small counts)")
    args = p.parse_args()
    n = 300 if args.quick else 3000
    rows = 5_000 if args.quick else 100_000
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lite = make_engine(sqlite_url(Path(tmp) / "alarms.db"))
        results["sqlite_bare_commits_s"], results["sqlite_alarm_writes_s"] = _store_figures(lite, n, 0)
        lite.dispose()
        with LocalPostgres(Path(tmp) / "pg", scratch=True) as pg:
            pge = make_engine(pg.url)
            results["pg_bare_commits_s"], results["pg_alarm_writes_s"] = _store_figures(pge, n, 0)
            pge.dispose()
            results.update(_queue_figures(pg.url, rows))
    sqlite_ratio = results["sqlite_bare_commits_s"] / results["sqlite_alarm_writes_s"]
    pg_ratio = results["pg_bare_commits_s"] / results["pg_alarm_writes_s"]
    print(f"{'figure':<34}{'per second':>14}")
    for k, v in results.items():
        print(f"{k:<34}{v:>14,.0f}")
    print(f"alarm write cost, x bare commit: SQLite {sqlite_ratio:.2f}, PostgreSQL {pg_ratio:.2f} (target <= {TARGET_RATIO:g})")
    ok = max(sqlite_ratio, pg_ratio) <= TARGET_RATIO and results["queue_readings_rows_s"] >= TARGET_QUEUE_ROWS_S
    print(json.dumps({"benchmark": "alarmstore", "quick": args.quick, **{k: round(v, 1) for k, v in results.items()},
                      "sqlite_alarm_cost_ratio": round(sqlite_ratio, 2), "pg_alarm_cost_ratio": round(pg_ratio, 2),
                      "target_cost_ratio_max": TARGET_RATIO, "target_queue_rows_s_min": TARGET_QUEUE_ROWS_S, "ok": ok}))


if __name__ == "__main__":
    main()
