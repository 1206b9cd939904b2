"""A smoke alarm's commit has its own thread: it does not queue behind other work in asyncio's shared pool (6
threads on this machine's 2 cores), where in a storm the notices', the ladder's and the feed's store calls waited."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from alerting.model import Persist
from backend.sites.model import SiteDirectory
from backend.stream import Event
from broker.clock import VirtualClock
from broker.kinds import DeviceKind, EventKind
from broker.schemas import Uplink
from tests.alarms.test_service import event, first, service
from tests.waiting import until


async def test_a_smoke_alarm_commits_while_the_shared_thread_pool_is_busy(tmp_path: Path, sample_site: SiteDirectory) -> None:
    clock = VirtualClock()
    smoke, gw = first(sample_site, DeviceKind.SMOKE)
    async with service(tmp_path, sample_site, clock) as svc:
        release = threading.Event()
        # every thread of the shared pool busy (its size is min(32, cores + 4); 40 is more than any machine's)
        blockers = [asyncio.create_task(asyncio.to_thread(release.wait, 30)) for _ in range(40)]
        try:
            await asyncio.sleep(0.1)
            await asyncio.wait_for(svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, clock.now_ms(), 1), clock.now_ms()), 10)
            [alarm] = svc.store.list(open_only=True)
            assert alarm.alarm_type == "smoke"
        finally:
            release.set()
            await asyncio.gather(*blockers)


async def test_intake_quiet_waits_for_a_round_of_device_messages_and_is_bounded(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """The ladder's starts wait on `intake_quiet` so a storm's alarms are decided and committed first."""
    clock = VirtualClock()
    smoke, gw = first(sample_site, DeviceKind.SMOKE)
    loop = asyncio.get_running_loop()
    async with service(tmp_path, sample_site, clock) as svc:
        await asyncio.wait_for(svc.intake_quiet(30), 1)  # nothing coming in: at once
        async with svc._lock:  # the service busy: the next round waits for it
            round_ = asyncio.create_task(svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, clock.now_ms(), 1), clock.now_ms()))
            await asyncio.sleep(0)
            waiter = asyncio.create_task(svc.intake_quiet(30))
            await asyncio.sleep(0.05)
            assert not waiter.done(), "a round of device messages is waiting: the ladder waits too"
        await round_
        await asyncio.wait_for(waiter, 5)
        assert [a.alarm_type for a in svc.store.list(open_only=True)] == ["smoke"]
        async with svc._lock:
            round_ = asyncio.create_task(svc.on_uplink(event(gw, smoke, EventKind.SMOKE_CLEAR, clock.now_ms(), 2), clock.now_ms()))
            await asyncio.sleep(0)
            started = loop.time()
            await svc.intake_quiet(0.1)
            assert loop.time() - started < 1.0, "bounded: a long flood delays a ladder by at most the wait"
        await round_


async def test_intake_quiet_is_not_fooled_by_the_gap_between_two_rounds_nor_held_by_other_messages(tmp_path: Path,
                                                                                                    sample_site: SiteDirectory) -> None:
    """In a storm the ingest lane hands over its next round in the same loop turn as the last one ends, or once it has
    read MQTT's next packets: that gap is not the end of the storm (the ladder started a batch in every such gap). A
    round of non-life-safety messages (a gateway's reconnect flood) never holds a fire's ladder back."""
    clock = VirtualClock()
    smoke, gw = first(sample_site, DeviceKind.SMOKE)
    other_smoke = next(d for d in sample_site.devices.values() if d.id != smoke and d.kind is DeviceKind.SMOKE)
    async with service(tmp_path, sample_site, clock) as svc:
        async with svc._lock:
            first_round = asyncio.create_task(svc.on_uplink(event(gw, smoke, EventKind.SMOKE_ALARM, clock.now_ms(), 1), clock.now_ms()))
            await asyncio.sleep(0)
            waiter = asyncio.create_task(svc.intake_quiet(30))
            await asyncio.sleep(0)
        await first_round  # the round ends ...
        # ... and the next one starts after the ingest reads MQTT's next packets (5-10 ms under load; the 5 ms this wait
        # once allowed let the ladder start a batch of ladders in each such gap of a storm)
        await asyncio.sleep(0.02)
        assert svc.intake_busy(), "the gap between two rounds counts as busy: the ladder's next step waits too"
        assert not waiter.done(), "the gap between two rounds ended the wait"
        second_round = asyncio.create_task(svc.on_uplink(event(other_smoke.gateway, other_smoke.id, EventKind.SMOKE_ALARM, clock.now_ms(), 2),
                                                         clock.now_ms()))
        await second_round
        assert not waiter.done(), "the gap between two rounds ended the wait"
        await asyncio.wait_for(waiter, 5)  # quiet for the grace after the last round: done
        async with svc._lock:  # a round of status messages waiting for the service: the ladder does not wait for it
            status = asyncio.create_task(svc.on_uplink(event(gw, smoke, EventKind.LOW_BATTERY, clock.now_ms(), 3), clock.now_ms()))
            await asyncio.sleep(0)
            await asyncio.wait_for(svc.intake_quiet(30), 1)
        await status


async def test_in_a_storm_a_round_is_published_while_the_next_one_commits_and_always_in_order(tmp_path: Path,
                                                                                               sample_site: SiteDirectory) -> None:
    """`more_coming` (the ingest lane has more life-safety messages queued): the round's alarms are durable when the call
    returns and published after it, from a task, so the next round's decision and commit overlap that work (issue 19).
    Publishing stays in commit order, and a change made alone (no more coming) is published before its call returns,
    after everything committed before it."""
    clock = VirtualClock()
    smokes = [(d.id, d.gateway) for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE][:3]
    assert len(smokes) == 3
    gate = asyncio.Event()
    published: list[list[str]] = []

    async def slow_subscriber(events: Sequence[Event]) -> None:
        published.append([e.alarm.place.device or "" for e in events if isinstance(e, Persist) and e.alarm.alarm_type == "smoke"])
        if len(published) == 1:
            await gate.wait()  # the first round's publishing takes its time

    def round_of(k: int) -> list[tuple[Uplink, int]]:
        device, gw = smokes[k]
        return [(event(gw, device, EventKind.SMOKE_ALARM, clock.now_ms(), k + 1), clock.now_ms())]

    def stored() -> list[str]:
        return sorted(a.device_id or "" for a in svc.store.list(open_only=True) if a.alarm_type == "smoke")

    async with service(tmp_path, sample_site, clock) as svc:
        svc.stream.subscribe(slow_subscriber, name="slow")
        try:
            await asyncio.wait_for(svc.on_uplink_batch(round_of(0), more_coming=True), 5)
            await asyncio.wait_for(svc.on_uplink_batch(round_of(1), more_coming=True), 5)  # committed while round 1 is published
            assert stored() == sorted(d for d, _ in smokes[:2]), "not durable on return"
            assert published == [[smokes[0][0]]], "round 2 was published before round 1's publishing ended"
            alone = asyncio.create_task(svc.on_uplink_batch(round_of(2)))
            await asyncio.sleep(0.1)
            assert not alone.done(), "a change alone returned before it was published"
            gate.set()
            await asyncio.wait_for(alone, 5)
            assert published == [[smokes[0][0]], [smokes[1][0]], [smokes[2][0]]]
        finally:
            gate.set()  # the service's exit waits for what it publishes


async def test_a_storms_log_lines_come_after_its_alarms_are_out_in_order_and_a_lone_alarm_logs_at_once(
        tmp_path: Path, sample_site: SiteDirectory, caplog: pytest.LogCaptureFixture) -> None:
    """A storm's rounds (`more_coming`) are published first and logged once its intake is over (issue 19: a log line is
    ~25 µs on the event loop, 50 ms of a 2,000-alarm storm); every line comes, once, in commit order, and whatever is
    told after them waits behind them. A change made alone is logged before its call returns."""
    clock = VirtualClock()
    smokes = [(d.id, d.gateway) for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE][:4]
    published: list[str] = []
    logged_when_published: list[int] = []

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "backend.alarms.service" and "(smoke" in r.getMessage()]

    async def subscriber(events: Sequence[Event]) -> None:
        for e in events:
            if isinstance(e, Persist) and e.alarm.alarm_type == "smoke":
                published.append(e.alarm.id)
                logged_when_published.append(len(lines()))

    def round_of(k: int) -> list[tuple[Uplink, int]]:
        device, gw = smokes[k]
        return [(event(gw, device, EventKind.SMOKE_ALARM, clock.now_ms(), k + 1), clock.now_ms())]

    caplog.set_level(logging.INFO, logger="backend.alarms.service")
    async with service(tmp_path, sample_site, clock) as svc:
        svc.stream.subscribe(subscriber, name="probe")
        async with svc._lock:  # the storm's next round waits for the service: its intake is busy meanwhile
            first = asyncio.create_task(svc.on_uplink_batch(round_of(0), more_coming=True))
            await asyncio.sleep(0)
            second = asyncio.create_task(svc.on_uplink_batch(round_of(1), more_coming=True))
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        await until(lambda: len(published) == 2, 5, "both rounds on the stream")
        assert logged_when_published == [0, 0], "a storm's line was logged before its alarms were out"
        await until(lambda: len(lines()) == 2, 5, "the storm's lines once its intake is over")
        await svc.on_uplink_batch(round_of(2))  # alone: logged before the call returns
        assert len(lines()) == 3
        assert [line.split(" ", 2)[1] for line in lines()] == published, "logged in commit order, each once"
