"""Message texts, in Chinese: duty officers and responders read Chinese.

Short enough for one SMS segment where possible (70 Chinese characters), the most important words first.
A drill says so in the first characters (【演练】), so nobody mistakes it for the real thing.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LINK_LEAD", "REASON_TEXT", "SEVERITY_TEXT", "notice_text", "storm_text", "without_link"]

LINK_LEAD: Final = "回复链接："  # the one-tap link follows; it belongs to one person (issue 22): see without_link
SEVERITY_TEXT: Final = {"critical": "紧急", "major": "重要", "minor": "一般", "info": "提示"}

REASON_TEXT: Final = {
    "page": "请立即处置",
    "repeat": "第{attempt}次提醒，尚未确认，请立即处置",
    "escalate": "上一级未在规定时间内响应，现升级由您处置",
    "vacancy": "原责任人不在岗，请您代为处置",
    "declined": "前一位志愿者无法前往，请您就近处置",
    "unverified": "未在规定时间内核实，按真实警情处置",
    "exhausted": "各级均未响应，请值班员立即电话调度",
    "reopened": "报警再次生效（维护结束或故障仍在），请立即处置",
    "severity_raised": "险情升级，请立即处置",
    "callback_failed": "回访无人接听或老人需要帮助，请立即处置",
}


def notice_text(*, title: str, place: str, reason: str, severity: str, rung_label: str = "", attempt: int = 0,
                drill: bool = False, link: str | None = None) -> str:
    head = ("【演练】" if drill else "") + "【守望】"
    action = REASON_TEXT.get(reason, REASON_TEXT["page"]).format(attempt=attempt)
    who = f"{rung_label}：" if rung_label else ""
    text = f"{head}{SEVERITY_TEXT.get(severity, '')}{title}，{place}。{who}{action}。"
    if link:
        text += f"{LINK_LEAD}{link}"
    return text


def without_link(text: str) -> str:
    """The notice text without its one-tap link: for channels others can read (MQTT topics, the console feed)."""
    return text.split(LINK_LEAD, 1)[0]


def storm_text(*, count: int, window_s: float, drill: bool = False) -> str:
    minutes = max(1, round(window_s / 60))
    return f"{'【演练】' if drill else ''}【守望】{minutes}分钟内另有{count}条报警通知未逐条发送，请打开守望值班台查看全部。"
