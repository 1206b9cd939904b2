"""The collaboration records and the automatic archive on the real alarm service, on SQLite and on a real PostgreSQL.

- Assignments and comments round trip (the current assignee is the newest assignment; a comment's photos are stored
  under the data folder with their SHA-256), and a comment never moves the alarm.
- A closed alarm is archived by the system after `archive_after_days` of quiet, decided from stored state and the
  virtual clock: a comment during the quiet period puts it off, and a restart (a new alarm service and archiver on
  the same database, the clock moved on meanwhile) archives what fell due while it was down, at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerting.lifecycle import Move
from backend.alarms.archive import ArchiveWatch, due_for_archive
from backend.alarms.collab import AlarmCollab, Person, collab_timeline, current_assignees
from backend.alarms.service import AlarmService
from backend.sites import SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from broker.clock import VirtualClock
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, decode_uplink, encode
from broker.topics import event_topic
from tests.processes import fresh_database
from tests.workorders.images import png

DAY_S = 86_400


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        e = make_engine(sqlite_url(tmp_path / "alarms.db"))
    else:
        server: LocalPostgres = request.getfixturevalue("postgres_server")
        e = sa.create_engine(fresh_database(server, "collab"))
    yield e
    e.dispose()


async def raise_alarm(service: AlarmService, sites: SiteDirectory, n: int = 0) -> str:
    building = sorted(sites.buildings)[n]  # one smoke alarm per building: no composite fire
    device = next(d for d in sites.devices_by_building[building] if d.kind is DeviceKind.SMOKE)
    now = service.clock.now_ms()
    msg = DeviceEvent(msg_id=f"m{time.monotonic_ns()}", source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM)
    await service.on_uplink(decode_uplink(str(event_topic(device.gateway, device.id)), encode(msg)), now)
    return next(a.id for a in service.store.list(open_only=True) if a.device_id == device.id)


async def test_assignments_and_comments_round_trip(engine: sa.Engine, sample_site: SiteDirectory, tmp_path: Path) -> None:
    clock = VirtualClock()
    service = AlarmService.for_sites(engine, sample_site, clock)
    await service.start()
    aid = await raise_alarm(service, sample_site)
    collab = AlarmCollab(service.store, clock, tmp_path / "photos", stream=service.stream)
    with service.stream.tap() as heard:
        await collab.assign(aid, "duty", Person("c01-g1-w1", "王网格", "grid_worker"), "先去看看")
        clock.advance(60)
        await collab.assign(aid, "duty", Person("user:mfs", "站长", "micro_fire_station"))
        image = png()
        c = await collab.comment(aid, "mfs", "已到场，\r\n无明火", [image])
    assert [type(heard.get_nowait()).__name__ for _ in range(heard.qsize())] == ["AlarmAssigned", "AlarmAssigned", "CommentAdded"]
    assert current_assignees(engine, [aid])[aid].assignee_id == "user:mfs"
    assert [a.assignee_id for a in collab.assignments(aid)] == ["c01-g1-w1", "user:mfs"]
    (stored,) = collab.comments(aid)
    assert stored.text == "已到场，\n无明火"
    assert stored.author == "mfs"
    assert stored.id == c.id
    row, path = collab.photo_file(aid, stored.photos[0]["id"])
    assert path.read_bytes() == image
    assert row["sha256"] == hashlib.sha256(image).hexdigest() == path.stem
    assert [e["what"] for e in collab_timeline(engine, aid)] == ["指派给 王网格（网格员）", "改派给 站长（微型消防站）", "评论（1 张照片）"]
    a = service.store.get(aid)
    assert a is not None
    assert a.state.value == "raised"
    assert len(service.store.audit(aid)) == 1, "nothing of this is a lifecycle move"


async def test_closed_alarm_archives_after_quiet_period_across_restart(engine: sa.Engine, sample_site: SiteDirectory, tmp_path: Path) -> None:
    clock = VirtualClock()
    service = AlarmService.for_sites(engine, sample_site, clock)
    await service.start()
    quiet, talked_about, still_open = [await raise_alarm(service, sample_site, n) for n in range(3)]
    await service.move(quiet, Move.MARK_FALSE, "duty", note="住户做饭")
    await service.move(talked_about, Move.ACKNOWLEDGE, "duty")
    await service.move(talked_about, Move.FINISH, "duty")
    await service.move(talked_about, Move.VERIFY_CLOSE, "duty")
    collab = AlarmCollab(service.store, clock, tmp_path / "photos")
    async with ArchiveWatch(service, after_days=7, every_s=3600) as watch:
        assert watch.checks == 1
        assert watch.archived == 0, "nothing is due at once"
        clock.advance(6 * DAY_S)
        await watch.checked_after(1)
        await collab.comment(talked_about, "duty", "回访：住户确认已修好")  # day 6: talked about, so not quiet
        clock.advance(1.5 * DAY_S)  # day 7.5: `quiet` is due, `talked_about` is not (its comment is 1.5 days old)
        await watch.checked_after(watch.checks)
        state = {a: service.store.get(a).state.value for a in (quiet, talked_about, still_open)}  # type: ignore[union-attr]
        assert state == {quiet: "archived", talked_about: "closed", still_open: "raised"}
    entry = service.store.audit(quiet)[-1]
    assert (entry.move, entry.actor, entry.to_state.value) == ("archive", "system", "archived")
    assert "自动归档" in entry.note
    await service.save_state()

    # down for a week: nothing runs; a new service and archiver on the same database catch up at once
    clock.advance(7 * DAY_S)
    assert due_for_archive(engine, clock.now_ms() - 7 * DAY_S * 1000) == [talked_about]
    again = AlarmService.for_sites(engine, sample_site, clock)
    await again.start()
    async with ArchiveWatch(again, after_days=7, every_s=3600) as watch:
        assert watch.archived == 1
    assert again.store.get(talked_about).state.value == "archived"  # type: ignore[union-attr]
    assert again.store.get(still_open).state.value == "raised", "an open alarm is never archived"  # type: ignore[union-attr]
    assert due_for_archive(engine, clock.now_ms()) == []


async def test_archive_off_with_zero_days(engine: sa.Engine, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    service = AlarmService.for_sites(engine, sample_site, clock)
    await service.start()
    aid = await raise_alarm(service, sample_site)
    await service.move(aid, Move.MARK_FALSE, "duty")
    clock.advance(400 * DAY_S)
    async with ArchiveWatch(service, after_days=0) as watch:
        assert watch.checks == 0
    assert service.store.get(aid).state.value == "false_alarm"  # type: ignore[union-attr]


async def test_purge_after_retention_takes_the_collaboration_with_the_alarm(engine: sa.Engine, sample_site: SiteDirectory, tmp_path: Path) -> None:
    clock = VirtualClock()
    service = AlarmService.for_sites(engine, sample_site, clock)
    await service.start()
    old, kept = [await raise_alarm(service, sample_site, n) for n in range(2)]
    collab = AlarmCollab(service.store, clock, tmp_path / "photos")
    for a in (old, kept):
        await collab.assign(a, "duty", Person("c01-g1-w1", "王网格", "grid_worker"))
        await collab.comment(a, "duty", "记录", [png()])
    await service.move(old, Move.MARK_FALSE, "duty")
    clock.advance(401 * DAY_S)
    assert service.store.purge(clock.now_ms(), 400) == 1
    assert collab.assignments(old) == []
    assert collab.comments(old) == []
    assert len(collab.comments(kept)) == 1, "an open alarm keeps its record"
    assert len(collab.assignments(kept)) == 1
