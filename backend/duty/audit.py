"""One audit view over everything people did outside an alarm's own timeline (issue 17).

How this works: four ledgers already exist or are kept here, each written where the act happens, and this module
only reads them and merges them newest first:

- `duty_audit` (backend.duty.store): roster overrides and their cancelling, shifts started and ended, handovers
  written and accepted, and admin actions (users created, API tokens issued and revoked: console_admin writes them);
- `login_audit` (backend.store.users): every password check and throttled refusal (logins are shown to admins only);
- `maintenance_audit` (backend.alarms.maintenance): maintenance windows opened, extended, ended, expired (a window
  on one device is what the console's "silence" makes: shown as a silence);
- `console_acts` (backend.api.console_records): device silences and sound mutes from the console.

A ledger whose table does not exist in this database is skipped (a server that runs no alarm service has no
maintenance tables). Each row comes out as the same dict: time (epoch ms and local text), area, actor, action
(code and Chinese), subject, community and a Chinese detail line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import sqlalchemy as sa

from backend.duty.store import DutyStore

__all__ = ["AREA_ZH", "AuditFilter", "audit_view"]

AREA_ZH: Final = {"roster": "排班", "shift": "值班", "handover": "交接班", "admin": "账号管理", "login": "登录", "maintenance": "维护窗口",
                  "silence": "静默"}
ACTION_ZH: Final = {
    "override_leave": "登记请假", "override_sick": "登记病假", "override_away": "登记不在岗", "override_swap": "登记换班",
    "override_assign": "临时指定", "override_cancel": "取消调整", "shift_start": "开始值班", "shift_end": "结束值班",
    "handover_write": "填写交班", "handover_accept": "接班", "user_add": "新建账号", "token_issue": "签发接口令牌", "token_revoke": "吊销接口令牌",
    "ok": "登录成功", "wrong": "密码错误", "throttled_account": "账号限流", "throttled_address": "地址限流", "busy": "系统繁忙",
    "create": "开启维护窗口", "extend": "延长维护窗口", "end": "提前结束维护窗口", "expire": "维护窗口到期", "end_notice": "到期提醒",
    "silence": "设备静默", "mute_sound": "警报声静音",
}

AuditFilter = Callable[[str | None], bool]  # community -> may the caller see it (None: not about a community)


def audit_view(store: DutyStore, *, local: Callable[[int], str | None], visible: AuditFilter, logins: list[Any] | None,
               limit: int = 200, area: str | None = None) -> list[dict[str, Any]]:
    """The merged audit, newest first, at most `limit` rows; `logins` (UserStore.login_audit rows) only for admins."""
    rows: list[dict[str, Any]] = []

    def add(at_ms: int, area_: str, actor: str, action: str, *, subject: str, community: str | None, detail: str) -> None:
        if (area is None or area == area_) and visible(community):
            rows.append({"at_ms": at_ms, "at_local": local(at_ms), "area": area_, "area_zh": AREA_ZH.get(area_, area_), "actor": actor,
                         "action": action, "action_zh": ACTION_ZH.get(action, action), "subject": subject, "community": community, "detail": detail})

    for r in store.audit_rows(limit):
        add(r.at_ms, r.area, r.actor, r.action, subject=r.subject, community=r.community, detail=r.detail)
    for a in logins or []:
        detail = f"来自 {a.address}" + (f"，拒绝 {a.refused} 次" if a.refused else "") + (f"，{a.retry_after_s} 秒后可重试" if a.retry_after_s else "")
        add(a.at_ms, "login", a.username, a.outcome, subject=a.username, community=None, detail=detail)
    engine = store.engine
    tables = set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        if {"maintenance_audit", "maintenance_windows"} <= tables:
            q = sa.text("SELECT a.at_ms, a.actor, a.action, a.window_id, a.note, a.ends_ms, w.building_id, w.community_id, w.reason, w.scope, "
                        "w.device_id FROM maintenance_audit a JOIN maintenance_windows w ON w.id = a.window_id ORDER BY a.at_ms DESC LIMIT :n")
            for m in conn.execute(q, {"n": limit}):
                device = m.scope == "device"  # a device's window is the console's "silence" (POST /api/devices/{id}/silence)
                where = f"设备 {m.device_id}" if device else f"楼栋 {m.building_id}"
                detail = f"{where}，至 {local(m.ends_ms)}，原因：{m.reason}" + (f"；{m.note}" if m.note and m.note != m.reason else "")
                action = "silence" if device and m.action == "create" else m.action
                add(m.at_ms, "silence" if device else "maintenance", m.actor, action, subject=m.window_id, community=m.community_id, detail=detail)
        if "console_acts" in tables:
            q = sa.text("SELECT at_ms, actor, act, alarm_id, target, note FROM console_acts WHERE act IN ('silence', 'mute_sound') "
                        "ORDER BY at_ms DESC LIMIT :n")
            for m in conn.execute(q, {"n": limit}):
                detail = (f"警报 {m.alarm_id}" if m.act == "silence" else "控制台") + (f"：{m.note}" if m.note else "")
                add(m.at_ms, "silence", m.actor, m.act, subject=m.target or m.alarm_id, community=None, detail=detail)
    rows.sort(key=lambda r: r["at_ms"], reverse=True)
    return rows[:limit]
