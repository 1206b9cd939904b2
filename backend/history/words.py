"""Words and times a person reads in the history, its exports and the monthly report: Chinese by default.

How this works: the store keeps language-free codes (alarm types, severities, states, moves); these tables turn them
into words at read time (the lifecycle words come from backend.i18n's catalogue, so the console and the exports say
the same). An alarm type this table does not know is named by its stored title's first part ("通信中断 · 3号楼" ->
"通信中断"), never shown as a bare code when a title exists. Times are formatted in the site's time zone, never the
machine's.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Final

from backend.i18n import Lang, render

__all__ = ["TYPE_WORDS", "local_time", "severity_word", "state_word", "type_word", "zone_words"]

TYPE_WORDS: Final[dict[str, tuple[str, str]]] = {
    "smoke": ("烟感报警", "smoke alarm"), "confirmed_fire": ("确认火警", "confirmed fire"), "sos": ("一键呼救", "SOS"),
    "comm_lost": ("通信中断", "communication lost"), "gateway_offline": ("网关离线", "gateway offline"),
    "power_outage": ("停电", "power outage"), "devices_unknown": ("设备状态未知", "devices unknown"),
    "devices_uncommissioned": ("设备未上线", "devices not commissioned"), "clock_skew": ("时钟偏差", "clock skew"),
    "welfare_check": ("独居老人关怀核实", "welfare check"), "patrol_missed": ("巡检心跳缺失", "patrol missed"),
    "notice_failed": ("通知未送达", "notice not delivered"),  # issue 18: a person no channel of a notice reached
    "low_battery": ("低电量", "low battery"), "tamper": ("防拆报警", "tamper"), "device_fault": ("设备故障", "device fault"),
    "residual_current": ("剩余电流超限", "residual current"), "residual_drift": ("剩余电流漂移", "residual current drift"),
    "cable_temperature": ("线缆温度超限", "cable temperature"), "temperature_rise": ("温升过快", "temperature rise"),
    "electrical": ("电气报警", "electrical alarm"), "overload": ("过载", "overload"), "over_voltage": ("过压", "over voltage"),
    "under_voltage": ("欠压", "under voltage"), "water_leak": ("漏水", "water leak"), "camera_offline": ("摄像机离线", "camera offline"),
}


def type_word(alarm_type: str, lang: Lang = "zh", title: str | None = None) -> str:
    pair = TYPE_WORDS.get(alarm_type)
    if pair is not None:
        return pair[0] if lang == "zh" else pair[1]
    if title and lang == "zh":
        return title.split(" · ", 1)[0]
    return alarm_type


def severity_word(severity: str, lang: Lang = "zh") -> str:
    code = f"severity.{severity}"
    text = render(code, None, lang)
    return severity if text == code else text


def state_word(state: str, lang: Lang = "zh") -> str:
    code = f"state.{state}"
    text = render(code, None, lang)
    return state if text == code else text


def local_time(ms: int | None, tz: tzinfo) -> str:
    """"2026-11-03 14:05:09" in the site's time zone; "" for no time."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


def zone_words(name: str, lang: Lang = "zh") -> str:
    """The site's time zone as a person says it: 北京时间 for Asia/Shanghai, else its IANA name."""
    if name in ("Asia/Shanghai", "Asia/Chongqing", "PRC"):
        return "北京时间" if lang == "zh" else "Beijing time"
    return name
