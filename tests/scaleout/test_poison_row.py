"""One poison message never blocks the queue in the scaled-out layout (issue 22, finding 2): one `shouwang ingest`
worker and one `shouwang backend` (the rules leader) as subprocesses on a real Mosquitto and a real PostgreSQL.

- A smoke alarm whose `detail` holds a NUL (PostgreSQL refuses NUL in text) is raised, its text cleaned, and
  the alarms published after it are raised too. Before the fix the leader's term ended on that row and it
  retried it for ever (143 times in 100 s) while every later alarm waited.
- A row the alarm store still refuses (here a real PostgreSQL trigger refuses any alarm whose detail says
  POISON: a site policy, a constraint, a bug) is tried `relay.row_max_attempts` times, then parked with its
  reason (UplinkQueue.parked(), for /readyz and the console), and the rows after it flow on; a life-safety
  event refused that way is raised without its detail rather than parked.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.relay.queue import UplinkQueue
from backend.sites import load_site_directory
from backend.sites.model import Device
from backend.store.pg_local import LocalPostgres
from broker.kinds import DeviceKind
from broker.process import MosquittoProcess
from broker.topics import event_topic
from tests.conftest import SAMPLE_SITE
from tests.scaleout.procs import POLICY, Proc, Publisher, fresh_database, shouwang, start_receiver, wait_until, write_config

pytestmark = [pytest.mark.mosquitto, pytest.mark.postgres, pytest.mark.timeout(200)]

REFUSE_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
BEGIN
    IF NEW.detail LIKE '%POISON%' THEN
        RAISE EXCEPTION 'alarm detail refused by the site policy';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON alarms FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def event(pub: Publisher, d: Device, kind: str, detail_json: str = "") -> str:
    now = time.time_ns() // 1_000_000
    msg_id = uuid.uuid4().hex[:20]
    body = f'{{"msg_id":"{msg_id}","source_ts_ms":{now},"received_ts_ms":{now},"event":"{kind}"{detail_json}}}'
    pub.publish(str(event_topic(d.gateway, d.id)), body.encode())
    return f"{d.gateway}/{msg_id}"


def alarms(engine: sa.Engine) -> dict[tuple[str, str], str | None]:
    with engine.connect() as c:
        return {(r.device_id, r.alarm_type): r.detail for r in c.execute(sa.text("SELECT device_id, alarm_type, detail FROM alarms"))}


def test_a_nul_poison_and_a_refused_row_never_block_the_alarms_behind_them(
    postgres_server: LocalPostgres, mosquitto: MosquittoProcess, tmp_path: Path,
) -> None:
    sites = load_site_directory(SAMPLE_SITE)
    db = fresh_database(postgres_server)
    _receiver, sms_url = start_receiver()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    cfg = write_config(tmp_path / "shouwang.toml", broker_port=mosquitto.port, db=db, site=SAMPLE_SITE.resolve(), policy=policy, sms_url=sms_url)
    with cfg.open("a", encoding="utf-8") as f:
        f.write("row_max_attempts = 2\nrow_retry_s = 0.2\n")  # appended to [relay], the file's last section
    backend = Proc("b1", shouwang(cfg, "backend", "--name", "b1", "--data-dir", str(tmp_path / "b1")))
    worker = Proc("w1", shouwang(cfg, "ingest", "--worker-id", "1", "--data-dir", str(tmp_path / "ingest")))
    engine = sa.create_engine(db)
    queue = UplinkQueue(db)
    smokes = list({(d.building, d.unit): d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE}.values())[:12]
    box = next(d for d in sites.devices.values() if d.kind is DeviceKind.ELECTRICAL)
    pub = Publisher(mosquitto.port)
    try:
        for p in (backend, worker):
            p.start()
        for p in (backend, worker):
            p.wait_for(lambda ln: ln["event"] == "ready", 90)
        backend.wait_for(lambda ln: ln.get("event") == "leader" and bool(ln["leader"]), 30, seen_too=True)  # it may lead before it is ready

        # 1. The NUL poison, then five ordinary smoke alarms behind it.
        event(pub, smokes[0], "smoke_alarm", ',"detail":"kitchen\\u0000 smoke"')
        for d in smokes[1:6]:
            event(pub, d, "smoke_alarm")
        pub.flush()
        wait_until(lambda: sum(t == "smoke" for _, t in alarms(engine)) == 6, 60, "the NUL smoke alarm and the five behind it")
        assert alarms(engine)[(smokes[0].id, "smoke")] == "kitchen smoke", "stored with its text cleaned"

        # 2. Rows the store refuses: a device fault (parked) and a smoke alarm (raised without its detail), alarms behind.
        with engine.begin() as c:
            c.execute(sa.text(REFUSE_POISON))
        parked_key = event(pub, box, "fault", ',"detail":"POISON"')
        event(pub, smokes[6], "smoke_alarm", ',"detail":"POISON smoke"')
        for d in smokes[7:12]:
            event(pub, d, "smoke_alarm")
        pub.flush()
        wait_until(lambda: sum(t == "smoke" for _, t in alarms(engine)) == 12, 60, "every smoke alarm behind the refused rows")
        now = alarms(engine)
        assert (box.id, "device_fault") not in now, "the refused fault alarm was parked, not stored"
        assert now[(smokes[6].id, "smoke")] is None, "the refused smoke alarm was raised without its detail"
        wait_until(lambda: queue.backlog(time.time_ns() // 1_000_000)["pending"] == 0, 30, "an empty queue: nothing stuck")
        [parked] = queue.parked()
        assert parked["key"] == parked_key
        assert "alarm detail refused by the site policy" in parked["result"]
    finally:
        pub.close()
        queue.close()
        engine.dispose()
        for p in (worker, backend):
            p.stop()
