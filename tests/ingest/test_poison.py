"""A message alerting refuses every time is parked in a dead-letter file after a bounded number of tries, and
never holds back the messages around it; an outage of the alarm store is waited out, never parked."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

import backend.ingest.pipeline as pipeline_module
from backend.ingest.handoff import Reading
from backend.ingest.pipeline import Pipeline
from backend.settings import IngestSettings
from backend.sites import SiteDirectory
from backend.store.timeseries.model import TagDirectory
from backend.store.timeseries.sqlite import SqliteTimeSeries
from broker.kinds import DeviceKind, EventKind
from broker.schemas import DeviceEvent, Uplink, decode_uplink, encode
from broker.topics import event_topic


class Flaky:
    """A BatchFeed that refuses `poison` for ever (a bug in a rule), and everything while `down` (an outage)."""

    def __init__(self, poison: str) -> None:
        self.poison = poison
        self.down = False
        self.delivered: Counter[str] = Counter()

    def _check(self, uplink: Uplink) -> None:
        if self.down:
            raise OperationalError("SELECT 1", {}, Exception("database is restarting"))
        if getattr(uplink.message, "msg_id", "") == self.poison:
            raise ValueError("a rule cannot handle this message")

    async def on_uplink(self, uplink: Uplink, received_ms: int) -> None:
        self._check(uplink)
        self.delivered[getattr(uplink.message, "msg_id", "")] += 1

    async def on_uplink_batch(self, items: Sequence[tuple[Uplink, int]], *, more_coming: bool = False) -> None:
        for uplink, _ in items:
            self._check(uplink)
        for uplink, received_ms in items:
            await self.on_uplink(uplink, received_ms)

    async def on_readings(self, readings: Sequence[Reading]) -> None:
        return None


def _events(sites: SiteDirectory, n: int) -> list[tuple[str, bytes, str]]:
    smokes = [d for d in sites.devices.values() if d.kind is DeviceKind.SMOKE][:n]
    now = time.time_ns() // 1_000_000
    out = []
    for i, d in enumerate(smokes):
        mid = f"p-{i}"
        out.append((str(event_topic(d.gateway, d.id)), encode(DeviceEvent(msg_id=mid, source_ts_ms=now, received_ts_ms=now, event=EventKind.SMOKE_ALARM)), mid))
    return out


async def _run(tmp_path: Path, sites: SiteDirectory, feed: Flaky, messages: list[tuple[str, bytes, str]], *, outage_s: float = 0.0) -> Pipeline:
    acked: Counter[int] = Counter()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sites))
    pipeline = Pipeline(sites, feed=feed, store=store, journal_dir=tmp_path / "journal",
                        settings=IngestSettings(batch_linger_ms=1, store_retry_min_s=0.01, store_retry_max_s=0.05, feed_max_attempts=3))
    pipeline.bind(acked.update)
    tokens = itertools.count(1)
    async with pipeline:
        feed.down = outage_s > 0
        for topic, payload, _ in messages:
            pipeline.accept(topic, payload, next(tokens))
        if outage_s:
            await asyncio.sleep(outage_s)
            feed.down = False
        deadline = time.monotonic() + 20
        wanted = {mid for _, _, mid in messages if mid != feed.poison}
        while not (wanted <= set(feed.delivered) and (feed.poison in ("", *feed.delivered) or pipeline.lanes.dead_letters)):
            assert time.monotonic() < deadline, f"not delivered: {wanted - set(feed.delivered)}, lanes {pipeline.lanes.snapshot()}"
            await asyncio.sleep(0.01)
    store.close()
    return pipeline


async def test_a_poison_message_is_parked_and_the_burst_around_it_arrives(tmp_path: Path, sample_site: SiteDirectory) -> None:
    messages = _events(sample_site, 20)
    feed = Flaky(poison=messages[7][2])
    pipeline = await _run(tmp_path, sample_site, feed, messages)
    assert set(feed.delivered) == {mid for _, _, mid in messages} - {feed.poison}
    assert all(n == 1 for n in feed.delivered.values())  # the failed batch was handed over one by one, nothing twice
    assert pipeline.lanes.dead_letters == 1
    [parked] = [json.loads(line) for line in (tmp_path / "journal" / "dead-letters.jsonl").read_text().splitlines()]
    assert parked["key"].endswith(feed.poison)
    assert parked["attempts"] == 3
    assert "a rule cannot handle this message" in parked["error"]


async def test_an_alarm_store_outage_is_waited_out_and_nothing_is_parked(tmp_path: Path, sample_site: SiteDirectory) -> None:
    messages = _events(sample_site, 10)
    feed = Flaky(poison="")
    pipeline = await _run(tmp_path, sample_site, feed, messages, outage_s=1.0)
    assert set(feed.delivered) == {mid for _, _, mid in messages}
    assert pipeline.lanes.dead_letters == 0
    assert pipeline.lanes.feed_failures > 3  # it did fail more often than feed_max_attempts, and waited
    assert not (tmp_path / "journal" / "dead-letters.jsonl").exists()


async def test_a_message_the_intake_itself_fails_on_is_parked_counted_and_acknowledged(tmp_path: Path, sample_site: SiteDirectory,
                                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug of ours in decoding (injected: the decoder raising on one payload, as msgspec once did on invalid UTF-8)
    must cost that message nothing but a dead letter: counted as internal_error, acknowledged, parked with its exact
    bytes for a replay, and the smoke alarms around it delivered."""
    real = decode_uplink

    def buggy(topic: str, payload: bytes) -> Uplink:
        if b'"p-1"' in payload:
            raise UnicodeDecodeError("utf-8", payload, 0, 1, "a decoder bug")
        return real(topic, payload)

    monkeypatch.setattr(pipeline_module, "decode_uplink", buggy)
    feed = Flaky(poison="")
    acked: Counter[int] = Counter()
    store = SqliteTimeSeries(tmp_path / "ts.sqlite", TagDirectory(sample_site))
    pipeline = Pipeline(sample_site, feed=feed, store=store, journal_dir=tmp_path / "journal", settings=IngestSettings(batch_linger_ms=1))
    pipeline.bind(acked.update)
    messages = _events(sample_site, 3)
    async with pipeline:
        for token, (topic, payload, _) in enumerate(messages, start=1):
            pipeline.accept(topic, payload, token)
        async with asyncio.timeout(10):
            while set(feed.delivered) != {"p-0", "p-2"}:
                await asyncio.sleep(0.01)
    assert acked == Counter({1: 1, 2: 1, 3: 1}), "every message acknowledged once"
    assert pipeline.stats.snapshot()["rejected_by_reason"] == {"internal_error": 1}
    [parked] = [json.loads(line) for line in (tmp_path / "journal" / "dead-letters.jsonl").read_text().splitlines()]
    assert parked["topic"] == messages[1][0]
    assert base64.b64decode(parked["payload_b64"]) == messages[1][1], "the exact bytes, for a replay after the fix"
    assert "UnicodeDecodeError" in parked["error"]
