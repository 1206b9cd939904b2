"""Scale-out on real engines: 3 `shouwang ingest` workers (MQTT 5 shared subscription on a real Mosquitto) and
2 `shouwang backend` processes on one real PostgreSQL; one ingest worker and the rules leader are killed with
kill -9 in the middle of a stream with open escalations.

What a user would notice, and what is asserted:
- no message lost: every published telemetry message and event is in the uplink queue and consumed by the
  rules leader, and every telemetry message is in some worker's time-series store;
- no alarm duplicated: every smoke/SOS device has exactly one alarm (its key never opened twice);
- every escalation step fired once: each ladder ran to its end, no (alarm, step) entry twice in the step
  log, every notice delivered (claimed once per key).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.escalation.store import escalation_log, escalations, outbox
from backend.sites import load_site_directory
from backend.store.pg_local import LocalPostgres
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, Telemetry, encode
from broker.topics import event_topic, telemetry_topic
from tests.conftest import SAMPLE_SITE
from tests.scaleout.procs import (
    POLICY,
    Proc,
    Publisher,
    SmsReceiver,
    became_leader,
    fresh_database,
    leader_and_standby,
    shouwang,
    start_receiver,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.mosquitto, pytest.mark.postgres, pytest.mark.timeout(240)]

RATE_PER_S = 150  # telemetry messages per second, ~ half a street's real rate on one test publisher
PHASE_S = 6.0


def _msg_id() -> str:
    return uuid.uuid4().hex[:20]


def test_kill_9_an_ingest_worker_and_the_rules_leader_mid_stream(postgres_server: LocalPostgres, mosquitto_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sites = load_site_directory(SAMPLE_SITE)
    broker = mosquitto_factory("broker")
    db = fresh_database(postgres_server)
    receiver, sms_url = start_receiver()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    cfg = write_config(tmp_path / "shouwang.toml", broker_port=broker.port, db=db, site=SAMPLE_SITE.resolve(), policy=policy, sms_url=sms_url)

    backends = [Proc(f"b{i}", shouwang(cfg, "backend", "--name", f"b{i}", "--data-dir", str(tmp_path / f"b{i}"))) for i in (1, 2)]
    workers = [Proc(f"w{i}", shouwang(cfg, "ingest", "--worker-id", str(i), "--data-dir", str(tmp_path / "ingest"))) for i in (1, 2, 3)]
    procs = [*backends, *workers]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.wait_for(lambda ln: ln["event"] == "ready", 90)
        leader, standby = leader_and_standby(backends)

        meters = [d for d in sites.devices.values() if d.kind is DeviceKind.ELECTRICAL][:300]
        smokes = list({d.building: d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE}.values())[:12]
        sos = [d for d in sites.devices.values() if d.kind is DeviceKind.SOS][:8]
        alarm_devices = [*smokes, *sos]
        pub = Publisher(broker.port)
        telemetry_keys: set[str] = set()
        event_keys: set[str] = set()
        ts_of: dict[str, set[int]] = {}

        def event(dev, kind: EventKind, *, again: bool = False) -> None:  # type: ignore[no-untyped-def]
            now = time.time_ns() // 1_000_000
            msg = DeviceEvent(msg_id=_msg_id(), source_ts_ms=now, received_ts_ms=now, event=kind)
            payload = encode(msg)
            pub.publish(str(event_topic(dev.gateway, dev.id)), payload)
            if again:  # a gateway's redelivery: same msg_id, likely to land on another worker
                pub.publish(str(event_topic(dev.gateway, dev.id)), payload)
            event_keys.add(f"{dev.gateway}/{msg.msg_id}")

        def stream(seconds: float, events: list) -> None:  # type: ignore[type-arg]
            start = time.monotonic()
            n, spacing = 0, seconds / max(1, len(events))
            next_event = start
            while (elapsed := time.monotonic() - start) < seconds:
                due = int(elapsed * RATE_PER_S)
                while n < due:
                    d = meters[n % len(meters)]
                    ts = time.time_ns() // 1_000_000
                    while ts in ts_of.setdefault(d.id, set()):
                        ts += 1
                    ts_of[d.id].add(ts)
                    msg = Telemetry(msg_id=_msg_id(), source_ts_ms=ts, received_ts_ms=ts, readings={"residual_current_ma": 3.0, "temperature_c": 25.5})
                    pub.publish(str(telemetry_topic(d.gateway, d.id)), encode(msg))
                    telemetry_keys.add(f"{d.gateway}/{d.id}@{ts}")
                    n += 1
                if events and time.monotonic() >= next_event:
                    dev, kind = events.pop(0)
                    event(dev, kind, again=len(events) % 3 == 0)
                    next_event += spacing
                time.sleep(0.01)
            for dev, kind in events:
                event(dev, kind)

        def kinds(devs: list) -> list:  # type: ignore[type-arg]
            return [(d, EventKind.SMOKE_ALARM if d.kind is DeviceKind.SMOKE else EventKind.SOS_PRESS) for d in devs]

        # Phase 1: alarms are raised and their ladders start.
        stream(PHASE_S, kinds(alarm_devices[:10]))
        engine = sa.create_engine(db)
        wait_until(lambda: _count(engine, "SELECT count(*) FROM alarms") >= 5, 30, "alarms raised before the kills")
        assert _count(engine, "SELECT count(*) FROM escalations WHERE due_ms IS NOT NULL") > 0, "escalations are open when we kill"
        # kill -9 one ingest worker and the rules leader, mid-stream.
        victim = workers[1]
        victim.kill9()
        leader.kill9()
        # Phase 2: the stream goes on; the killed worker comes back (as systemd would restart ingest@2).
        stream(PHASE_S / 2, kinds(alarm_devices[10:15]))
        victim.start()
        victim.wait_for(lambda ln: ln["event"] == "ready", 90)
        stream(PHASE_S / 2, kinds(alarm_devices[15:]))
        pub.flush()
        pub.close()
        assert became_leader(standby, 30), "the standby backend took over the rules seat"

        # Everything published reaches the queue and is consumed; every ladder runs to its end.
        def settled() -> bool:
            with engine.connect() as c:
                pending = c.execute(sa.text("SELECT count(*) FROM uplink_queue WHERE consumed_ms IS NULL")).scalar_one()
                total = c.execute(sa.text("SELECT count(*) FROM uplink_queue")).scalar_one()
                busy = c.execute(sa.select(sa.func.count()).select_from(escalations).where(escalations.c.due_ms.is_not(None))).scalar_one()
                unsent = c.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status != "done")).scalar_one()
            return bool(pending == 0 and total >= len(telemetry_keys) + len(event_keys) and busy == 0 and unsent == 0)

        wait_until(settled, 90, "queue drained and ladders finished")

        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT key, kind, consumed_ms FROM uplink_queue")).all()
            alarms = c.execute(sa.text("SELECT id, key, device_id, alarm_type FROM alarms")).all()
            steps = c.execute(sa.select(escalation_log.c.alarm_id, escalation_log.c.step, escalation_log.c.n, escalation_log.c.kind)).all()
            ladders = c.execute(sa.select(escalations.c.alarm_id, escalations.c.step)).all()
            notices = c.execute(sa.select(outbox.c.key, outbox.c.deliveries)).all()
        engine.dispose()

        # No message lost (and none twice in the queue: the key is unique).
        queued_events = {k for k, kind, _ in rows if kind == "uplink"}
        queued_telemetry = {k.rsplit(":", 1)[0] for k, kind, _ in rows if kind == "readings"}
        assert event_keys <= queued_events, f"events lost: {sorted(event_keys - queued_events)[:5]}"
        assert telemetry_keys <= queued_telemetry, f"{len(telemetry_keys - queued_telemetry)} telemetry messages lost of {len(telemetry_keys)}"
        assert all(consumed is not None for _, _, consumed in rows)
        stored: set[str] = set()
        tags = TagDirectory(sites)
        for path in (tmp_path / "ingest").glob("timeseries-*.sqlite"):
            ts_store = SqliteTimeSeries(path, tags)
            stored |= {f"{sites.devices[dev].gateway}/{dev}@{ts}" for dev, _metric, ts, _v in ts_store.raw_points()}
            ts_store.close()
        assert telemetry_keys <= stored, f"{len(telemetry_keys - stored)} telemetry messages not in any time-series store"

        # No alarm duplicated: one alarm per key, one per smoke/SOS device.
        per_key = Counter(key for _, key, _, _ in alarms)
        assert max(per_key.values()) == 1, f"duplicated alarms: {[k for k, n in per_key.items() if n > 1]}"
        per_device = Counter(dev for _, _, dev, _ in alarms)
        for d in alarm_devices:
            assert per_device[d.id] == 1, f"{d.id}: {per_device[d.id]} alarms"

        # Every escalation step fired once, and every ladder went to its end.
        entries = Counter((a, s, n) for a, s, n, _ in steps)
        assert max(entries.values()) == 1, "a ladder step was logged twice"
        by_alarm: dict[str, set[int]] = {}
        for a, s, _, _ in steps:
            by_alarm.setdefault(a, set()).add(s)
        alarm_ids = {a for a, _, dev, _ in alarms if dev in {d.id for d in alarm_devices}}
        assert alarm_ids <= {a for a, _ in ladders}, "every smoke/SOS alarm has its ladder"
        final = max(s for _, s in ladders)
        for a in alarm_ids:
            assert by_alarm[a] == set(range(1, final + 1)), f"{a}: steps {sorted(by_alarm[a])}, expected 1..{final}"
        # Notices are at-least-once with an idempotency key: one claimed by the killed backend is delivered again
        # after its lease, under the same key (the SMS gateway drops the repeat). Every notice reached the gateway.
        sms = {k for k, _ in notices if not k.endswith("/console")}
        assert sms, "the ladders sent SMS notices"
        assert {f"{k}/sms" for k in sms} <= set(SmsReceiver.keys), "every notice reached the SMS gateway"
        again = [k for k, n in notices if n > 1]
        assert len(again) <= 10, f"only notices in flight at the kill are delivered twice: {again}"
        print(f"scale-out: {len(telemetry_keys)} telemetry, {len(event_keys)} events, {len(alarms)} alarms, {len(steps)} ladder entries, "
              f"{len(notices)} notices; leader {leader.name} killed, {standby.name} took over")
    finally:
        for p in procs:
            p.stop()
        receiver.shutdown()
        receiver.server_close()


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as c:
        return int(c.execute(sa.text(sql)).scalar_one())
