"""Patrol (巡检) in the scaled-out layout: two `shouwang backend` processes and one `shouwang ingest` worker as
subprocesses on a real Mosquitto and a real PostgreSQL; the rules leader patrols, and is killed with kill -9.

A test MQTT client plays the site's gateways: it answers every patrol command with a PatrolHeartbeat on the
gateway's patrol topic (as simulators/live.py GatewayLink does), which travels back through the ingest worker
and the uplink queue to the leader; one gateway it leaves silent. What a user would notice, and what is asserted:
- one patrol schedule in the cluster: while each leader holds the seat, every gateway gets one patrol per
  interval (no two commands closer than most of an interval) and the patrol ids come from one book (a second
  scheduler would number its patrols from 1 again);
- the silent gateway gets a `patrol_missed` alarm, the answering ones none;
- after kill -9 of the leader the standby takes the seat (and keeps it: patrol does not end its term) and
  patrols go on for every gateway; the silent gateway's open alarm counts the new term's misses as
  occurrences and is not opened a second time.

And in process, on a virtual clock: a leader whose lock session is gone (a deposed leader that has not noticed
yet) cannot write a patrol_missed alarm: the scheduler's task carries the term's fence.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from backend.patrol import PATROL_MISSED
from backend.server import Backend, BackendRole
from backend.settings import load_settings
from backend.sites import generate_site_document, load_site_directory, write_site_document
from backend.store.pg_local import LocalPostgres
from broker.clock import VirtualClock
from broker.process import MosquittoProcess
from broker.schemas import GatewayCommand, PatrolHeartbeat, decode_message, encode
from broker.topics import TopicKind, command_filter, parse_uplink, patrol_topic
from tests.scaleout.procs import POLICY, Proc, became_leader, fresh_database, leader_and_standby, shouwang, start_receiver, wait_until, write_config
from tests.waiting import until

pytestmark = [pytest.mark.mosquitto, pytest.mark.postgres, pytest.mark.timeout(150)]

# Patrols every PERIOD_S - WINDOW_S = 3 s, each answered within 3 s (backend/patrol/book.py): short enough for
# a test, long enough that an answer's trip through ingest and the queue fits its window on a busy machine.
PERIOD_S, WINDOW_S = 6.0, 3.0
INTERVAL_MS = round((PERIOD_S - WINDOW_S) * 1000)
# One schedule sends a gateway's patrols one interval apart (less only by how late the previous one went out);
# two schedules interleaved put two commands at most half an interval apart.
MIN_GAP_MS = round(INTERVAL_MS * 0.7)


@dataclass(frozen=True, slots=True)
class PatrolCommand:
    gateway: str
    patrol_id: str
    issued_ms: int

    @property
    def seq(self) -> int:
        """The scheduler's running number: patrol ids are `patrol-<sent ms, hex>-<n>`, n counted per PatrolBook."""
        return int(self.patrol_id.rsplit("-", 1)[1])


class GatewayPlayer:
    """One MQTT connection playing every gateway: records each patrol command and answers it with a PatrolHeartbeat
    carrying its patrol id on the gateway's patrol topic, except for the gateways in `silent`."""

    def __init__(self, port: int, silent: set[str]) -> None:
        self.silent = silent
        self.commands: dict[str, PatrolCommand] = {}  # by patrol id: a QoS 1 redelivery is the same patrol
        self.problems: list[str] = []
        self._commands_heard = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"patrol-gws-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda client, _u, _f, _rc, _p: client.subscribe(str(command_filter()), qos=1)
        self.client.on_subscribe = lambda _c, _u, _mid, _rc, _p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the gateways' command subscription was not acknowledged"

    def _on_message(self, client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            topic = parse_uplink(message.topic)
            if topic.kind is not TopicKind.COMMAND or topic.command != "patrol":
                return
            command = decode_message(TopicKind.COMMAND, bytes(message.payload), message.topic)
            assert isinstance(command, GatewayCommand)
        except Exception as exc:  # reported by the test, not lost in paho's thread
            self.problems.append(f"{message.topic}: {type(exc).__name__}: {exc}")
            return
        gateway = str(topic.gateway)
        with self._lock:
            self.commands.setdefault(command.cmd_id, PatrolCommand(gateway, command.cmd_id, command.issued_ts_ms))
            self._commands_heard += 1
            n = self._commands_heard
            if gateway in self.silent:
                return
        now = time.time_ns() // 1_000_000
        answer = PatrolHeartbeat(msg_id=f"{gateway}:patrol-{n}", source_ts_ms=now, received_ts_ms=now, seq=n, period_s=3600.0,
                                 patrol_id=command.cmd_id)
        client.publish(str(patrol_topic(gateway)), encode(answer), qos=1)

    def received(self, gateway: str, since_ms: int = 0, before_ms: int | None = None) -> list[PatrolCommand]:
        """The patrol commands `gateway` got, issued in [since_ms, before_ms), oldest first."""
        with self._lock:
            got = [c for c in self.commands.values() if c.gateway == gateway and c.issued_ms >= since_ms
                   and (before_ms is None or c.issued_ms < before_ms)]
        return sorted(got, key=lambda c: c.issued_ms)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _patrol_alarms(engine: sa.Engine) -> list[tuple[str, str, bool, int]]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT id, gateway_id, is_open, occurrences FROM alarms WHERE alarm_type = :t"), {"t": PATROL_MISSED}).all()
    return [(str(i), str(gw), bool(is_open), int(n)) for i, gw, is_open, n in rows]


def _seat_changes(backend: Proc) -> list[bool]:
    """What `backend` said of the rules seat, in order: True on taking it, False on losing it (a term ending)."""
    return [bool(ln["leader"]) for ln in list(backend.lines) if ln.get("event") == "leader"]


def _one_schedule(player: GatewayPlayer, gateways: list[str], since_ms: int, before_ms: int | None, term: str) -> None:
    """Every gateway patrolled by one scheduler in [since_ms, before_ms): patrol ids of one book, one interval apart."""
    seqs: dict[int, PatrolCommand] = {}
    for gw in gateways:
        got = player.received(gw, since_ms, before_ms)
        assert got, f"{term}: {gw} got no patrol command"
        gaps = [b.issued_ms - a.issued_ms for a, b in itertools.pairwise(got)]
        assert all(g >= MIN_GAP_MS for g in gaps), f"{term}: {gw} got patrols {gaps} ms apart (interval {INTERVAL_MS} ms): two schedules"
        for c in got:
            other = seqs.setdefault(c.seq, c)
            assert other is c, f"{term}: patrols {other.patrol_id} and {c.patrol_id} have one number: two patrol books"


def test_patrol_runs_on_the_rules_leader_only_and_goes_on_after_kill_9(postgres_server: LocalPostgres,
                                                                       mosquitto_factory: Callable[..., MosquittoProcess], tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    write_site_document(generate_site_document(1, grids=1, buildings_per_grid=3), site)
    gateways = sorted(load_site_directory(site).gateways)
    assert len(gateways) >= 3, gateways
    silent, answering = gateways[0], gateways[1:]
    broker = mosquitto_factory("broker")
    db = fresh_database(postgres_server)
    receiver, sms_url = start_receiver()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    cfg = write_config(tmp_path / "shouwang.toml", broker_port=broker.port, db=db, site=site, policy=policy, sms_url=sms_url)
    patrol = f"[patrol]\nenabled = true\nperiod_s = {PERIOD_S}\nwindow_s = {WINDOW_S}\nstart_grace_s = 0\n"
    cfg.write_text(cfg.read_text(encoding="utf-8") + patrol, encoding="utf-8")

    player = GatewayPlayer(broker.port, silent={silent})
    worker = Proc("w1", shouwang(cfg, "ingest", "--worker-id", "1", "--data-dir", str(tmp_path / "ingest")))
    backends = [Proc(f"b{i}", shouwang(cfg, "backend", "--name", f"b{i}", "--data-dir", str(tmp_path / f"b{i}"))) for i in (1, 2)]
    engine = sa.create_engine(db)
    try:
        # The worker listens before any backend can patrol: an answer published before it subscribed would be lost.
        worker.start().wait_for(lambda ln: ln["event"] == "ready", 60)
        for b in backends:
            b.start()
        for b in backends:
            b.wait_for(lambda ln: ln["event"] == "ready", 60)
        leader, standby = leader_and_standby(backends)

        # Term 1: the silent gateway is alarmed; every gateway has had a few patrols.
        wait_until(lambda: any(gw == silent for _, gw, _, _ in _patrol_alarms(engine)), 30, f"a patrol_missed alarm for {silent}")
        wait_until(lambda: all(len(player.received(gw)) >= 3 for gw in gateways), 30, "three patrols to every gateway")
        assert not became_leader(standby, 0.0), "the standby held the seat while the leader lived"
        assert _seat_changes(leader) == [True], f"{leader.name} kept one term: {_seat_changes(leader)}"
        leader.kill9()
        killed_ms = time.time_ns() // 1_000_000
        alarms = _patrol_alarms(engine)
        assert [(gw, is_open) for _, gw, is_open, _ in alarms] == [(silent, True)], f"term 1: patrol alarms {alarms}"
        alarm_id, occurrences_at_kill = alarms[0][0], alarms[0][3]

        # Term 2: the standby takes the seat and patrols every gateway; the silent one's alarm counts the new misses.
        assert became_leader(standby, 30), "the standby took over the rules seat"
        wait_until(lambda: all(len(player.received(gw, killed_ms)) >= 2 for gw in gateways), 30, "two patrols to every gateway after the kill")
        wait_until(lambda: any(n > occurrences_at_kill for _, _, _, n in _patrol_alarms(engine)), 30,
                   "the new leader's miss of the silent gateway counted on its open alarm")

        assert not player.problems, player.problems
        assert _seat_changes(standby) == [True], f"{standby.name} kept one term: {_seat_changes(standby)}"
        _one_schedule(player, gateways, 0, killed_ms, "term 1")
        _one_schedule(player, gateways, killed_ms, None, "term 2")
        alarms = _patrol_alarms(engine)
        assert [(i, gw, is_open) for i, gw, is_open, _ in alarms] == [(alarm_id, silent, True)], \
            f"one open patrol_missed alarm, the silent gateway's, not opened again: {alarms}"
        assert not [a for a in alarms if a[1] in answering]
        print(f"cluster patrol: {len(player.commands)} patrol commands to {len(gateways)} gateways; {leader.name} killed, "
              f"{standby.name} went on; {silent}'s alarm at {alarms[0][3]} occurrences")
    except BaseException:
        for p in [*backends, worker]:
            print(f"--- {p.name} stderr (end) ---\n{''.join(p.stderr)[-4000:]}")
        raise
    finally:
        player.close()
        for p in [*backends, worker]:
            p.stop()
        receiver.shutdown()
        receiver.server_close()
        engine.dispose()


async def test_a_deposed_leader_cannot_write_a_patrol_alarm(postgres_server: LocalPostgres, mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    write_site_document(generate_site_document(1, grids=1, buildings_per_grid=2), site)
    sites = load_site_directory(site)
    db = fresh_database(postgres_server)
    receiver, sms_url = start_receiver()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    cfg = write_config(tmp_path / "shouwang.toml", broker_port=mosquitto.port, db=db, site=site, policy=policy, sms_url=sms_url)
    # The lock watchdog is slowed down so the patrol's own write is what meets the lost lock.
    settings = load_settings(cfg, storage={"data_dir": tmp_path / "b1"}, relay={"lock_check_s": 120.0},
                             patrol={"enabled": True, "period_s": 600.0, "window_s": 60.0, "start_grace_s": 0.0})
    clock = VirtualClock(time.time_ns() // 1_000_000)
    engine = sa.create_engine(db)
    try:
        async with Backend(settings, sites, "127.0.0.1", mosquitto.port, clock, role=BackendRole.CLUSTER, name="b1") as backend:
            seat = backend.seat
            assert seat is not None
            patrol = await until(lambda: seat.leader and seat.patrol, 30, "the rules seat and its patrol scheduler")
            clock.advance(600 - 60)  # one interval: every gateway's first patrol is due
            patrol.wake()
            await until(lambda: len(patrol.sent) == len(sites.gateways), 10, "a patrol sent to every gateway")

            def depose() -> int:
                with engine.connect() as c:
                    return len(c.execute(sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = :k"
                    ), {"k": settings.relay.lock_key}).all())

            assert await asyncio.to_thread(depose) == 1, "the leader's lock session was found and ended"
            clock.advance(60)  # past every deadline: nobody answers
            patrol.wake()
            await until(lambda: patrol.misses, 10, "the scheduler to find its patrols missed")
            await until(lambda: seat.terms >= 2, 30, "the term to end on the refused write and the seat to be taken again")
            assert _patrol_alarms(engine) == [], "the deposed term's patrol_missed write was refused by the fence"
    finally:
        receiver.shutdown()
        receiver.server_close()
        engine.dispose()
