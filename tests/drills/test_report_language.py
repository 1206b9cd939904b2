"""The drill report a person reads: charts in Chinese (a CJK font is installed here: fonts-wqy-microhei) and t = 0 as
the site's wall-clock time, whatever the machine's zone (simulators/drill/render.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from simulators.drill.render import chart_language, write_report
from simulators.drill.report import TARGETS, local_time

T0_MS = 1_796_536_800_000  # 2026-12-06 06:00:00 UTC = 14:00:00 Beijing time


def _report(n_alarms: int) -> dict[str, Any]:
    alarm = {"id": "A1", "type": "smoke_alarm", "device_id": "c01-b01-smoke-1", "gateway_id": "gw-c01", "drill": True, "place": "1号楼",
             "step": 0, "hazard_ms": T0_MS + 2000, "first_seen_ms": T0_MS + 2100, "raised_at_ms": T0_MS + 2300, "state": "closed",
             "people": [{"move": "acknowledge", "actor": "c01-g1-w1", "at_ms": T0_MS + 30_000, "after_alarm_s": 27.7},
                        {"move": "arrive", "actor": "c01-mfs-head", "at_ms": T0_MS + 150_000, "after_alarm_s": 147.7}],
             "figures": {"hazard_to_alarm_s": 0.3, "report_to_alarm_s": 0.2, "report_to_alarm_wall_s": 0.02, "alarm_to_ack_s": 27.7,
                         "alarm_to_on_scene_s": 147.7},
             "checks": [{"target": "display", "limit_s": 10.0, "base": "drill", "value_s": 0.2, "ok": True},
                        {"target": "fire_on_scene", "limit_s": 180.0, "base": "drill", "value_s": None, "ok": False}]}
    tz = "Asia/Shanghai"
    return {
        "scenario": {"name": "kitchen_fire", "title_zh": "厨房火灾", "title_en": "Kitchen fire", "summary_zh": "演练", "summary_en": "drill",
                     "file": "x.yaml", "run_for_s": 300.0, "seed": 1},
        "time": {"speed": 10.0, "t0_ms": T0_MS, "end_ms": T0_MS + 300_000, "drill_seconds": 300.0, "wall_seconds": 30.0, "time_zone": tz,
                 "t0_local": local_time(T0_MS, tz), "statement_zh": "压缩", "statement_en": "compressed"},
        "target_system": "embedded", "simulated_responders": True, "messages_published": 3,
        "targets": {k: {"limit_s": t.limit_s, "base": t.base, "zh": t.zh, "en": t.en, "source": t.source} for k, t in TARGETS.items()},
        "hazards": [{"step": 0, "at_s": 2.0, "action": "smoke", "place": "1号楼", "devices": ["d"], "expect": ["smoke_alarm"],
                     "expected_alarm_raised": True, "alarms": ["A1"]}],
        "alarms": [{**alarm, "id": f"A{i}"} for i in range(n_alarms)],
        "problems": [],
        "summary": {**{k: {"met": 1, "checked": 1, "median_s": 1.0, "max_s": 1.0} for k in TARGETS}, "all_targets_met": False},
    }


@pytest.fixture
def utc_machine() -> Any:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize("n_alarms", [2, 45], ids=["per-alarm", "storm"])
@pytest.mark.usefixtures("utc_machine")
def test_charts_are_chinese_and_t0_is_beijing_time(tmp_path: Path, n_alarms: int) -> None:
    assert chart_language() == "zh", "fonts-wqy-microhei is installed here: the charts must be Chinese"
    # a Chinese label drawn in a font without CJK glyphs warns "Glyph ... missing" (an error here): the charts use the CJK font
    paths = write_report(_report(n_alarms), tmp_path)
    assert paths["timeline"].stat().st_size > 10_000
    assert paths["latency"].stat().st_size > 10_000
    page = paths["html"].read_text(encoding="utf-8")
    assert "t = 0：2026-12-06 14:00:00+08:00（北京时间 Asia/Shanghai" in page
    assert str(T0_MS) not in page, "t = 0 is a Beijing time, not epoch milliseconds"
