"""The ingest path fuzzed with Hypothesis: the real Pipeline (journals, SQLite store) into the real AlarmService.

Each example interleaves well-formed messages with hostile ones (malformed JSON, wrong types, NaN and
infinities, 1 MB payloads, bad topics, replayed message ids, timestamps far in the future). Properties:
nothing crashes (every lane task still runs, the alarm service never refused a message), every message is
acknowledged exactly once, each bad one is rejected with a reason code and a sentence and counted under
that code, replays are counted as duplicates and delivered once, and every good message around them
reaches the alarm service (uplinks) or the store (telemetry). Coverage-guided fuzzing of the parsers with
atheris is tests/fuzz/test_atheris.py (docs/reliability.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.sites.model import SiteDirectory
from broker.errors import MessageRejected, RejectReason
from broker.kinds import EventKind
from broker.schemas import decode_uplink
from tests.fuzz.harness import Msg, PipelineHarness, good_event, good_telemetry

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

INT64_MAX = 2**63 - 1


@pytest.fixture
def harness(tmp_path: Path, sample_site: SiteDirectory) -> Iterator[PipelineHarness]:
    h = PipelineHarness(tmp_path, sample_site)
    try:
        yield h
    finally:
        h.close()


def _event_dict(msg: Msg) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(msg.payload)
    return out


# -- strategies of bad input ---------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=6)


@st.composite
def malformed_json(draw: st.DrawFn, sites: SiteDirectory) -> tuple[Msg, set[str]]:
    base = good_event(sites, draw(st.integers(0, 50)))
    raw = draw(st.one_of(
        st.binary(max_size=300),
        st.just(base.payload[: len(base.payload) * draw(st.integers(0, 99)) // 100]),  # truncated
        st.just(base.payload.replace(b'"', b"'")),
        st.just(b"\xff\xfe" + base.payload),
        st.just(base.payload + b"}"),
    ))
    return Msg(base.topic, raw, False), {RejectReason.MALFORMED_JSON.value, RejectReason.SCHEMA.value}


@st.composite
def wrong_types(draw: st.DrawFn, sites: SiteDirectory) -> tuple[Msg, set[str]]:
    base = good_event(sites, draw(st.integers(0, 50)))
    d = _event_dict(base)
    key = draw(st.sampled_from(["msg_id", "source_ts_ms", "received_ts_ms", "event", "drill", "needs_callback", "value", "extra_field"]))
    value = draw(json_values)
    ok_types: dict[str, tuple[type, ...]] = {"msg_id": (str,), "source_ts_ms": (int,), "received_ts_ms": (int,), "event": (),
                                             "drill": (bool,), "needs_callback": (bool,), "value": (int, float, type(None))}
    if key in ok_types and isinstance(value, ok_types[key]) and not (isinstance(value, bool) and int not in ok_types[key] and bool not in ok_types[key]):
        value = [value]  # keep it wrong: a list where a scalar belongs
    d[key] = value
    return Msg(base.topic, json.dumps(d).encode(), False), {RejectReason.SCHEMA.value}


@st.composite
def non_finite(draw: st.DrawFn, sites: SiteDirectory) -> tuple[Msg, set[str]]:
    base = good_telemetry(sites, draw(st.integers(0, 50)))
    token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "nan", "inf"]))
    where = draw(st.sampled_from(["reading", "value"]))
    if where == "reading":
        payload = base.payload.replace(b"21.5", token.encode())
        return Msg(base.topic, payload, False), {RejectReason.SCHEMA.value, RejectReason.MALFORMED_JSON.value}
    ev = good_event(sites, draw(st.integers(0, 50)))
    # An event's NaN, Infinity or 1e999 `value` is left out, never refused (issue 22, tests/ingest/test_cosmetic_fields.py):
    # only tokens no JSON dialect knows stay bad here.
    token = draw(st.sampled_from(["nan", "inf", "-inf", "infinity"]))
    payload = ev.payload[:-1] + b',"value":' + token.encode() + b"}"
    return Msg(ev.topic, payload, False), {RejectReason.SCHEMA.value, RejectReason.MALFORMED_JSON.value}


@st.composite
def oversized(draw: st.DrawFn, sites: SiteDirectory) -> tuple[Msg, set[str]]:
    base = good_event(sites, draw(st.integers(0, 50)))
    size = draw(st.sampled_from([64 * 1024 + 1, 256 * 1024, 1024 * 1024]))
    d = _event_dict(base)
    d["detail"] = "x" * size
    return Msg(base.topic, json.dumps(d).encode(), False), {RejectReason.TOO_LARGE.value}


@st.composite
def bad_topics(draw: st.DrawFn, sites: SiteDirectory) -> tuple[Msg, set[str]]:
    base = good_event(sites, draw(st.integers(0, 50)))
    topic = draw(st.one_of(
        st.text(max_size=60),
        st.just(base.topic.replace("/event", "/cmd/sound")),
        st.just(base.topic.replace("sw/v1", "sw/v9")),
        st.just(base.topic + "/extra"),
        st.just(base.topic.replace("/dev/", "/dev/+/")),
    ))
    return Msg(topic, base.payload, False), {RejectReason.BAD_TOPIC.value, RejectReason.NOT_UPLINK.value}


def bad_messages(sites: SiteDirectory) -> st.SearchStrategy[tuple[Msg, set[str]]]:
    return st.one_of(malformed_json(sites), wrong_types(sites), non_finite(sites), oversized(sites), bad_topics(sites))


# -- properties ------------------------------------------------------------------------------------------------

def test_bad_input_is_rejected_with_a_reason_and_counted_and_good_messages_around_it_arrive(harness: PipelineHarness) -> None:
    sites = harness.sites
    stats = harness.pipeline.stats

    @FUZZ
    @given(st.lists(st.tuples(st.booleans(), bad_messages(sites)), min_size=1, max_size=12), st.integers(0, 1000))
    def check(items: list[tuple[bool, tuple[Msg, set[str]]]], k: int) -> None:
        batch: list[Msg] = []
        expected: list[set[str]] = []
        for i, (telemetry, (bad, reasons)) in enumerate(items):
            batch.append(good_telemetry(sites, k + i) if telemetry else good_event(sites, k + i))
            batch.append(bad)
            expected.append(reasons)
        batch.append(good_event(sites, k + 99))
        before = stats.snapshot()
        accepted_before = stats.accepted
        recent_before = len(stats.recent)
        tokens = harness.send(batch)
        assert all(harness.acked[t] == 1 for t in tokens), "every message is acknowledged exactly once"
        after = stats.snapshot()
        assert after["rejected_total"] - before["rejected_total"] == len(expected)
        assert stats.accepted - accepted_before == len(batch) - len(expected)
        grew = {r: n - before["rejected_by_reason"].get(r, 0) for r, n in after["rejected_by_reason"].items()}
        assert sum(grew.values()) == len(expected)
        allowed = set().union(*expected)
        assert {r for r, n in grew.items() if n} <= allowed, (grew, allowed)
        fresh = list(stats.recent)[-min(len(expected), 100 - recent_before if recent_before < 100 else len(expected)):]
        assert all(r.reason and r.detail for r in fresh), "each rejection carries a reason code and a sentence"
        assert harness.pipeline.lanes.feed_failures == 0

    check()


def test_replayed_message_ids_are_counted_once_delivered_once(harness: PipelineHarness) -> None:
    sites = harness.sites

    @FUZZ
    @given(st.lists(st.integers(0, 5), min_size=1, max_size=20), st.integers(0, 1000))
    def check(repeats: list[int], k: int) -> None:
        originals = [good_event(sites, k + i) if i % 2 else good_telemetry(sites, k + i) for i in range(len(repeats))]
        replays = [Msg(m.topic, m.payload, False, m.msg_id, m.telemetry, dup_of=m.msg_id) for m, n in zip(originals, repeats, strict=True) for _ in range(n)]
        batch = list(originals) + replays
        dup_before = harness.pipeline.duplicates
        rejected_before = sum(harness.pipeline.stats.rejected.values())
        tokens = harness.send(batch)
        assert all(harness.acked[t] == 1 for t in tokens)
        assert harness.pipeline.duplicates - dup_before == sum(repeats)
        assert sum(harness.pipeline.stats.rejected.values()) == rejected_before
        for m in originals:
            if not m.telemetry:
                assert harness.feed.uplink_ids[m.msg_id or ""] == 1, "a replayed event reaches alerting once"

    check()


def test_timestamps_far_in_the_future_never_crash_and_never_block_good_messages(harness: PipelineHarness) -> None:
    """A source timestamp anywhere a JSON integer can reach: accepted and delivered, or rejected with a reason.
    Never a poison message that the alarm service refuses (and the uplink lane re-offers for ever)."""
    sites = harness.sites
    now = harness.pipeline.clock.now_ms()

    @FUZZ
    @given(st.lists(st.one_of(st.integers(now + 60_000, now + 10 * 365 * 86_400_000), st.integers(now, INT64_MAX),
                              st.integers(INT64_MAX - 1000, 2**64 - 1)), min_size=1, max_size=6), st.integers(0, 1000))
    def check(stamps: list[int], k: int) -> None:
        batch: list[Msg] = []
        for i, ts in enumerate(stamps):
            m = good_event(sites, k + i, ts_ms=ts)
            reason = _rejection(m)
            if reason is None:
                batch.append(m)  # accepted by the contract: it must reach the alarm service
            else:
                assert reason in (RejectReason.SCHEMA, RejectReason.CLOCK)
                batch.append(Msg(m.topic, m.payload, False))
            batch.append(good_event(sites, k + i + 500))
        rejected_before = sum(harness.pipeline.stats.rejected.values())
        harness.send(batch)
        assert harness.pipeline.lanes.feed_failures == 0, "the alarm service refused a message the contract accepted"
        assert sum(harness.pipeline.stats.rejected.values()) - rejected_before == sum(1 for m in batch if not m.good)

    check()


def _rejection(m: Msg) -> RejectReason | None:
    try:
        decode_uplink(m.topic, m.payload)
    except MessageRejected as exc:
        return exc.reason if exc.detail else None
    return None


def test_unknown_devices_reach_alerting_and_are_not_lost(harness: PipelineHarness) -> None:
    """A smoke alarm from a device the site directory does not know is raised all the same (fail-open for life
    safety: a detector fitted before the directory was updated must still be heard), and counted."""
    m = good_event(harness.sites, 0)
    gateway = m.topic.split("/")[3]
    topic = m.topic.replace(m.topic.split("/")[5], "ghost-smoke-1")
    harness.send([Msg(topic, m.payload, True, m.msg_id)])
    open_alarms = harness.service.store.list(open_only=True)
    assert any(a.device_id == "ghost-smoke-1" and a.gateway_id == gateway for a in open_alarms)
    assert harness.pipeline.stats.unknown_device_events == 1


def test_unknown_device_telemetry_is_rejected_with_a_reason_and_counted(harness: PipelineHarness) -> None:
    m = good_telemetry(harness.sites, 0)
    topic = m.topic.replace(m.topic.split("/")[5], "ghost-meter-1")
    before = harness.pipeline.stats.rejected[RejectReason.UNKNOWN_DEVICE.value]
    harness.send([Msg(topic, m.payload, False)])
    assert harness.pipeline.stats.rejected[RejectReason.UNKNOWN_DEVICE.value] == before + 1
    assert "not in the site directory" in harness.pipeline.stats.recent[-1].detail


def test_a_device_speaking_through_another_gateway_is_rejected_unless_it_is_a_life_safety_event(harness: PipelineHarness) -> None:
    m = good_telemetry(harness.sites, 0)
    gateway = m.topic.split("/")[3]
    other = next(g for g in sorted(harness.sites.gateways) if g != gateway)
    harness.send([Msg(m.topic.replace(f"/gw/{gateway}/", f"/gw/{other}/"), m.payload, False)])
    assert harness.pipeline.stats.rejected[RejectReason.WRONG_GATEWAY.value] == 1
    assert f"belongs to gateway {gateway!r}" in harness.pipeline.stats.recent[-1].detail
    e = good_event(harness.sites, 1)
    e_gateway = e.topic.split("/")[3]
    e_other = next(g for g in sorted(harness.sites.gateways) if g != e_gateway)
    harness.send([Msg(e.topic.replace(f"/gw/{e_gateway}/", f"/gw/{e_other}/"), e.payload, True, e.msg_id)])
    device = e.topic.split("/")[5]
    assert any(a.device_id == device for a in harness.service.store.list(open_only=True))


def test_a_gateway_cannot_clear_another_gateways_smoke_alarm(harness: PipelineHarness) -> None:
    """One gateway's broker login must not silence another building's fire: a clear for a device the directory places
    behind another gateway is refused (wrong_gateway); the same clear through the device's own gateway works."""
    e = good_event(harness.sites, 5)
    gateway, device = e.topic.split("/")[3], e.topic.split("/")[5]
    harness.send([e])
    assert any(a.device_id == device for a in harness.service.store.list(open_only=True))
    other = next(g for g in sorted(harness.sites.gateways) if g != gateway)
    now = time.time_ns() // 1_000_000
    clear = json.dumps({"msg_id": "fz-forged-clear", "source_ts_ms": now, "received_ts_ms": now, "event": EventKind.SMOKE_CLEAR.value}).encode()
    before = harness.pipeline.stats.rejected[RejectReason.WRONG_GATEWAY.value]
    harness.send([Msg(e.topic.replace(f"/gw/{gateway}/", f"/gw/{other}/"), clear, False, "fz-forged-clear")])
    assert harness.pipeline.stats.rejected[RejectReason.WRONG_GATEWAY.value] == before + 1
    assert "may not clear" in harness.pipeline.stats.recent[-1].detail
    smoke = next(a for a in harness.service.store.list(open_only=True) if a.device_id == device)
    assert str(smoke.state) == "raised" or "notified" in str(smoke.state), f"the forged clear moved the alarm: {smoke.state}"
    harness.send([Msg(e.topic, clear.replace(b"fz-forged-clear", b"fz-own-clear"), True, "fz-own-clear")])
    assert harness.pipeline.stats.rejected[RejectReason.WRONG_GATEWAY.value] == before + 1
    after = next(a for a in harness.service.store.list() if a.device_id == device)
    assert after.state != smoke.state, "the device's own gateway clears it"


@pytest.mark.parametrize("ts", [INT64_MAX + 1, 2**64 - 1], ids=["2^63", "2^64-1"])
def test_a_timestamp_beyond_int64_is_rejected_not_a_poison_message(harness: PipelineHarness, ts: int) -> None:
    """Found by the fuzz test above: msgspec decodes JSON integers up to 2^64-1, the rule engine keeps times in
    numpy int64, so such a smoke event made AlarmService.on_uplink raise OverflowError, and the uplink lane
    re-offered it for ever (feed_failures climbing, every round delayed by the retry pause)."""
    poison = good_event(harness.sites, 3, ts_ms=ts)
    with pytest.raises(MessageRejected) as info:
        decode_uplink(poison.topic, poison.payload)
    assert info.value.reason is RejectReason.SCHEMA
    harness.send([Msg(poison.topic, poison.payload, False), good_event(harness.sites, 4)])
    assert harness.pipeline.stats.rejected[RejectReason.SCHEMA.value] == 1
    assert harness.pipeline.lanes.feed_failures == 0
