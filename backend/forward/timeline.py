"""The 119 hand-off on an alarm's timeline (GET /api/alarms/{id}): each attempt and the outcome, in the reader's language.

`forward_timeline` reads the forward store directly (any backend of a cluster serves the console), and returns nothing
where the store's tables do not exist (the hand-off was never enabled on this database). Each entry has `source`
"forward", `what` already in the reader's language (the console shows it as the entry's label) and `kind` (attempt,
receipted, failed, not_forwarded) for programs; times are ms since the epoch (the console shows them in the site's zone).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from backend.forward.store import Attempt, ForwardRecord, Status, attempts, forwards

__all__ = ["forward_timeline", "why"]

_CHANNEL: Final = {"zh": {"primary": "主通道", "fallback": "备用通道", "drill": "演练通道"},
                   "en": {"primary": "primary", "fallback": "fallback", "drill": "drill endpoint"}}


_OUTCOME: Final = {"zh": {"timeout": "超时无应答", "unreachable": "无法连接", "http_error": "返回 HTTP {code}", "no_receipt": "应答无回执号"},
                   "en": {"timeout": "no answer in time", "unreachable": "unreachable", "http_error": "HTTP {code}",
                          "no_receipt": "answer without a receipt number"}}


def why(tried: list[Attempt], lang: str = "zh") -> str:
    """Why a round failed, in words: each channel's last outcome ("主通道超时无应答；备用通道返回 HTTP 500")."""
    lang = "zh" if lang != "en" else "en"
    last: dict[str, Attempt] = {}
    for a in tried:
        last[a.channel] = a
    parts = [f"{_CHANNEL[lang].get(c, c)}{'' if lang == 'zh' else ': '}{_OUTCOME[lang].get(a.outcome, a.outcome).format(code=a.status_code)}"
             for c, a in last.items()]
    return ("；" if lang == "zh" else "; ").join(parts) or ("未配置接收通道" if lang == "zh" else "no channel configured")


def _read(engine: sa.Engine, alarm_id: str) -> tuple[ForwardRecord | None, list[Attempt]]:
    rec_cols = [forwards.c[f] for f in ForwardRecord.__slots__]
    att_cols = [attempts.c[f] for f in Attempt.__slots__]
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(*rec_cols).where(forwards.c.alarm_id == alarm_id)).first()
            if row is None:
                return None, []
            tried = [Attempt(*r) for r in conn.execute(sa.select(*att_cols).where(attempts.c.alarm_id == alarm_id).order_by(attempts.c.id))]
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no such table: the hand-off never ran on this database
        return None, []
    return ForwardRecord(*row), tried


def forward_timeline(engine: sa.Engine, alarm_id: str, lang: str = "zh", tz: tzinfo | None = None) -> list[dict[str, Any]]:
    """The alarm's forward as timeline entries (none without one); retry times in `tz` (the site's zone; Beijing time unset)."""
    rec, tried = _read(engine, alarm_id)
    if rec is None:
        return []
    zh = lang != "en"
    ch = _CHANNEL["zh" if zh else "en"]
    zone = tz or ZoneInfo("Asia/Shanghai")
    out: list[dict[str, Any]] = []
    for a in tried:
        name = ch.get(a.channel, a.channel)
        if a.outcome == "receipt":
            what = f"转警119（{name}）已回执" if zh else f"Forward to 119 ({name}): receipt"
            note = f"回执号 {a.receipt}，用时 {a.took_ms} ms" if zh else f"receipt {a.receipt}, {a.took_ms} ms"
        else:
            what = f"转警119（{name}）{'超时' if a.outcome == 'timeout' else '失败'}" if zh else f"Forward to 119 ({name}): failed"
            note = why([a], lang)
        out.append({"at_ms": a.started_ms, "source": "forward", "actor": "system", "kind": "attempt", "what": what, "note": note,
                    "channel": a.channel, "receipt": a.receipt, "forward_id": rec.forward_id})
    base = {"source": "forward", "actor": "system", "forward_id": rec.forward_id, "receipt": rec.receipt, "channel": rec.channel}
    if rec.status == Status.RECEIPTED and rec.receipted_ms is not None:
        via = ch.get(rec.channel or "", rec.channel)
        out.append({**base, "at_ms": rec.receipted_ms, "kind": "receipted", "what": "已转警119" if zh else "Forwarded to 119",
                    "note": f"回执号 {rec.receipt}（{via}）" if zh else f"receipt {rec.receipt} ({via})"})
    elif rec.status == Status.FAILED:
        retry = datetime.fromtimestamp(rec.next_try_ms / 1000, zone).strftime("%H:%M:%S") if rec.next_try_ms else ""
        last_round = [a for a in tried if a.round == rec.rounds] or tried
        out.append({**base, "at_ms": rec.updated_ms, "kind": "failed", "what": "转警119失败" if zh else "Forward to 119 failed",
                    "note": f"{why(last_round, lang)}，{retry} 重试" if zh else f"{why(last_round, lang)}; retrying at {retry}"})
    elif rec.status == Status.NOT_FORWARDED:
        out.append({**base, "at_ms": rec.created_ms, "kind": "not_forwarded", "what": "未转警119：演练" if zh else "Not forwarded to 119: drill",
                    "note": rec.reason})
    elif rec.status in (Status.PENDING, Status.SENDING):
        out.append({**base, "at_ms": rec.updated_ms, "kind": rec.status, "what": "正在转警119" if zh else "Forwarding to 119", "note": ""})
    return out
