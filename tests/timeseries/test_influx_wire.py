"""The InfluxDB store up to the wire: the real influxdb-client talks to a local HTTP server that answers as
InfluxDB 2.x does (204 for writes, annotated CSV for queries); the test checks the exact bytes it sent.

What this does not prove (no InfluxDB server can be installed here): that a real server accepts the Flux
and computes the same aggregates; the contract suite runs against one when SHOUWANG_INFLUX_URL is set.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from influxdb_client.client.write.point import Point

from backend.ingest.handoff import Reading
from backend.sites.model import Building, Community, Device, Gateway, Grid, SiteDirectory
from backend.store.timeseries import Resolution, StoreUnavailable, TagDirectory
from backend.store.timeseries.influx import InfluxTimeSeries, flux_string, flux_time, line_protocol
from broker.kinds import DeviceKind

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class Captured:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeInflux:
    """Answers like InfluxDB 2.x: 204 to writes, the queued CSV (or 503s, if queued) to queries."""

    requests: list[Captured] = field(default_factory=list)
    csv: list[str] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # status codes to answer before succeeding
    url: str = ""


@pytest.fixture
def influx() -> Iterator[FakeInflux]:
    fake = FakeInflux()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            url = urlsplit(self.path)
            fake.requests.append(Captured("POST", url.path, parse_qs(url.query), dict(self.headers.items()), body))
            if fake.failures:
                status = fake.failures.pop(0)
                self.send_response(status)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                payload = json.dumps({"code": "unavailable", "message": "service unavailable"}).encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if url.path == "/api/v2/write":
                self.send_response(204)
                self.end_headers()
                return
            text = (fake.csv.pop(0) if fake.csv else "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-influx", daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


def sites() -> SiteDirectory:
    return SiteDirectory(
        communities={"c1": Community("c1", "和平社区")}, grids={"g 1": Grid("g 1", "一网格", "c1")},
        buildings={"b,1": Building("b,1", "1号楼", "g 1", 6, 2, 0, 0)}, households={},
        gateways={"gw1": Gateway("gw1", "b,1", "c1")},
        devices={"d=1": Device("d=1", DeviceKind.ELECTRICAL, "gw1", "b,1"), "d2": Device("d2", DeviceKind.SMOKE, "gw1", "b,1")},
        fire_stations={}, volunteer_teams={}, responders={},
    )


def make_store(fake: FakeInflux, **kw: object) -> InfluxTimeSeries:
    return InfluxTimeSeries(fake.url, "secret-token", "my-org", "telemetry", TagDirectory(sites()), retry_interval_s=0.01, max_retry_delay_s=0.05, **kw)  # type: ignore[arg-type]


def test_line_protocol_escapes_tags_and_sorts_like_the_official_point() -> None:
    readings = [
        Reading("d=1", "gw1", "temperature_c", 21.0, T0, T0 + 3),
        Reading("d=1", "gw1", "power_w@2", 1234.5, T0, T0 + 3),
        Reading("unknown", "gw1", "residual_current_ma", 3e-05, T0 + 7, T0 + 9),
        Reading("d2", "gw1", "residual_current_ma", 9.0, T0, T0, drill=True),
    ]
    lines = line_protocol(readings, TagDirectory(sites()))
    assert lines == [
        r"telemetry,building=b\,1,community=c1,device=d\=1,grid=g\ 1,kind=electrical power_w@2=1234.5,temperature_c=21 1767225600000",
        "telemetry,device=unknown residual_current_ma=3e-05 1767225600007",  # no empty tags: the device is not in the directory
    ]
    official: Any = Point("telemetry")  # type: ignore[no-untyped-call]
    for k, v in [("building", "b,1"), ("community", "c1"), ("device", "d=1"), ("grid", "g 1"), ("kind", "electrical")]:
        official = official.tag(k, v)
    official = official.field("power_w@2", 1234.5).field("temperature_c", 21.0).time(T0, "ms")
    assert lines[0] == official.to_line_protocol()


def test_writes_go_gzipped_with_millisecond_precision_to_the_bucket(influx: FakeInflux) -> None:
    store = make_store(influx)
    try:
        n = store.write([Reading("d2", "gw1", "temperature_c", 19.25, T0 + 1, T0 + 2)])
    finally:
        store.close()
    assert n == 1
    (req,) = influx.requests
    assert req.path == "/api/v2/write"
    assert req.query == {"org": ["my-org"], "bucket": ["telemetry"], "precision": ["ms"]}
    assert req.headers["Authorization"] == "Token secret-token"
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.body == b"telemetry,building=b\\,1,community=c1,device=d2,grid=g\\ 1,kind=smoke temperature_c=19.25 1767225600001"


def test_large_writes_are_split_into_batches(influx: FakeInflux) -> None:
    store = make_store(influx, batch_lines=2, gzip=False)
    try:
        store.write([Reading("d2", "gw1", "temperature_c", float(i), T0 + i, T0 + i) for i in range(5)])
    finally:
        store.close()
    assert [r.body.count(b"\n") + 1 for r in influx.requests] == [2, 2, 1]


def test_a_failed_write_is_retried_with_back_off_then_succeeds(influx: FakeInflux) -> None:
    influx.failures = [503, 429]
    store = make_store(influx, max_retries=3)
    try:
        store.write([Reading("d2", "gw1", "temperature_c", 1.0, T0, T0)])
    finally:
        store.close()
    assert [r.path for r in influx.requests] == ["/api/v2/write"] * 3
    assert influx.requests[0].body == influx.requests[2].body


def test_when_retries_are_exhausted_the_store_says_it_is_unavailable(influx: FakeInflux) -> None:
    influx.failures = [503] * 5
    store = make_store(influx, max_retries=2)
    try:
        with pytest.raises(StoreUnavailable, match="write failed"):
            store.write([Reading("d2", "gw1", "temperature_c", 1.0, T0, T0)])
    finally:
        store.close()
    assert len(influx.requests) == 3  # the first try and two retries


SERIES_CSV = """#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string
#group,false,false,true,true,false,false,true,true,true
#default,{name},,,,,,,,
,result,table,_start,_stop,_time,_value,_field,_measurement,device
,,0,2026-01-01T00:00:00Z,2026-01-01T02:00:00Z,2026-01-01T00:00:00Z,{v0},power_w,telemetry,d2
,,0,2026-01-01T00:00:00Z,2026-01-01T02:00:00Z,2026-01-01T01:00:00Z,{v1},power_w,telemetry,d2

"""


def test_series_sends_aggregate_window_flux_and_merges_the_four_yields(influx: FakeInflux) -> None:
    influx.csv = ["".join(SERIES_CSV.format(name=n, v0=a, v1=b) for n, a, b in [("min", 1, 2), ("max", 9, 8), ("mean", 5, 4.5), ("count", 60, 30)])]
    store = make_store(influx)
    try:
        result = store.series("d2", "power_w", T0, T0 + 2 * 3_600_000, every_ms=3_600_000)
    finally:
        store.close()
    (req,) = influx.requests
    assert req.path == "/api/v2/query"
    assert req.query == {"org": ["my-org"]}
    window = 'aggregateWindow(every: 3600000ms, fn: {}, createEmpty: false, timeSrc: "_start")'
    assert json.loads(req.body)["query"] == (
        'data = from(bucket: "telemetry")\n'
        "  |> range(start: 2026-01-01T00:00:00.000Z, stop: 2026-01-01T02:00:00.000Z)\n"
        '  |> filter(fn: (r) => r._measurement == "telemetry" and r.device == "d2" and r._field == "power_w")\n'
        + "\n".join(f'data\n  |> {window.format(fn)}\n  |> yield(name: "{fn}")' for fn in ("min", "max", "mean", "count"))
    )
    assert result.resolution is Resolution.HOUR
    assert [(p.ts_ms, p.min, p.max, p.mean, p.count) for p in result.points] == [(T0, 1, 9, 5, 60), (T0 + 3_600_000, 2, 8, 4.5, 30)]


def test_latest_and_building_queries_send_the_expected_flux(influx: FakeInflux) -> None:
    influx.csv = [SERIES_CSV.format(name="_result", v0=1, v1=2), SERIES_CSV.format(name="_result", v0=3, v1=4)]
    store = make_store(influx)
    try:
        latest = store.latest("d2")
        building = store.building_readings("b,1", T0, T0 + 60_000, metric="power_w", limit=50)
    finally:
        store.close()
    queries = [json.loads(r.body)["query"] for r in influx.requests]
    assert queries[0] == (
        'from(bucket: "telemetry")\n  |> range(start: -30d)\n'
        '  |> filter(fn: (r) => r._measurement == "telemetry" and r.device == "d2")\n  |> last()'
    )
    assert queries[1] == (
        'from(bucket: "telemetry")\n  |> range(start: 2026-01-01T00:00:00.000Z, stop: 2026-01-01T00:01:00.000Z)\n'
        '  |> filter(fn: (r) => r._measurement == "telemetry" and r.building == "b,1" and r._field == "power_w")\n'
        '  |> group()\n  |> sort(columns: ["_time"])\n  |> limit(n: 50)'
    )
    assert [(v.metric, v.value) for v in latest] == [("power_w", 1.0), ("power_w", 2.0)]
    assert [(r.device_id, r.ts_ms, r.value) for r in building] == [("d2", T0, 3.0), ("d2", T0 + 3_600_000, 4.0)]


def test_flux_literals_are_escaped() -> None:
    assert flux_string('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'
    assert flux_time(T0 + 1) == "2026-01-01T00:00:00.001Z"
