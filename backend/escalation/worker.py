"""A stand-alone escalation worker: `python -m backend.escalation.worker --db URL --site FILE [...]`.

Runs the escalation service against a shared alarm store without the rest of the backend: several of them on
one PostgreSQL fire every step exactly once between them, and one killed with `kill -9` and started again
carries on where the store says. Prints one JSON line per event on stdout (`ready`, and `step` for every
step this process committed, with each timer's due time and when it fired), which the process-level tests
and operators read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from alerting.ladder import Note, Notify
from backend.escalation.runtime import EscalationRuntime
from backend.escalation.service import StepReport
from backend.escalation.settings import EscalationSettings
from backend.sites.loader import load_site_directory
from backend.store.db import make_engine
from broker.clock import SystemClock

__all__ = ["main"]


def _emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _report(r: StepReport) -> None:
    steps = sorted({a.step for a in r.actions})
    fired = [{"step": a.step, "kind": a.kind.value, "rung": a.rung, "due_ms": a.due_ms, "at_ms": a.at_ms}
             for a in r.actions if isinstance(a, Note) and a.due_ms is not None]
    notices = [a.key for a in r.actions if isinstance(a, Notify)]
    _emit({"event": "step", "worker": r.worker, "alarm": r.alarm_id, "steps": steps, "fired": fired, "notices": notices, "ms": r.committed_ms})


async def _run(args: argparse.Namespace) -> None:
    settings = EscalationSettings(
        policy_file=args.policy_file, poll_interval_s=args.poll, sms_url=args.webhook, voice_url=args.webhook,
        retry_base_s=0.05, retry_max_s=0.5, rate_limit=10_000,
    )
    engine = make_engine(args.db)
    site = load_site_directory(args.site)
    clock = SystemClock()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with EscalationRuntime(settings, engine, site, clock, on_step=_report, worker_id=args.worker_id):
        _emit({"event": "ready", "worker": args.worker_id, "ms": clock.now_ms()})
        await stop.wait()
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m backend.escalation.worker", description=__doc__)
    p.add_argument("--db", required=True, help="SQLAlchemy URL of the shared alarm store")
    p.add_argument("--site", required=True, type=Path, help="site directory YAML")
    p.add_argument("--policy-file", type=Path, default=None, help="escalation policies (default: the built-in ladder)")
    p.add_argument("--worker-id", default="worker", help="name of this process in logs and the step log")
    p.add_argument("--webhook", default=None, help="deliver SMS and voice notices to this URL")
    p.add_argument("--poll", type=float, default=0.2, help="longest sleep of the timer loop, seconds")
    asyncio.run(_run(p.parse_args(argv)))


if __name__ == "__main__":
    main()
