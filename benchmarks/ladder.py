"""How much the escalation ladder costs per step: pure core, and the stored step on SQLite.

Prints a table and ends with one JSON line. Baseline measured in the same run: encoding and decoding the
escalation state (what every stored step must do anyway); the pure step is held against it as a ratio.
Targets: >= 2,000 fired steps/s in one process (a step — a missed deadline, the climb, the roster lookup
and the notices — costs well under a millisecond of a deadline counted in tens of seconds), and a pure step
costing at most 50x the state's own JSON round trip.

    .venv/bin/python benchmarks/ladder.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import msgspec

from alerting.ladder import AlarmFacts, EscalationState, advance, start
from alerting.model import Severity
from backend.escalation.runtime import load_policies
from backend.escalation.store import EscalationStore, StepOutcome
from backend.sites.loader import load_site_directory
from backend.sites.roster import SiteRoster
from backend.store.db import make_engine, sqlite_url

T0 = 1_767_225_600_000 + 3_600_000
SITE = Path(__file__).resolve().parent.parent / "sites" / "sample-community.yaml"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    n = 300 if ap.parse_args().quick else 3000
    policies = load_policies()
    roster = SiteRoster(load_site_directory(SITE))
    buildings = sorted(roster.directory.buildings)
    facts = [AlarmFacts(f"A{i}", "smoke", Severity.CRITICAL, T0, roster.where(building=buildings[i % len(buildings)])) for i in range(n)]

    t = time.perf_counter()
    states = [start(f, policies, roster, T0) for f in facts]
    start_s = time.perf_counter() - t

    t = time.perf_counter()
    steps = 0
    for initial, _ in states:
        s = initial
        for second in (30, 60, 120, 180, 300):
            s, _acts = advance(s, policies, roster, T0 + second * 1000)
        steps += s.step - initial.step  # timers fired (each one step: repeat, deadline miss + climb, verify window)
    step_s = time.perf_counter() - t

    enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder(EscalationState)
    t = time.perf_counter()
    for s, _ in states:
        for _ in range(steps // n):
            dec.decode(enc.encode(s))
    base_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        store = EscalationStore(make_engine(sqlite_url(Path(d) / "b.db")), policies)
        t = time.perf_counter()
        for s, acts in states[: n // 3]:
            store.create(StepOutcome(s, acts, []), "bench", T0)
        stored_s = time.perf_counter() - t
        stored_n = n // 3

    pure_rate = steps / step_s
    ratio = (step_s / steps) / (base_s / steps)
    rows = [("start (page entry rungs)", n / start_s), ("advance (one fired timer)", pure_rate),
            ("state JSON round trip (baseline)", steps / base_s), ("stored start on SQLite (FULL sync)", stored_n / stored_s)]
    print(f"{'what':40} {'per second':>12}")
    for what, rate in rows:
        print(f"{what:40} {rate:12,.0f}")
    print(f"pure step / state round trip: {ratio:.2f}x")
    print(json.dumps({"escalations": n, "start_per_s": round(n / start_s), "advance_per_s": round(pure_rate),
                      "baseline_roundtrip_per_s": round(steps / base_s), "stored_start_per_s": round(stored_n / stored_s),
                      "ratio_step_to_roundtrip": round(ratio, 2), "targets": {"advance_per_s": 2000, "ratio_step_to_roundtrip_max": 50},
                      "ok": pure_rate >= 2000 and ratio <= 50}))


if __name__ == "__main__":
    main()
