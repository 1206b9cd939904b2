"""A life-safety event is never refused, parked or dropped for a cosmetic field (issue 22, findings 2, 3, 10).

- At the trust boundary (broker.schemas): a NUL, a lone surrogate (escaped, or as raw bytes), a 501-character
  `detail` and a non-finite `value` are cleaned, not refused; telemetry stays strict.
- On the single process with the PostgreSQL alarm store (which refuses NUL in text): the smoke alarm whose
  detail holds a NUL is raised with its text cleaned, not dead-lettered; so are the other field cases.
- A msg_id reused by a gateway for a different message (a smoke alarm, then an SOS press) raises both, the
  second flagged and counted; a true redelivery is still a duplicate.
- A smoke detector the site directory does not list takes its gateway's place, so a duty officer scoped to
  the community sees its alarm.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backend.api.auth import Territory
from backend.sites.model import Gateway, SiteDirectory
from backend.store.db import make_engine, sqlite_url
from backend.store.pg_local import LocalPostgres
from backend.store.users import User
from broker.errors import MessageRejected, RejectReason
from broker.kinds import DeviceKind
from broker.schemas import TRUNCATED_MARK, DeviceEvent, decode_uplink
from broker.topics import event_topic, telemetry_topic
from tests.faults.centre import centre, send, until
from tests.processes import fresh_database

T = str(event_topic("gw1", "smoke1"))
HEAD = b'{"msg_id":"m1","source_ts_ms":1,"received_ts_ms":1,"event":"smoke_alarm"'


def event_of(payload: bytes) -> DeviceEvent:
    msg = decode_uplink(T, payload).message
    assert isinstance(msg, DeviceEvent)
    return msg


@pytest.mark.parametrize(
    ("tail", "detail", "value"),
    [
        (b',"detail":"kitchen\\u0000 smoke"', "kitchen smoke", None),  # NUL: PostgreSQL refuses it in text
        (b',"detail":"x\\ud800y"', "x\ufffdy", None),  # a lone surrogate escape
        (b',"detail":"x\xed\xa0\x80y"', "x\ufffd\ufffd\ufffdy", None),  # an encoded surrogate: not UTF-8
        (b',"value":Infinity', None, None),
        (b',"value":NaN,"detail":"sensor glitch"', "sensor glitch", None),
        (b',"value":-1e999', None, None),
        (b',"value":0.12,"detail":"ok\\ttab"', "ok\ttab", 0.12),  # clean input passes unchanged
    ],
)
def test_a_smoke_event_with_a_dirty_cosmetic_field_is_cleaned_not_refused(tail: bytes, detail: str | None, value: float | None) -> None:
    msg = event_of(HEAD + tail + b"}")
    assert (msg.detail, msg.value) == (detail, value)


def test_a_501_character_detail_is_cut_to_500_with_a_visible_mark() -> None:
    msg = event_of(HEAD + b',"detail":"' + "烟".encode() * 501 + b'"}')
    assert msg.detail is not None
    assert len(msg.detail) == 500
    assert msg.detail.endswith(TRUNCATED_MARK)
    assert msg.detail.startswith("烟" * 400)


def test_telemetry_stays_strict_and_broken_events_are_still_refused() -> None:
    with pytest.raises(MessageRejected) as info:
        decode_uplink(str(telemetry_topic("gw1", "m1")), b'{"msg_id":"a","source_ts_ms":1,"received_ts_ms":1,"readings":{"power_w":NaN}}')
    assert info.value.reason is RejectReason.MALFORMED_JSON
    with pytest.raises(MessageRejected) as info:
        decode_uplink(T, HEAD + b',"value":nan}')  # no JSON dialect knows this
    assert info.value.reason is RejectReason.MALFORMED_JSON
    with pytest.raises(MessageRejected) as info:
        decode_uplink(T, b'{"msg_id":"a\\u0000b","source_ts_ms":1,"received_ts_ms":1,"event":"smoke_alarm"}')  # an id is not cosmetic
    assert info.value.reason is RejectReason.SCHEMA


def _smokes(sites: SiteDirectory, n: int) -> list[tuple[str, str]]:
    by_unit = {(d.building, d.unit): d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE}
    return [(d.gateway, d.id) for d in list(by_unit.values())[:n]]


CASES = [  # (payload tail, the stored detail must contain, must not contain)
    (b',"detail":"kitchen\\u0000 smoke"', "kitchen smoke", "\x00"),
    (b',"detail":"' + b"x" * 501 + b'"', TRUNCATED_MARK, None),
    (b',"detail":"x\\ud800y"', "x\ufffdy", None),
    (b',"value":Infinity,"detail":"hot"', "hot", "inf"),
]


@pytest.mark.postgres
async def test_on_the_single_process_each_dirty_smoke_alarm_is_raised_with_its_text_cleaned_not_dead_lettered(
    tmp_path: Path, sample_site: SiteDirectory, postgres_server: LocalPostgres,
) -> None:
    engine = make_engine(fresh_database(postgres_server))
    try:
        async with centre(tmp_path, sample_site, engine) as (pipeline, service, ladders):
            devices = _smokes(sample_site, len(CASES) + 1)
            for i, ((gw, dev), (tail, _, _)) in enumerate(zip(devices, CASES, strict=False)):
                send(pipeline, str(event_topic(gw, dev)), HEAD.replace(b'"m1"', f'"dirty-{i}"'.encode()) + tail + b"}")
            gw, dev = devices[-1]
            send(pipeline, str(event_topic(gw, dev)), HEAD.replace(b'"m1"', b'"clean-after"') + b"}")
            await until(lambda: len(service.store.list(limit=100)) >= len(devices), 30, "an alarm for every smoke event")
            rows = {r.device_id: r for r in service.store.list(limit=100) if r.alarm_type == "smoke"}
            assert set(rows) == {dev for _, dev in devices}
            for (_, dev), (_, has, lacks) in zip(devices, CASES, strict=False):
                detail = rows[dev].detail or ""
                assert has in detail, (dev, detail)
                assert lacks is None or lacks not in detail, (dev, detail)
            await until(lambda: len(ladders.started) == len(devices), 10, "every alarm's ladder to start")
            assert pipeline.lanes.dead_letters == 0
            assert sum(pipeline.stats.rejected.values()) == 0, pipeline.stats.snapshot()["recent_rejections"]
    finally:
        engine.dispose()
    assert not (tmp_path / "journal" / "dead-letters.jsonl").exists()


async def test_a_msg_id_reused_for_an_sos_after_a_smoke_alarm_raises_both_and_is_flagged(tmp_path: Path, sample_site: SiteDirectory) -> None:
    smoke = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE)
    sos = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SOS and d.gateway == smoke.gateway)
    smoke_payload = b'{"msg_id":"r-1","source_ts_ms":1700000000000,"received_ts_ms":1700000000000,"event":"smoke_alarm"}'
    sos_payload = b'{"msg_id":"r-1","source_ts_ms":1700000001000,"received_ts_ms":1700000001000,"event":"sos_press"}'
    engine = make_engine(sqlite_url(tmp_path / "alarms.sqlite"))
    async with centre(tmp_path, sample_site, engine) as (pipeline, service, _):
        send(pipeline, str(event_topic(smoke.gateway, smoke.id)), smoke_payload)
        send(pipeline, str(event_topic(sos.gateway, sos.id)), sos_payload)
        send(pipeline, str(event_topic(smoke.gateway, smoke.id)), smoke_payload)  # redeliveries: still duplicates
        send(pipeline, str(event_topic(sos.gateway, sos.id)), sos_payload)
        await until(lambda: len(service.store.list(limit=10)) >= 2, 20, "both alarms")
        await until(lambda: pipeline.stats.duplicates >= 2, 5, "the redeliveries")
        rows = {r.device_id: r for r in service.store.list(limit=10)}
    engine.dispose()
    assert {(dev, r.alarm_type) for dev, r in rows.items()} == {(smoke.id, "smoke"), (sos.id, "sos")}
    assert all(r.occurrences == 1 for r in rows.values())
    assert pipeline.stats.reused_ids == 1
    assert pipeline.stats.snapshot()["reused_ids"] == 1
    assert pipeline.stats.duplicates == 2
    assert pipeline.lanes.uplinks_delivered == 2


@pytest.mark.parametrize("community_gateway", [False, True])
async def test_an_unknown_detectors_smoke_alarm_takes_its_gateways_place_and_the_community_duty_officer_sees_it(
    tmp_path: Path, sample_site: SiteDirectory, community_gateway: bool,
) -> None:
    sites = sample_site
    gateway = next(iter(sites.gateways.values()))
    if community_gateway:  # a gateway at the community gate, in no building
        gateway = Gateway("c01-gw-gate", None, gateway.community, "大门网关")
        sites = dataclasses.replace(sites, gateways={**sites.gateways, gateway.id: gateway})
    engine = make_engine(sqlite_url(tmp_path / "alarms.sqlite"))
    async with centre(tmp_path, sites, engine, known_devices_only=True) as (pipeline, service, ladders):
        send(pipeline, str(event_topic(gateway.id, "new-smoke-77")), HEAD.replace(b'"m1"', b'"u-1"') + b"}")
        await until(lambda: ladders.started, 20, "the unknown detector's alarm and its ladder")
        [row] = service.store.list(limit=10)
    engine.dispose()
    assert (row.device_id, row.gateway_id, row.building_id) == ("new-smoke-77", gateway.id, gateway.building)
    assert row.community_id == gateway.community
    officer = Territory.of(User("duty", "duty_officer", "值班员", gateway.community), sites)
    assert officer.covers(row.building_id, row.grid_id, row.community_id), "the community's duty officer sees the alarm"
    other = Territory.of(User("duty2", "duty_officer", "值班员", "c99"), sites)
    assert not other.covers(row.building_id, row.grid_id, row.community_id)
    assert list(ladders.started.values()) == [1]
    assert pipeline.stats.unknown_device_events == 1


async def test_a_msg_id_reused_after_a_restart_is_still_told_from_a_redelivery(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """The de-duplication window is reloaded from the uplink journal with what each message said."""
    smoke = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SMOKE)
    sos = next(d for d in sample_site.devices.values() if d.kind is DeviceKind.SOS and d.gateway == smoke.gateway)
    smoke_payload = b'{"msg_id":"r-2","source_ts_ms":1700000000000,"received_ts_ms":1700000000000,"event":"smoke_alarm"}'
    sos_payload = b'{"msg_id":"r-2","source_ts_ms":1700000001000,"received_ts_ms":1700000001000,"event":"sos_press"}'
    engine = make_engine(sqlite_url(tmp_path / "alarms.sqlite"))
    async with centre(tmp_path, sample_site, engine) as (pipeline, service, _):
        send(pipeline, str(event_topic(smoke.gateway, smoke.id)), smoke_payload)
        await until(lambda: service.store.list(limit=10), 20, "the smoke alarm")
        await until(lambda: not pipeline.ujournal.pending(0, 10), 10, "the smoke alarm marked done in the journal (else it is replayed)")
    async with centre(tmp_path, sample_site, engine) as (pipeline, service, _):  # the backend restarted
        send(pipeline, str(event_topic(smoke.gateway, smoke.id)), smoke_payload)  # a redelivery: a duplicate
        send(pipeline, str(event_topic(sos.gateway, sos.id)), sos_payload)  # the reuse: a new message
        await until(lambda: len(service.store.list(limit=10)) >= 2, 20, "the SOS alarm")
        await until(lambda: pipeline.stats.duplicates >= 1, 5, "the redelivery")
        rows = {r.device_id: r for r in service.store.list(limit=10)}
    engine.dispose()
    assert {(dev, r.alarm_type, r.occurrences) for dev, r in rows.items()} == {(smoke.id, "smoke", 1), (sos.id, "sos", 1)}
    assert (pipeline.stats.reused_ids, pipeline.stats.duplicates) == (1, 1)
