"""Log lines: plain or JSON (ops.log_json, from the environment or the settings file), times in UTC with offset,
structured fields (alarm id, device, gateway, message id) from the log call or from the surrounding context."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from backend.ops.logs import JsonFormatter, UtcFormatter, log_fields
from backend.sites import SiteDirectory
from shouwang.cli import wants_json_logs
from tests.fuzz.harness import PipelineHarness, good_event


def _record(msg: str, **extra: str) -> logging.LogRecord:
    record = logging.LogRecord("backend.alarms", logging.WARNING, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    record.created = 1_765_000_000.25  # 2025-12-06T05:46:40.250 UTC
    return record


def test_json_lines_carry_utc_time_and_the_structured_fields() -> None:
    with log_fields(gateway="c01-gw-b01", device="c01-b01-smoke-0101"):
        line = JsonFormatter().format(_record("smoke alarm raised", alarm_id="A-1"))
    entry = json.loads(line)
    assert entry["time"] == "2025-12-06T05:46:40.250+00:00"
    assert (entry["level"], entry["logger"], entry["message"]) == ("WARNING", "backend.alarms", "smoke alarm raised")
    assert (entry["alarm_id"], entry["device"], entry["gateway"]) == ("A-1", "c01-b01-smoke-0101", "c01-gw-b01")
    assert "device" not in json.loads(JsonFormatter().format(_record("outside the context")))


def test_plain_lines_are_in_utc_with_offset() -> None:
    line = UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(_record("hello"))
    assert line == "2025-12-06T05:46:40.250+00:00 WARNING backend.alarms: hello"


def test_the_json_option_comes_from_the_environment_or_the_settings_file(tmp_path: Path) -> None:
    config = tmp_path / "shouwang.toml"
    config.write_text("[ops]\nlog_json = true\n", encoding="utf-8")
    assert wants_json_logs(config, {}) is True
    assert wants_json_logs(config, {"SHOUWANG_OPS__LOG_JSON": "false"}) is False
    assert wants_json_logs(None, {"SHOUWANG_OPS__LOG_JSON": "1"}) is True
    assert wants_json_logs(None, {}) is False


def test_one_smoke_alarm_is_traced_from_the_edges_msg_id_to_its_alarm_in_json_lines(tmp_path: Path, sample_site: SiteDirectory) -> None:
    """The real pipeline and alarm service: the JSON lines about a smoke alarm name its alarm id, device, gateway and
    the msg_id the edge gave the message (the trace of one message across processes: edge → journal → alarm)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Collect(level=logging.INFO)
    logger = logging.getLogger("backend")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    harness = PipelineHarness(tmp_path, sample_site)
    try:
        msg = good_event(sample_site, 7)
        harness.send([msg])
    finally:
        harness.close()
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    gateway, device = msg.topic.split("/")[3], msg.topic.split("/")[5]
    raised = [e for e in map(json.loads, lines) if e.get("msg_id") == msg.msg_id and "alarm_id" in e]
    assert raised, f"no line names the alarm raised by {msg.msg_id}: {lines[-5:]}"
    entry = raised[0]
    assert (entry["device"], entry["gateway"], entry["trace"]) == (device, gateway, f"{gateway}/{msg.msg_id}")
    assert "new -> raised by " in entry["message"], entry["message"]
