"""Coverage-guided fuzz targets (atheris on libFuzzer) for the two places untrusted bytes enter Shouwang.

Run one (libFuzzer's flags after the target name; a corpus folder, if given, collects what it finds):

    .venv/bin/python -m tests.fuzz.atheris_targets centre -max_total_time=600 [CORPUS_DIR ...]
    .venv/bin/python -m tests.fuzz.atheris_targets edge -max_total_time=600 [CORPUS_DIR ...]
    .venv/bin/python -m tests.fuzz.atheris_targets centre crash-1234abcd      # replay one input

`--seeds=DIR` writes the seed corpus there (default: a fresh temporary folder); it is always fuzzed from,
unless the arguments name only input files (replay). A crash (an uncaught exception: a property below,
or anything the code under test raised) prints the Python traceback and libFuzzer writes the input to
`crash-<sha1>` (under `-artifact_prefix=`); `... atheris_targets describe TARGET FILE` prints the topics and
payloads an input stands for.

How this works: the repository packages (broker, edge, backend) are imported under
`atheris.instrument_imports`, so libFuzzer sees the branches of our Python code (msgspec is C and gives
no coverage; its behaviour shows through ours). Each fuzz input is turned into MQTT messages by a small,
invertible format, so the seeds are the real device samples and real contract messages, byte for byte:

    centre   [shape][identity][head] "\\n" [payload]
             shape     low bits: telemetry, event, availability, status, patrol, cmd, or a raw topic;
                       bit 7: inflate the payload past the 64 KiB limit (with JSON whitespace)
             identity  bit 7 clear: a device of the sample site directory (low 6 bits pick it; bit 6 puts
                       it behind another gateway); bit 7 set: the ids are the head's "gateway|device"
             head      the ids, the command name ("gateway|command") or the raw topic, as UTF-8
    edge     records separated by 0x1e, each [selector][topic tail] "\\n" [payload]
             selector  low 6 bits: one of the LAN prefixes the sample edge configuration owns (one per
                       dialect adapter, devices' own prefixes for Shelly and ESPHome, and native), or a
                       raw topic; bit 6: retained; bit 7: inflate the payload past the limit

Properties. centre: `decode_uplink` and the pipeline's known-device check (`Pipeline._check_known`)
return an Uplink or raise `MessageRejected` with a reason code and a sentence, nothing else; an over-limit
payload under a valid topic is `too_large`; an accepted message is an uplink (never a command), its topic
prints back to the topic it came on, its timestamps are non-negative and fit int64, and it re-encodes
and decodes to an equal message. edge: `Router.route` returns Mapped or Rejected and never raises (one
input's records run in order on a fresh router, so latches and de-duplication are fuzzed too); a
rejection has a sentence; an over-limit payload is refused; every mapped message, encoded under the
uplink topic the agent would publish it on (`EdgeAgent._row`: telemetry / event / availability topic of
our gateway and the routed device), is accepted by the centre's `decode_uplink` unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, cast

import atheris  # type: ignore[import-untyped]  # no stubs or py.typed; only Setup, Fuzz and instrument_imports are used

with atheris.instrument_imports(include=["broker", "edge", "backend"]):
    from backend.ingest.pipeline import Pipeline
    from backend.ingest.telemetry_lane import readings_of
    from backend.sites import SiteDirectory, load_site_directory
    from broker.errors import MessageRejected, RejectReason
    from broker.ids import DeviceId, GatewayId
    from broker.kinds import AvailabilityState, EventKind, GatewayState
    from broker.schemas import (
        MAX_PAYLOAD_BYTES,
        DeviceAvailability,
        DeviceEvent,
        GatewayCommand,
        GatewayStatus,
        PatrolHeartbeat,
        Telemetry,
        Uplink,
        decode_uplink,
        encode,
    )
    from broker.topics import TopicKind, UplinkTopic, availability_topic, event_topic, telemetry_topic
    from edge.adapters import Context, Mapped, Outcome, RejectCode, Rejected, Routed, Router, build_adapters
    from edge.adapters.base import Latches
    from edge.config import parse_config

from tests.conftest import SAMPLE_SITE, SAMPLES
from tests.edge.sample_config import sample_config

__all__ = ["TARGETS", "centre_input", "describe", "edge_input", "main", "regressions", "seed_corpus"]

NOW_MS: Final = 1_785_853_200_000  # a fixed "now" (2026-08-04): the same input always gives the same outcome
INT64_MAX: Final = 2**63 - 1
GATEWAY: Final = "gw-samples"  # the edge's own gateway id in the sample configuration
LAN_GATEWAY: Final = "gw-lan"  # a second native prefix, whose devices need not be listed
RAW: Final = "raw"
RECORD_SEP: Final = b"\x1e"
MAX_RECORDS: Final = 8  # records of one edge input after which the rest is ignored (keeps one input cheap)
INFLATE: Final = 0x80

CENTRE_SHAPES: Final[tuple[TopicKind | str, ...]] = (
    TopicKind.TELEMETRY,
    TopicKind.EVENT,
    TopicKind.AVAILABILITY,
    TopicKind.GATEWAY_STATUS,
    TopicKind.PATROL,
    TopicKind.COMMAND,
    RAW,
)
FUZZED_IDS: Final = 0x80
OTHER_GATEWAY: Final = 0x40


# -- the systems under test, built once ------------------------------------------------------------------


def edge_config() -> dict[str, Any]:
    """The edge tests' sample configuration plus native devices (the samples have no native dialect)."""
    config = sample_config(GATEWAY)
    config["adapters"] += [
        {"dialect": "native", "devices": {"nat-smoke-1": {"id": "nat-smoke-1", "kind": "smoke"},
                                          "nat-meter-1": {"id": "nat-meter-1", "kind": "electrical", "drill": True}}},
        {"dialect": "native", "name": "native-unlisted", "prefix": LAN_GATEWAY, "allow_unlisted": True},
    ]
    return config


def new_router() -> Router:
    return Router(build_adapters(parse_config(edge_config())))


SITES: Final[SiteDirectory] = load_site_directory(SAMPLE_SITE)
SITE_DEVICES: Final = sorted(SITES.devices.values(), key=lambda d: d.id)
SITE_GATEWAYS: Final = sorted(SITES.gateways)
PIPELINE: Final = Pipeline(SITES)  # only its intake checks run here: no loop, journal or store is needed
EDGE_PREFIXES: Final[tuple[str, ...]] = tuple(sorted(new_router()._owner))


# -- input formats ---------------------------------------------------------------------------------------


def _inflate(payload: bytes) -> bytes:
    """The payload padded with JSON whitespace to just past the limit: only the size should refuse it."""
    return payload + b" " * max(1, MAX_PAYLOAD_BYTES + 1 - len(payload))


def _split(rest: bytes) -> tuple[str, bytes]:
    head, _, payload = rest.partition(b"\n")
    return head.decode("utf-8", errors="replace"), payload


def centre_input(shape: TopicKind | str, payload: bytes, *, device: int | None = None, other_gateway: bool = False,
                 head: str = "", inflate: bool = False) -> bytes:
    """The centre target's bytes for one message (the inverse of `_centre_message`)."""
    identity = (device % 64 if device is not None else FUZZED_IDS) | (OTHER_GATEWAY if other_gateway else 0)
    return bytes([CENTRE_SHAPES.index(shape) | (INFLATE if inflate else 0), identity]) + head.encode() + b"\n" + payload


def _centre_message(data: bytes) -> tuple[str, bytes, bool] | None:
    """(topic, payload, inflated) from the centre target's bytes."""
    if len(data) < 2:
        return None
    shape = CENTRE_SHAPES[(data[0] & 0x7F) % len(CENTRE_SHAPES)]
    identity = data[1]
    head, payload = _split(data[2:])
    if data[0] & INFLATE:
        payload = _inflate(payload)
    if shape == RAW:
        return head, payload, bool(data[0] & INFLATE)
    if identity & FUZZED_IDS:
        gateway, _, name = head.partition("|")
    else:
        known = SITE_DEVICES[(identity & 0x3F) % len(SITE_DEVICES)]
        gateway, name = known.gateway, known.id
        if identity & OTHER_GATEWAY:
            gateway = SITE_GATEWAYS[(SITE_GATEWAYS.index(gateway) + 1) % len(SITE_GATEWAYS)]
        if shape is TopicKind.COMMAND:
            name = head or "patrol-test"
    kind = TopicKind(shape)
    # The grammar's own formatting, fed unchecked ids on purpose: the ids are what is being fuzzed.
    topic = UplinkTopic(kind, cast(GatewayId, gateway),
                        cast(DeviceId, name) if kind in (TopicKind.TELEMETRY, TopicKind.EVENT, TopicKind.AVAILABILITY) else None,
                        name if kind is TopicKind.COMMAND else None)
    return str(topic), payload, bool(data[0] & INFLATE)


def edge_input(*records: tuple[str, bytes, bool]) -> bytes:
    """The edge target's bytes for LAN messages (topic, payload, retained) (the inverse of `_edge_messages`)."""
    out = []
    for topic, payload, retained in records:
        owners = [p for p in EDGE_PREFIXES if topic.startswith(p + "/")]
        if owners:
            prefix = max(owners, key=len)
            selector, tail = EDGE_PREFIXES.index(prefix), topic[len(prefix) + 1:]
        else:
            selector, tail = len(EDGE_PREFIXES), topic
        out.append(bytes([selector | (0x40 if retained else 0)]) + tail.encode() + b"\n" + payload)
    return RECORD_SEP.join(out)


def _edge_messages(data: bytes) -> Iterator[tuple[str, bytes, bool, bool]]:
    """(topic, payload, retained, inflated) for each record of the edge target's bytes."""
    for record in data.split(RECORD_SEP)[:MAX_RECORDS]:
        if not record:
            continue
        selector = record[0]
        tail, payload = _split(record[1:])
        index = (selector & 0x3F) % (len(EDGE_PREFIXES) + 1)
        topic = f"{EDGE_PREFIXES[index]}/{tail}" if index < len(EDGE_PREFIXES) else tail
        inflated = bool(selector & INFLATE)
        yield topic, _inflate(payload) if inflated else payload, bool(selector & 0x40), inflated


# -- the targets -----------------------------------------------------------------------------------------


def _require(holds: object, why: str) -> None:
    """A property of the target: when it fails, the input is a crash (not `assert`: it survives -O)."""
    if not holds:
        raise AssertionError(why)


def _check_rejection(exc: MessageRejected, topic: str) -> None:
    _require(isinstance(exc.reason, RejectReason), f"reason {exc.reason!r} is not a RejectReason")
    _require(isinstance(exc.detail, str) and exc.detail.strip(), f"rejection {exc.reason} of {topic!r} has no sentence")


def check_centre(topic: str, payload: bytes, inflated: bool = False) -> Uplink | None:
    """The centre's intake checks on one message; AssertionError if a property fails."""
    try:
        uplink = decode_uplink(topic, payload)
        PIPELINE._check_known(uplink, topic)
    except MessageRejected as exc:
        _check_rejection(exc, topic)
        parts = topic.split("/")
        PIPELINE.stats.reject(exc, payload, NOW_MS, parts[3] if len(parts) > 3 else None)  # as Pipeline.accept does
        if inflated and exc.reason not in (RejectReason.BAD_TOPIC, RejectReason.NOT_UPLINK):
            _require(exc.reason is RejectReason.TOO_LARGE, f"a {len(payload)}-byte payload was rejected as {exc.reason}, not too_large")
        return None
    _require(not inflated, f"a {len(payload)}-byte payload was accepted; the limit is {MAX_PAYLOAD_BYTES}")
    msg = uplink.message
    _require(not isinstance(msg, GatewayCommand), "a command was accepted as an uplink")
    _require(str(uplink.topic) == topic, f"topic {topic!r} parsed as {uplink.topic!r}, which prints as {str(uplink.topic)!r}")
    for name in ("source_ts_ms", "received_ts_ms"):
        ts = getattr(msg, name)
        _require(0 <= ts <= INT64_MAX, f"{name}={ts} does not fit a signed 64-bit integer")
    again = decode_uplink(topic, encode(msg))
    _require(again == uplink, f"re-encoding changed the message: {msg!r} -> {again.message!r}")
    if isinstance(msg, Telemetry):
        _require(len(readings_of(uplink, NOW_MS)) == len(msg.readings), "readings_of lost readings")
    return uplink


def centre(data: bytes) -> None:
    message = _centre_message(data)
    if message is not None:
        check_centre(*message)


def uplink_topic_of(routed: Routed) -> str:
    """The topic the edge agent publishes a routed message on (as `EdgeAgent._row` chooses it)."""
    msg = routed.message
    if isinstance(msg, Telemetry):
        return telemetry_topic(GATEWAY, routed.device)
    if isinstance(msg, DeviceEvent):
        return event_topic(GATEWAY, routed.device)
    return availability_topic(GATEWAY, routed.device)


class EdgeRouter:
    """One router reused for every input, its per-message state cleared before each: a fresh `Router` costs
    ~0.7 ms (configuration parsing and adapter set-up), several times the routing itself.

    The state is every dict of an adapter that is empty when built (latches, Shelly status, ESPHome carried
    values, Zigbee2MQTT SOS de-duplication...); the non-empty ones are configuration. `check_reset` proves
    the reset on the seeds against a fresh router before fuzzing starts, so an adapter that grows state
    somewhere else fails loudly instead of making the target non-deterministic."""

    def __init__(self) -> None:
        self.config = parse_config(edge_config())
        self.router = Router(build_adapters(self.config))
        self._state: list[dict[Any, Any]] = []
        for adapter in self.router.adapters:
            for value in vars(adapter).values():
                table = value._state if isinstance(value, Latches) else value
                if isinstance(table, dict) and not table:
                    self._state.append(table)

    def fresh(self) -> Router:
        for table in self._state:
            table.clear()
        return self.router

    def check_reset(self, inputs: list[bytes]) -> None:
        for data in [*inputs, *reversed(inputs)]:
            try:
                reused, new = route_all(self.fresh(), data), route_all(Router(build_adapters(self.config)), data)
            except Exception:  # a crashing seed: libFuzzer runs it next and reports it with its input
                continue
            if [o for *_, o in reused] != [o for *_, o in new]:
                raise SystemExit(f"the edge target's router reset is incomplete: {describe('edge', data)}")


def route_all(router: Router, data: bytes) -> list[tuple[str, bytes, bool, Outcome]]:
    """Each record of an edge input routed in order: (topic, payload, inflated, outcome)."""
    ids = itertools.count(1)
    ctx = Context(NOW_MS, lambda: f"{GATEWAY}-{next(ids)}")
    return [(topic, payload, inflated, router.route(topic, payload, retained, ctx)) for topic, payload, retained, inflated in _edge_messages(data)]


EDGE: Final = EdgeRouter()


def edge(data: bytes) -> None:
    router = EDGE.fresh()
    for topic, payload, inflated, outcome in route_all(router, data):
        if isinstance(outcome, Rejected):
            _require(isinstance(outcome.code, RejectCode) and outcome.detail.strip(), f"rejection without a sentence: {outcome!r}")
            if inflated and router.owner(topic) is not None:
                _require(outcome.code is RejectCode.TOO_LARGE, f"a {len(payload)}-byte payload was rejected as {outcome.code}")
            continue
        _require(isinstance(outcome, Mapped), f"route returned {type(outcome).__name__}, not Mapped or Rejected")
        _require(not inflated, f"a {len(payload)}-byte payload was mapped; the limit is {MAX_PAYLOAD_BYTES}")
        _require(outcome.messages or (outcome.note and outcome.note.strip()), "an empty Mapped without a note")
        for device in (*outcome.heard, *outcome.rearmed):
            DeviceId(device)
        for routed in outcome.messages:
            up_topic = uplink_topic_of(routed)
            try:
                uplink = decode_uplink(up_topic, encode(routed.message))
            except MessageRejected as exc:
                raise AssertionError(f"the centre rejects what the edge mapped from {topic!r}: {exc}") from exc
            _require(uplink.message == routed.message, f"{routed.message!r} came back as {uplink.message!r}")
            _require(uplink.topic.device == routed.device and uplink.topic.gateway == GATEWAY, f"{routed.device!r} came back as {uplink.topic!r}")


TARGETS: Final[dict[str, Callable[[bytes], None]]] = {"centre": centre, "edge": edge}


def describe(target: str, data: bytes) -> str:
    """What an input (a crash file) is: the topics and payloads the target built from it."""
    centre_message = _centre_message(data) if target == "centre" else None
    messages = [centre_message[:2]] if centre_message else [(t, p) for t, p, _, _ in _edge_messages(data)]
    lines = [f"input {data!r}"] + [f"  topic {t!r} payload {p[:300]!r}{'...' if len(p) > 300 else ''} ({len(p)} bytes)" for t, p in messages]
    return "\n".join(lines)


# -- the seed corpus -------------------------------------------------------------------------------------


def _samples() -> list[tuple[str, bytes, bool]]:
    rows = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["topic"], r["payload"].encode(), bool(r["retained"])) for r in rows]


def _native_messages() -> list[tuple[str, bytes, bool]]:
    event = DeviceEvent(msg_id="nat-1", source_ts_ms=NOW_MS - 5, received_ts_ms=NOW_MS - 5, event=EventKind.SMOKE_ALARM)
    tel = Telemetry(msg_id="nat-2", source_ts_ms=NOW_MS, received_ts_ms=NOW_MS, readings={"residual_current_ma": 12.5, "temperature_c": 41.0})
    av = DeviceAvailability(msg_id="nat-3", source_ts_ms=NOW_MS, received_ts_ms=NOW_MS, state=AvailabilityState.OFFLINE, reason="battery")
    return [
        (str(event_topic(GATEWAY, "nat-smoke-1")), encode(event), False),
        (str(telemetry_topic(GATEWAY, "nat-meter-1")), encode(tel), False),
        (str(availability_topic(GATEWAY, "nat-smoke-1")), encode(av), True),
        (str(event_topic(LAN_GATEWAY, "nat-other-7")), encode(event), False),
        (str(telemetry_topic(LAN_GATEWAY, "nat-other-7")), encode(tel), False),
    ]


def _edge_seeds() -> list[bytes]:
    lan = _samples() + _native_messages()
    return [edge_input(m) for m in lan] + [edge_input(a, b) for a, b in itertools.pairwise(lan)]


def _centre_seeds() -> list[bytes]:
    shape_of = {Telemetry: TopicKind.TELEMETRY, DeviceEvent: TopicKind.EVENT, DeviceAvailability: TopicKind.AVAILABILITY}
    seeds = []
    # What the edge makes of every real device sample, as the centre receives it: for a site device (the
    # known-device check passes), behind the wrong gateway, and under the edge's own ids (unknown device).
    router = new_router()
    ids = itertools.count(1)
    ctx = Context(NOW_MS, lambda: f"{GATEWAY}-{next(ids)}")
    for k, (topic, payload, retained) in enumerate(_samples()):
        outcome = router.route(topic, payload, retained, ctx)
        for routed in outcome.messages if isinstance(outcome, Mapped) else ():
            shape, body = shape_of[type(routed.message)], encode(routed.message)
            seeds += [centre_input(shape, body, device=k), centre_input(shape, body, device=k, other_gateway=True),
                      centre_input(shape, body, head=f"{GATEWAY}|{routed.device}")]
        seeds.append(centre_input(RAW, payload, head=topic))  # a LAN topic reaching the centre: bad_topic
    status = GatewayStatus(msg_id="st-1", source_ts_ms=NOW_MS, received_ts_ms=NOW_MS, state=GatewayState.ONLINE, software="shouwang-edge/0.1")
    beat = PatrolHeartbeat(msg_id="pt-1", source_ts_ms=NOW_MS, received_ts_ms=NOW_MS, seq=42, period_s=60.0, outbox_depth=3, patrol_id="p-9")
    command = GatewayCommand(cmd_id="c-1", issued_ts_ms=NOW_MS, args={"seconds": 30})
    for k in range(3):
        seeds += [centre_input(TopicKind.GATEWAY_STATUS, encode(status), device=k),
                  centre_input(TopicKind.PATROL, encode(beat), device=k),
                  centre_input(TopicKind.COMMAND, encode(command), device=k, head="sounder-on")]
    seeds += [centre_input(s, p[1], device=5) for s, p in zip((TopicKind.EVENT, TopicKind.TELEMETRY, TopicKind.AVAILABILITY),
                                                                _native_messages(), strict=False)]
    seeds += [centre_input(TopicKind.EVENT, _native_messages()[0][1], device=5, inflate=True),
              centre_input(RAW, encode(status), head=f"sw/v2/gw/{SITE_GATEWAYS[0]}/status")]
    return seeds


# Crashes these targets found, minimised, kept in the seeds so every run replays them first. Invalid UTF-8
# inside a JSON string (a key or a value): msgspec raises UnicodeDecodeError there, not DecodeError, and
# neither decode_uplink nor the edge's decode_json caught it (fixed in broker/schemas.py and
# edge/adapters/base.py; tests/fuzz/test_atheris.py asserts the rejections).
BAD_UTF8_IN_STRING: Final = (b'{"\xb2":1}', b'{"msg_id":"\xb2"}', b'{"smoke":true,"battery":100,"\xed\xa0\x80":1}')


# A Shelly `ts` (seconds) whose milliseconds do not fit int64 (1e17) or overflow a float (1e308): the adapter
# built a Telemetry / DeviceEvent the contract refuses and raised ValueError / OverflowError, a smoke alarm
# included (fixed in edge/adapters/shelly.py `_ts_ms`: such a time is no time, the gateway's clock is used).
SHELLY_BOGUS_TS: Final = (
    ("shellyplussmoke-80646fd1xxyy/events/rpc", b'{"method":"NotifyEvent","params":{"ts":1e17,"events":[{"component":"smoke:0","event":"alarm","ts":1e17}]}}'),
    ("shellyplus1pm-a8032ab13004/events/rpc", b'{"method":"NotifyStatus","params":{"ts":1e308,"switch:0":{"apower":5}}}'),
)

# An ESPHome switch whose object id has no letter or digit (all underscores, as a name in Chinese only
# becomes): the metric was "sensor__on_ratio", and the Emitter's unit assertion raised (fixed in
# edge/adapters/esphome.py `_snake`).
ESPHOME_BARE_IDS: Final = (("attic-powerwall/switch/___/state", b"ON"), ("attic-powerwall/switch/\x01\x00/state", b"OFF"))

# Readings a device's own data numbers or multiplies past what the contract carries: a channel beyond
# `@99` (Shelly switch:99, Tasmota POWER100, list values of 100 elements, 100 temperature probes), a
# channel in other digits ("²", which int() refuses), 5000 digits (beyond int()'s limit), or more than
# 64 readings at one instant. The adapters raised AssertionError / ValueError (fixed in base.py `Emitter`
# and shelly.py `_metered`: an unnameable channel is left out, a large set is split).
OVERSIZED_READINGS: Final = (
    ("ogemray25a-70af09f0ab7c/status/switch:99", b'{"id":99,"apower":5.0,"voltage":224.6}'),
    ("ogemray25a-70af09f0ab7c/status/switch:\u00b2", b'{"apower":5.0}'),
    ("ogemray25a-70af09f0ab7c/status/switch:" + "9" * 200, b'{"apower":5.0}'),  # 5000 digits: test_atheris.py (-max_len)
    ("tele/compressor/STATE", '{"POWER100":"ON","POWER\u00b2":"ON","POWER2":"OFF"}'.encode()),
    ("tele/compressor/SENSOR", b'{"ENERGY":{"Power":[' + b",".join([b"1"] * 100) + b"]}}"),
    ("tele/compressor/SENSOR", b"{" + b",".join(b'"DS18B20-%d":{"Temperature":20.5}' % i for i in range(101)) + b"}"),
)


def regressions(target: str) -> list[bytes]:
    if target == "centre":
        return [centre_input(shape, p, device=5) for shape in (TopicKind.TELEMETRY, TopicKind.EVENT) for p in BAD_UTF8_IN_STRING]
    native = str(event_topic(GATEWAY, "nat-smoke-1"))
    return ([edge_input((t, p, False)) for t in ("zigbee2mqtt/hallway_smoke", native, "tele/compressor/SENSOR") for p in BAD_UTF8_IN_STRING]
            + [edge_input((t, p, False)) for t, p in (*SHELLY_BOGUS_TS, *ESPHOME_BARE_IDS, *OVERSIZED_READINGS)])


def seed_corpus(target: str) -> list[bytes]:
    return (_centre_seeds() if target == "centre" else _edge_seeds()) + regressions(target)


def write_seeds(target: str, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = seed_corpus(target)
    for seed in seeds:
        (folder / hashlib.sha1(seed, usedforsecurity=False).hexdigest()).write_bytes(seed)
    return len(seeds)


# -- entry point -----------------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    if len(argv) == 4 and argv[1] == "describe" and argv[2] in TARGETS:
        print(describe(argv[2], Path(argv[3]).read_bytes()))
        return
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.atheris_targets {{{','.join(TARGETS)}}} [--seeds=DIR] [libFuzzer flags] [CORPUS_DIR|INPUT ...]\n"
                 f"       python -m tests.fuzz.atheris_targets describe {{{','.join(TARGETS)}}} INPUT")
    target, args = argv[1], argv[2:]
    logging.disable(logging.CRITICAL)  # every rejection and unlisted device is logged; millions of lines say nothing
    seeds_dir = next((Path(a.split("=", 1)[1]) for a in args if a.startswith("--seeds=")), None)
    args = [a for a in args if not a.startswith("--seeds=")]
    inputs = [a for a in args if not a.startswith("-")]
    if not inputs or any(Path(a).is_dir() for a in inputs):  # fuzzing, not replaying files: start from the seeds
        folder = seeds_dir or Path(tempfile.mkdtemp(prefix=f"shouwang-atheris-{target}-"))
        n = write_seeds(target, folder)
        if target == "edge":
            EDGE.check_reset(seed_corpus("edge"))
        sys.stderr.write(f"INFO: {n} seed inputs in {folder}\n")
        args.append(str(folder))
    atheris.Setup([argv[0], *args], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
