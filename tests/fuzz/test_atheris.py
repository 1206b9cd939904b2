"""Coverage-guided fuzzing (atheris) of the centre's contract intake and the edge's LAN adapters, bounded.

Each target of `tests/fuzz/atheris_targets.py` runs in a subprocess (libFuzzer ends the process on a
crash, so never inside pytest) for `FUZZ_SECONDS` from its seed corpus (the real device samples, real
contract messages and the crashes found so far). The run must end cleanly and must have executed at
least `MIN_RUNS` inputs, so a target that starts and does nothing fails. On failure the message shows the
crash input (as bytes and as the topics and payloads it stands for) and the Python traceback.

The crashes the targets found (invalid UTF-8 inside a JSON string; a Shelly `ts` beyond int64 ms; an
ESPHome switch whose object id has no letter or digit; readings numbered or multiplied past what the
contract carries) are also asserted directly below, on the real decoder and the real router, so they
stay fixed where atheris is not run.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from broker.errors import MessageRejected, RejectReason
from broker.kinds import EventKind
from broker.schemas import MAX_READINGS, DeviceEvent, Telemetry, decode_uplink, encode
from broker.topics import event_topic, telemetry_topic
from edge.adapters import Context, Mapped, RejectCode, Rejected, Router, build_adapters
from edge.config import parse_config
from tests.edge.sample_config import sample_config

REPO = Path(__file__).resolve().parents[2]
NOW_MS = 1_785_853_200_000
FUZZ_SECONDS = 15
# On this machine (2 cores, one busy with a soak benchmark) a target runs ~27,000 (centre) and ~10,000
# (edge) inputs a second: ~430,000 and ~160,000 in 15 s. The floors are far below that, so a loaded machine
# passes; a target that stops after its seeds (a few hundred inputs) does not.
MIN_RUNS = {"centre": 30_000, "edge": 10_000}
# A key and a value of invalid UTF-8 (contract messages); a device payload with an encoded surrogate in a key.
BAD_UTF8_IN_STRING = (b'{"\xb2":1}', b'{"msg_id":"\xb2"}')
BAD_UTF8_DEVICE_PAYLOADS = (*BAD_UTF8_IN_STRING, b'{"smoke":true,"battery":100,"\xed\xa0\x80":1}')


def _rss_limit_mb() -> int:
    """libFuzzer's memory limit for the child, 2 GiB of its own. On Linux a child starts with its parent's peak RSS as its
    own (ru_maxrss carries over fork and exec), and libFuzzer judges that figure: a test session that peaked above 2 GiB
    made every fuzz run "run out of memory" before its first input. So the limit is the parent's peak plus 2 GiB."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # kilobytes on Linux
    return max(2048, peak_mb + 2048)


def _atheris(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.fuzz.atheris_targets", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, errors="replace", timeout=FUZZ_SECONDS + 120, check=False)


def _crash_report(target: str, tmp_path: Path, run: subprocess.CompletedProcess[str]) -> str:
    parts = []
    for crash in sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*")) + sorted(tmp_path.glob("oom-*")):
        parts.append(f"{crash.name}:\n{_atheris('describe', target, crash).stdout}")
    # atheris prints the Python traceback to stdout, libFuzzer its report to stderr
    traceback = run.stdout.splitlines()[-40:]
    report = [line for line in run.stderr.splitlines() if not line.startswith(("INFO: Instrumenting", "#", "WARNING: Failed to find"))][-30:]
    return "\n".join([f"exit code {run.returncode}", *parts, "stdout (tail):", *traceback, "stderr (tail):", *report])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["centre", "edge"])
def test_the_fuzz_target_runs_its_budget_without_a_crash(target: str, tmp_path: Path) -> None:
    run = _atheris(target, f"--seeds={tmp_path / 'seeds'}", f"-artifact_prefix={tmp_path}/", f"-max_total_time={FUZZ_SECONDS}",
                   "-max_len=4096", "-timeout=10", "-print_final_stats=1", f"-rss_limit_mb={_rss_limit_mb()}")
    assert run.returncode == 0, _crash_report(target, tmp_path, run)
    seeds = re.search(r"INFO: (\d+) seed inputs", run.stderr)
    coverage = re.search(r"INITED cov: (\d+)", run.stderr)
    done = re.search(r"^Done (\d+) runs in (\d+) second", run.stderr, re.MULTILINE)
    assert seeds, f"the seed corpus was not written:\n{run.stderr[-3000:]}"
    assert int(seeds[1]) >= 100
    assert coverage, f"libFuzzer did not start:\n{run.stderr[-3000:]}"
    assert int(coverage[1]) >= 50, "almost no coverage from the instrumented modules: atheris is not seeing our code"
    assert done, f"libFuzzer did not report its runs:\n{run.stderr[-3000:]}"
    assert int(done[1]) >= MIN_RUNS[target], f"only {done[1]} inputs in {done[2]} s (at least {MIN_RUNS[target]} expected)"


# -- the crash found: invalid UTF-8 inside a JSON string ------------------------------------------------------


@pytest.mark.parametrize("payload", BAD_UTF8_IN_STRING)
@pytest.mark.parametrize("topic", [telemetry_topic("c01-gw-b01", "c01-b01-1-101-meter"), event_topic("c01-gw-b01", "c01-b01-1-101-smoke")])
def test_invalid_utf8_inside_a_json_string_is_rejected_as_malformed_json(topic: str, payload: bytes) -> None:
    with pytest.raises(MessageRejected) as caught:
        decode_uplink(topic, payload)
    assert caught.value.reason is RejectReason.MALFORMED_JSON
    assert "UTF-8" in caught.value.detail


@pytest.mark.parametrize(("lan_topic", "payload"), [
    *((t, p) for t in ("zigbee2mqtt/hallway_smoke", "tele/compressor/SENSOR", "shellyplussmoke-80646fd1xxyy/status/smoke:0", "frigate/stats")
      for p in BAD_UTF8_DEVICE_PAYLOADS),
    *((str(event_topic("gw-samples", "z2m-hallway-smoke")), p) for p in BAD_UTF8_IN_STRING),  # native: the contract's own decoder
])
def test_the_edge_rejects_invalid_utf8_inside_a_json_string(lan_topic: str, payload: bytes) -> None:
    outcome = _router().route(lan_topic, payload, False, Context(NOW_MS, lambda: "gw-samples-1"))
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code is RejectCode.MALFORMED
    assert "UTF-8" in outcome.detail


def _router() -> Router:
    config = sample_config("gw-samples")
    config["adapters"].append({"dialect": "native", "allow_unlisted": True})
    return Router(build_adapters(parse_config(config)))


# -- the crash found: a Shelly device clock beyond what int64 milliseconds hold -------------------------------


@pytest.mark.parametrize("ts", ["1e17", "1e308", "9223372036854775.808"])
def test_a_shelly_smoke_alarm_with_an_impossible_device_time_is_sent_with_the_gateway_time(ts: str) -> None:
    payload = f'{{"method":"NotifyEvent","params":{{"ts":{ts},"events":[{{"component":"smoke:0","event":"alarm","ts":{ts}}}]}}}}'
    outcome = _router().route("shellyplussmoke-80646fd1xxyy/events/rpc", payload.encode(), False, Context(NOW_MS, lambda: "gw-samples-1"))
    assert isinstance(outcome, Mapped), outcome
    [routed] = outcome.messages
    assert isinstance(routed.message, DeviceEvent)
    assert routed.message.event is EventKind.SMOKE_ALARM
    assert routed.message.source_ts_ms == NOW_MS


def test_a_shelly_reading_with_an_impossible_device_time_is_kept_with_the_gateway_time() -> None:
    payload = b'{"method":"NotifyStatus","params":{"ts":1e308,"switch:0":{"apower":5}}}'
    outcome = _router().route("shellyplus1pm-a8032ab13004/events/rpc", payload, False, Context(NOW_MS, lambda: "gw-samples-1"))
    assert isinstance(outcome, Mapped), outcome
    [routed] = outcome.messages
    assert isinstance(routed.message, Telemetry)
    assert routed.message.readings == {"power_w": 5.0}
    assert routed.message.source_ts_ms == NOW_MS


def test_a_shelly_device_time_that_fits_is_kept() -> None:
    payload = b'{"method":"NotifyEvent","params":{"ts":1785853100.25,"events":[{"component":"smoke:0","event":"alarm","ts":1785853100.25}]}}'
    outcome = _router().route("shellyplussmoke-80646fd1xxyy/events/rpc", payload, False, Context(NOW_MS, lambda: "gw-samples-1"))
    assert isinstance(outcome, Mapped), outcome
    assert [r.message.source_ts_ms for r in outcome.messages] == [1_785_853_100_250]


# -- the crash found: an ESPHome switch whose object id has no letter or digit --------------------------------


@pytest.mark.parametrize("object_id", ["___", "-", "\x01\x00"])
def test_an_esphome_switch_without_letters_in_its_id_still_reports_its_relay_state(object_id: str) -> None:
    outcome = _router().route(f"attic-powerwall/switch/{object_id}/state", b"ON", False, Context(NOW_MS, lambda: "gw-samples-1"))
    assert isinstance(outcome, Mapped), outcome
    [routed] = outcome.messages
    assert isinstance(routed.message, Telemetry)
    assert routed.message.readings == {"sensor_on_ratio": 1.0}


# -- the crash found: readings a device numbers or multiplies past what the contract carries -----------------


def _readings(lan_topic: str, payload: bytes) -> list[dict[str, float]]:
    outcome = _router().route(lan_topic, payload, False, Context(NOW_MS, lambda: "gw-samples-1"))
    assert isinstance(outcome, Mapped), outcome
    out = []
    for routed in outcome.messages:
        assert isinstance(routed.message, Telemetry)
        decode_uplink(telemetry_topic("gw-samples", routed.device), encode(routed.message))  # the centre takes each one
        out.append(dict(routed.message.readings))
    return out


@pytest.mark.parametrize("index", ["99", "\u00b2", "9" * 5000])
def test_a_shelly_channel_no_metric_can_name_is_left_out(index: str) -> None:
    assert _readings(f"ogemray25a-70af09f0ab7c/status/switch:{index}", b'{"apower":5.0}') == []


def test_a_shelly_channel_that_fits_is_named() -> None:
    assert _readings("shellyplus1pm-a8032ab13004/status/switch:98", b'{"apower":5.0}') == [{"power_w@99": 5.0}]


def test_tasmota_relays_beyond_channel_99_or_in_other_digits_are_left_out() -> None:
    assert _readings("tele/compressor/STATE", '{"POWER100":"ON","POWER\u00b2":"ON","POWER2":"OFF"}'.encode()) == [{"relay_on_ratio@2": 0.0}]


def test_more_readings_than_one_message_carries_are_split_not_lost() -> None:
    payload = b'{"ENERGY":{"Power":[' + b",".join(b"%d" % i for i in range(1, 101)) + b"]}}"
    parts = _readings("tele/compressor/SENSOR", payload)
    assert [len(p) for p in parts] == [MAX_READINGS, 99 - MAX_READINGS]
    merged = {k: v for p in parts for k, v in p.items()}
    assert merged == {f"power_w@{i}": float(i) for i in range(1, 100)}  # @100 cannot be named


def test_a_hundred_temperature_probes_are_named_up_to_channel_99() -> None:
    payload = b"{" + b",".join(b'"DS18B20-%d":{"Temperature":%d}' % (i, i) for i in range(1, 102)) + b"}"
    merged = {k: v for p in _readings("tele/compressor/SENSOR", payload) for k, v in p.items()}
    assert merged == {"temperature_c": 1.0, **{f"temperature_c@{i}": float(i) for i in range(2, 100)}}
