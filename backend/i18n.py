"""Words a person reads, in Chinese by default and English on request: one catalogue for the backend.

How this works: what the system stores stays structured and language-free where it can (a lifecycle move,
a state, a ladder note kind, a notify reason, a console act), and the English prose older code wrote into
notes is kept as stored. At read time `render(code, params, lang)` turns a stable code into a sentence, and
the `*_text` helpers turn stored entries into the requester's language by their structure: each known English
sentence shape is a regular expression with named parts, and its Chinese is a template over the same parts.
A sentence of no known shape is shown as stored (a person's own note is never translated). So the history
already in a database reads in either language, and new English prose added elsewhere shows up untranslated
rather than mistranslated.

The language comes from the request's `Accept-Language`: English when the first language named is English,
else Chinese (the console and the responder app send the person's choice; a browser without a choice gets
Chinese, the language of the duty rooms).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

__all__ = ["Lang", "done_text", "error_text", "lang_of", "note_text", "render", "timeline_text", "validation_text"]

Lang = Literal["zh", "en"]


def lang_of(accept_language: str | None) -> Lang:
    """`Accept-Language` -> "en" when, of the two languages the system speaks, the reader ranks English higher (by q,
    then by order); "zh" otherwise, and by default. The one parser of the header (API errors, timelines, one-tap
    answers, login refusals, maintenance windows)."""
    best: tuple[float, int, str] | None = None
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        if not (tag.startswith("en") or tag.startswith("zh")):
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if best is None or (q, -i) > (best[0], best[1]):
            best = (q, -i, tag)
    return "en" if best is not None and best[0] > 0 and best[2].startswith("en") else "zh"


# -- the catalogue: code -> (Chinese, English), str.format over named parameters --------------------------------
CATALOGUE: dict[str, tuple[str, str]] = {
    # lifecycle states (the console's st_* words, for server-made text)
    "state.raised": ("报警", "Raised"), "state.notified": ("已通知", "Notified"), "state.acknowledged": ("已确认", "Acknowledged"),
    "state.en_route": ("已出发", "En route"), "state.on_scene": ("已到场", "On scene"), "state.handled": ("处置完成", "Handled"),
    "state.closed": ("复核关闭", "Closed"), "state.archived": ("归档", "Archived"), "state.false_alarm": ("误报", "False alarm"),
    "state.suppressed": ("已抑制", "Suppressed"), "state.silenced": ("维护静默", "Silenced"),
    "state.awaiting_verification": ("待复核", "Awaiting verification"),
    # lifecycle moves
    "move.notify": ("通知", "notify"), "move.acknowledge": ("确认", "acknowledge"), "move.depart": ("出发", "depart"),
    "move.arrive": ("到场", "arrive"), "move.finish": ("处置完成", "finish"), "move.verify_close": ("复核关闭", "verify and close"),
    "move.archive": ("归档", "archive"), "move.mark_false": ("标记误报", "mark as false alarm"), "move.suppress": ("抑制", "suppress"),
    "move.unsuppress": ("解除抑制", "unsuppress"), "move.silence": ("维护静默", "silence"), "move.unsilence": ("解除静默", "unsilence"),
    "move.device_clear": ("设备复位", "device cleared"), "move.recur": ("再次报警", "alarmed again"), "move.resolve": ("自动恢复", "resolved"),
    # responses to the ladder
    "response.acknowledge": ("我已收到", "acknowledged"), "response.en_route": ("出发", "en route"), "response.on_scene": ("到场", "on scene"),
    "response.handled": ("处置完成", "handled"), "response.closed": ("复核关闭", "closed"), "response.confirm": ("核实属实", "confirmed real"),
    "response.false_alarm": ("误报", "false alarm"), "response.decline": ("无法前往", "declined"),
    # field states a deadline waits for
    "field.acknowledged": ("确认", "acknowledge"), "field.en_route": ("出发", "en route"), "field.on_scene": ("到场", "on scene"),
    "field.handled": ("处置", "handled"),
    # ladder note kinds and notify reasons
    "ladder.paged": ("呼叫", "paged"), "ladder.deputy": ("代班", "deputy"), "ladder.vacancy": ("空缺", "vacancy"),
    "ladder.not_applicable": ("不适用", "not applicable"), "ladder.repeated": ("重复呼叫", "repeated"),
    "ladder.deadline_missed": ("超时未达", "deadline missed"), "ladder.treated_real": ("按真实处理", "treated as real"),
    "ladder.verified": ("已核实", "verified"), "ladder.response": ("应答", "response"), "ladder.declined": ("无法前往", "declined"),
    "ladder.exhausted": ("升级到顶", "ladder exhausted"), "ladder.stopped": ("升级停止", "ladder stopped"),
    "ladder.reopened": ("重新开始", "reopened"), "ladder.severity_raised": ("等级提高", "severity raised"),
    "ladder.observed": ("已记录", "observed"), "ladder.notify": ("发出通知", "notice sent"),
    "ladder.callback_opened": ("回访开始", "call-back opened"), "ladder.callback_outcome": ("回访结果", "call-back outcome"),
    "ladder.callback_expired": ("回访超时，已升级", "call-back deadline passed: escalated"),
    "reason.callback_failed": ("回访无人接听或需要帮助，升级", "call-back failed or help needed: escalated"),
    "callback.answered_fine": ("接通·平安", "answered, fine"), "callback.needs_help": ("接通·需要帮助", "answered, needs help"),
    "callback.no_answer": ("无人接听", "no answer"), "callback.false_press": ("误按", "false press"),
    "reason.page": ("首次呼叫", "first page"), "reason.repeat": ("无人确认，重复呼叫", "repeat: nobody acknowledged"),
    "reason.escalate": ("下级超时，升级", "escalated: a deadline was missed"), "reason.vacancy": ("下级空缺", "the seat below is empty"),
    "reason.declined": ("上一位无法前往", "the previous person declined"), "reason.unverified": ("无人核实，按真实处理", "nobody verified: treated as real"),
    "reason.exhausted": ("升级到顶，值班台处置", "ladder exhausted: the console holds it"),
    "reason.reopened": ("警报再次生效", "the alarm is live again"), "reason.severity_raised": ("危险等级提高", "the hazard rose"),
    # console acts
    "act.verify": ("核实", "verified"), "act.dispatch": ("派遣", "dispatched"), "act.acknowledge_on_behalf": ("代为确认", "acknowledged on behalf"),
    "act.close_real": ("复核关闭", "closed as real"), "act.close_false_alarm": ("按误报关闭", "closed as false alarm"),
    "act.silence": ("维护静默", "silenced"), "act.mute_sound": ("警报声静音", "sound muted"),
    # severities and roles a note names
    "severity.info": ("提示", "info"), "severity.minor": ("一般", "minor"), "severity.major": ("重要", "major"),
    "severity.critical": ("紧急", "critical"), "severity.warning": ("预警", "warning"),
    "role.grid_worker": ("网格员", "grid worker"), "role.building_leader": ("楼栋长", "building leader"), "role.unit_leader": ("单元长", "unit leader"),
    "role.fire_station_head": ("微型消防站站长", "fire station head"), "role.fire_station_member": ("微型消防站队员", "fire station member"),
    "role.volunteer": ("志愿者", "volunteer"), "role.duty_officer": ("值班员", "duty officer"), "role.micro_fire_station": ("微型消防站", "micro fire station"),
    "role.admin": ("管理员", "administrator"), "role.family": ("家属", "family"), "role.neighbour": ("邻居", "neighbour"),
    "cap.view_alarms": ("查看警报", "view alarms"), "cap.acknowledge": ("确认", "acknowledge"),
    "cap.acknowledge_for_others": ("代他人确认", "acknowledge for others"), "cap.verify": ("核实", "verify"), "cap.dispatch": ("派遣", "dispatch"),
    "cap.close": ("关闭警报", "close"), "cap.silence": ("维护静默", "silence"), "cap.view_vulnerable": ("查看重点人员信息", "view vulnerable"),
    "cap.view_health": ("查看设备健康", "view health"), "cap.view_system": ("查看系统状态", "view system"), "cap.manage_users": ("管理账号", "manage users"),
    "cap.keep_watch": ("值班交接", "keep watch"),
    "via.holder": ("当班", "on shift"), "via.deputy": ("代班", "deputy"), "via.vacant": ("空缺", "vacant"),
    "rung.console": ("值班台", "duty console"),
    # the default ladder's rungs (alerting/policies/ladder.yaml), as a note names them; a deployment's own rung ids stay as written
    "rung.grid_worker": ("网格员", "grid worker"), "rung.grid_worker_workorder": ("网格员（整改工单）", "grid worker (work order)"),
    "rung.building_leader": ("楼栋长", "building leader"), "rung.fire_station": ("微型消防站", "micro fire station"),
    "rung.volunteers_extinguisher": ("志愿消防队", "volunteer fire team"), "rung.volunteers_first_aid": ("急救志愿者", "first-aid volunteers"),
    "rung.family": ("家属和邻居", "family and neighbours"), "rung.duty_officer": ("值班员", "duty officer"),
    "rung.duty_console": ("值班台", "duty console"), "actor.system": ("系统", "system"),
    # the outcome of a console action
    "done.acknowledged": ("已确认", "acknowledged"), "done.ladder": ("已告知升级流程", "ladder told"), "done.verified": ("已核实", "verified"),
    "done.recorded": ("已记录", "recorded"), "done.false_alarm": ("已标记误报", "marked false alarm"), "done.acknowledge": ("已确认", "acknowledged"),
    "done.finish": ("已处置完成", "handled"), "done.verify_close": ("已复核关闭", "closed"), "done.ladder_stopped": ("升级已停止", "ladder stopped"),
    "done.silenced_until": ("已静默至 {until}", "silenced until {until}"), "done.channel": ("{channel}：{status}", "{channel}: {status}"),
    "channel.console": ("值班台", "console"), "channel.app": ("应用", "app"), "channel.sms": ("短信", "SMS"), "channel.voice": ("语音", "voice"),
    "channel.wecom": ("企业微信", "WeCom"), "channel.dingtalk": ("钉钉", "DingTalk"), "channel.mqtt": ("消息", "MQTT"),
    "status.delivered": ("已送达", "delivered"), "status.failed": ("失败", "failed"), "status.withheld_drill": ("演练不外发", "withheld (drill)"),
    "status.rate_limited": ("限流合并", "rate limited"), "status.no_channel": ("未配置该渠道", "no such channel here"),
    # a notice's receipt on the alarm's timeline (backend.notify.timeline), per person and channel
    "receipt.sent": ("{channel} 已发送", "{channel}: sent"), "receipt.delivered": ("{channel} 已送达", "{channel}: delivered"),
    "receipt.read": ("{channel} 已读", "{channel}: read"), "receipt.answered": ("{channel} 已接听", "{channel}: answered"),
    "receipt.answered_key": ("{channel} 已接听·按1确认", "{channel}: answered, pressed 1 to accept"),
    "receipt.failed": ("{channel} 失败（{why}）", "{channel}: failed ({why})"),
    "receipt.withheld_drill": ("{channel} 未发送（演练不外发）", "{channel}: not sent (drill)"),
    "receipt.rate_limited": ("{channel} 未单独发送（限流合并）", "{channel}: not sent alone (rate limited)"),
    "receipt.no_channel": ("{channel} 未发送（未配置该渠道）", "{channel}: not sent (no such channel here)"),
    "receipt.unknown_reason": ("原因未知", "reason unknown"),
}


def render(code: str, params: dict[str, Any] | None = None, lang: Lang = "zh") -> str:
    """The sentence for `code` in `lang`; an unknown code shows as itself (visible, never a crash)."""
    pair = CATALOGUE.get(code)
    if pair is None:
        return code
    text = pair[0] if lang == "zh" else pair[1]
    return text.format(**params) if params else text


def _word(prefix: str, value: str, lang: Lang) -> str:
    """A stored enum value (state, move, role...) in `lang`; unknown values as stored."""
    code = f"{prefix}.{value}"
    return render(code, None, lang) if code in CATALOGUE else value


# -- stored English prose, by shape ------------------------------------------------------------------------------
# Each: (pattern over the stored text, Chinese template, English template). Groups named in the pattern are the
# parameters; a group whose name ends in `_note` is itself translated (a nested stored sentence); `_state`,
# `_move`, `_resp`, `_field`, `_sev`, `_role` name an enum value rendered through the catalogue.
_Shape = tuple[re.Pattern[str], str, str]


def _shapes(*rows: tuple[str, str, str]) -> tuple[_Shape, ...]:
    return tuple((re.compile(p + r"\Z", re.DOTALL), zh, en) for p, zh, en in rows)


NOTE_SHAPES: tuple[_Shape, ...] = _shapes(
    # alerting/book.py
    (r"the device alarms again", "设备再次报警", "the device alarms again"),
    (r"caused by (?P<cause>.+)", "由 {cause} 引起", "caused by {cause}"),
    (r"the device recovered", "设备已恢复", "the device recovered"),
    (r"the device cleared; verify on site", "设备已复位，请到现场核实", "the device cleared; verify on site"),
    (r"maintenance window: (?P<text>.*)", "维护窗口：{text}", "maintenance window: {text}"),
    (r"maintenance window ended", "维护窗口已结束", "maintenance window ended"),
    (r"the life-safety override of the maintenance window ended", "维护窗口的生命安全设备静默已结束",
     "the life-safety override of the maintenance window ended"),
    (r"(?P<inner_note>.+); the device cleared during it: verify on site", "{inner_note}；期间设备已复位，请到现场核实",
     "{inner_note}; the device cleared during it: verify on site"),
    (r"(?P<inner_note>.+); the device is still in alarm", "{inner_note}；设备仍在报警", "{inner_note}; the device is still in alarm"),
    (r"cause (?P<cause>.+) is over; this alarm remains", "起因 {cause} 已结束，本警报仍在", "cause {cause} is over; this alarm remains"),
    (r"stable again after flapping", "反复波动后已稳定", "stable again after flapping"),
    # backend/api/console_alarms.py
    (r"代(?P<name>.+?)\((?P<rid>[^()]+)\)确认 on behalf of (?P=rid)(?:: (?P<text>.*))?", "代{name}（{rid}）确认{text_sep}",
     "acknowledged on behalf of {name} ({rid}){text_sep}"),
    (r"核实 verified(?:: (?P<text>.*))?", "核实{text_sep}", "verified{text_sep}"),
    (r"via console by (?P<who>\S+)", "由 {who} 在值班台代为应答", "via console by {who}"),
    (r"维护 maintenance", "维护", "maintenance"),
    (r"值班台警报声静音 (?P<n>\d+) 分钟 / console sound muted for (?P=n) min", "值班台警报声静音 {n} 分钟", "console sound muted for {n} min"),
    (r"(?P<name>[^:()]+) \((?P<x_role>[a-z_]+)\)(?:: (?P<text>.*))?", "{name}（{x_role}）{text_sep}", "{name} ({x_role}){text_sep}"),
    # alerting/ladder/engine.py
    (r"nobody on record", "无登记人员", "nobody on record"),
    (r"(?P<label>.+): nobody on duty", "{label}：无人值班", "{label}: nobody on duty"),
    (r"repeat (?P<n>\d+)", "第 {n} 次重复呼叫", "repeat {n}"),
    (r"(?P<x_field>[a-z_]+) not reached in time", "未按时{x_field}", "{x_field} not reached in time"),
    (r"nobody verified in time: treated as real", "无人按时核实：按真实警情处理", "nobody verified in time: treated as real"),
    (r"every rung has been paged; the duty console holds the alarm", "各级均已呼叫，由值班台处置",
     "every rung has been paged; the duty console holds the alarm"),
    (r"live again while this round still waits for its first answer: no new round(?: \((?P<why>.*)\))?",
     "本轮尚无人应答时警报再次生效：不另开新一轮{why_paren}", "live again while this round still waits for its first answer: no new round{why_paren}"),
    (r"round (?P<n>\d+)(?:: (?P<why>.*))?", "第 {n} 轮{why_sep}", "round {n}{why_sep}"),
    (r"(?P<x_sev>[a-z]+) -> (?P<y_sev>[a-z]+)(?:; policy (?P<p1>\S+) -> (?P<p2>\S+))?", "等级 {x_sev} → {y_sev}{policy}",
     "{x_sev} -> {y_sev}{policy}"),
    (r"(?P<who>[^:\s]+): (?P<x_move>[a-z_]+) \(covers (?P<covered>.*)\)", "{who}：{x_move}（覆盖 {covered}）", "{who}: {x_move} (covers {covered})"),
    (r"(?P<who>[^:\s]+): (?P<x_move>depart|arrive|finish|verify_close)", "{who}：{x_move}", "{who}: {x_move}"),  # a responder's move, observed
    (r"(?P<who>[^:\s]+): (?P<x_resp>[a-z_]+)(?: \((?P<text>.*)\))?", "{who}：{x_resp}{text_paren}", "{who}: {x_resp}{text_paren}"),
    # backend/sites/roster.py
    (r"(?P<x_role>[a-z_]+) (?P<scope>\S+): (?P<away_note>.+); deputy (?P<names>.+) stands in", "{x_role} {scope}：{away_note}；由代班 {names} 顶岗",
     "{x_role} {scope}: {away_note}; deputy {names} stands in"),
    (r"(?P<x_role>[a-z_]+) (?P<scope>\S+): (?P<away_note>.+); no deputy available", "{x_role} {scope}：{away_note}；无代班人员",
     "{x_role} {scope}: {away_note}; no deputy available"),
    (r"holder unavailable", "在岗人员不在", "holder unavailable"),
    (r"(?P<who>\S+) is on scene", "{who} 已到场", "{who} is on scene"),
    (r"confirmed by (?P<who>\S+)", "由 {who} 核实属实", "confirmed by {who}"),
    # a bare state name: why a ladder stopped (the alarm's state, or the field state that ends it)
    (r"(?P<x_state>raised|notified|acknowledged|en_route|on_scene|handled|closed|archived|false_alarm|suppressed|silenced"
     r"|awaiting_verification)", "{x_state}", "{x_state}"),
)

_ENUM_PREFIX = {"state": "state", "move": "move", "resp": "response", "field": "field", "sev": "severity", "role": "role"}


def _params(m: re.Match[str], lang: Lang) -> dict[str, str]:
    out: dict[str, str] = {}
    zh = lang == "zh"
    for k, raw in m.groupdict().items():
        v = raw or ""
        kind = k.rsplit("_", 1)[-1] if "_" in k else ""
        if kind == "note":
            v = note_text(v, lang)
        elif kind in _ENUM_PREFIX and v:
            v = _word(_ENUM_PREFIX[kind], v, lang)
        elif k == "covered":
            v = ("、" if zh else ", ").join(_word("rung", x.strip(), lang) for x in v.split(","))
        out[k] = v
    text, why = note_text(out.get("text", ""), lang), note_text(out.get("why", ""), lang)
    out["text_sep"] = ("：" if zh else ": ") + text if text else ""
    out["text_paren"] = (f"（{text}）" if zh else f" ({text})") if text else ""
    out["why_sep"] = ("：" if zh else ": ") + why if why else ""
    out["why_paren"] = (f"（{why}）" if zh else f" ({why})") if why else ""
    p1, p2 = out.get("p1"), out.get("p2")
    out["policy"] = ((f"；预案 {p1} → {p2}" if zh else f"; policy {p1} -> {p2}") if p1 else "")
    return out


def note_text(note: str, lang: Lang) -> str:
    """A stored note in `lang`, by its shape; a note of no known shape (a person's own words) as stored."""
    if not note:
        return ""
    for pattern, zh, en in NOTE_SHAPES:
        m = pattern.match(note)
        if m:
            return (zh if lang == "zh" else en).format(**_params(m, lang))
    return note


def timeline_text(entry: dict[str, Any], lang: Lang) -> dict[str, str]:
    """`label` (what happened), `note_text` (the note), `actor_text` and `rung_text` of one timeline entry in `lang`."""
    actor, rung = str(entry.get("actor") or ""), str(entry.get("rung") or "")
    # the ladder's rows carry the process that wrote them (a worker name such as "backend"): the system, to a person
    system = actor == "system" or entry.get("source") == "ladder"
    names = {"actor_text": render("actor.system", None, lang) if system else actor,
             "rung_text": render("rung.console", None, lang) if rung == "console"
             else (str(entry.get("rung_label") or rung) if lang == "zh" else rung.replace("_", " "))}
    return {**names, **_what_and_note(entry, lang)}


def _what_and_note(entry: dict[str, Any], lang: Lang) -> dict[str, str]:
    source, what, note = entry.get("source"), str(entry.get("what") or ""), str(entry.get("note") or "")
    if source == "lifecycle":
        label = _word("state", str(entry.get("to_state") or ""), lang) if entry.get("to_state") else _word("move", what, lang)
    elif source == "console":
        label = _word("act", what, lang)
    elif source == "receipt":  # a notice's stage on one channel (backend.notify.timeline)
        detail = str(entry.get("detail") or "").removeprefix(f"{entry.get('channel')}: ")  # the channel is named in the label already
        code = "receipt.answered_key" if what == "answered" and detail == "pressed 1" else f"receipt.{what}"
        params = {"channel": _word("channel", str(entry.get("channel") or ""), lang), "why": detail or render("receipt.unknown_reason", None, lang)}
        return {"label": render(code, params, lang) if code in CATALOGUE else what, "note_text": ""}
    elif source == "ladder":
        label = render(f"ladder.{what}", None, lang) if f"ladder.{what}" in CATALOGUE else what
        if what == "notify":  # the detail is the notify reason
            return {"label": label, "note_text": _word("reason", note, lang)}
        if what == "paged":  # the detail is the contact ids
            return {"label": label, "note_text": note}
        if what == "declined":  # the detail is who declined
            return {"label": label, "note_text": note}
        if what == "callback_outcome":  # the SOS call-back (回访): "<who>: <outcome>[ (<note>)]"
            who, _, rest = note.partition(": ")
            word, _, extra = rest.partition(" ")
            return {"label": label, "note_text": f"{who}: {_word('callback', word, lang)}" + (f" {extra}" if extra else "")}
        if what in ("callback_opened", "callback_expired"):  # the detail is the ladder's own English line
            return {"label": label, "note_text": ""}
    else:
        label = what
    return {"label": label, "note_text": note_text(note, lang)}


def done_text(done: list[str], lang: Lang, tz: tzinfo = UTC) -> list[str]:
    """The outcome list of a console action (stable codes such as "acknowledged", "sms:sent") in `lang`, times in `tz`."""
    out = []
    for d in done:
        if f"done.{d}" in CATALOGUE:
            out.append(render(f"done.{d}", None, lang))
        elif m := re.fullmatch(r"silenced until (\d+)", d):
            until = datetime.fromtimestamp(int(m.group(1)) / 1000, tz).strftime("%Y-%m-%d %H:%M")
            out.append(render("done.silenced_until", {"until": until}, lang))
        elif m := re.fullmatch(r"([a-z]+):([a-z_]+)", d):
            out.append(render("done.channel", {"channel": _word("channel", m.group(1), lang), "status": _word("status", m.group(2), lang)}, lang))
        else:
            out.append(d)
    return out


# -- API error messages ------------------------------------------------------------------------------------------
ERROR_SHAPES: tuple[_Shape, ...] = _shapes(
    (r"wrong username or password", "用户名或密码错误", "wrong username or password"),
    (r"log in first: POST /api/login, then send 'Authorization: Bearer <token>'", "请先登录（POST /api/login），再带上 'Authorization: Bearer <token>'",
     "log in first: POST /api/login, then send 'Authorization: Bearer <token>'"),
    (r"this is a one-tap answer link, not a login; log in first: POST /api/login", "这是一键应答链接，不是登录凭证；请先登录（POST /api/login）",
     "this is a one-tap answer link, not a login; log in first: POST /api/login"),
    (r"this login no longer exists; ask an administrator", "该账号已不存在；请联系管理员", "this login no longer exists; ask an administrator"),
    (r"the role (?P<role>.+) of this login is unknown; ask an administrator", "该账号的角色 {role} 无法识别；请联系管理员",
     "the role {role} of this login is unknown; ask an administrator"),
    (r"this API token is unknown, revoked or expired; ask an administrator for a new one", "该 API 令牌不存在、已吊销或已过期；请向管理员申请新令牌",
     "this API token is unknown, revoked or expired; ask an administrator for a new one"),
    (r"your role \((?P<role>[a-z_]+)\) may not (?P<what>.+); roles that may: (?P<allowed>.*)",
     "您的角色（{role}）无权执行「{what_zh}」；可以执行的角色：{allowed}", "your role ({role}) may not {what}; roles that may: {allowed}"),
    (r"the token has expired; log in again", "登录已过期，请重新登录", "the token has expired; log in again"),
    (r"the token's signature does not match; log in again", "登录凭证签名不符，请重新登录", "the token's signature does not match; log in again"),
    (r"the token is malformed; log in again", "登录凭证无效，请重新登录", "the token is malformed; log in again"),
    (r"no alarm (?P<id>'[^']*') in your territory; check the id or ask the duty officer", "您的辖区内没有警报 {id}；请核对编号或询问值班员",
     "no alarm {id} in your territory; check the id or ask the duty officer"),
    (r"no (?P<x_thing>building|device|responder|user|API token|maintenance window) (?P<id>'[^']*') in your territory(?P<rest>.*)",
     "您的辖区内没有{x_thing} {id}{rest_zh}", "no {x_thing} {id} in your territory{rest}"),
    (r"no (?P<x_thing>building|device|responder) (?P<id>'[^']*') in the site directory(?P<rest>.*)", "社区档案中没有{x_thing} {id}{rest_zh}",
     "no {x_thing} {id} in the site directory{rest}"),
    (r"no escalation for alarm (?P<id>\S+)", "警报 {id} 没有升级流程", "no escalation for alarm {id}"),
    (r"no API token (?P<id>'[^']*'); list them with GET /api/admin/tokens", "没有 API 令牌 {id}；可用 GET /api/admin/tokens 查看",
     "no API token {id}; list them with GET /api/admin/tokens"),
    (r"no user (?P<id>'[^']*'); create the machine user first \(POST /api/admin/users\)", "没有用户 {id}；请先创建机器用户（POST /api/admin/users）",
     "no user {id}; create the machine user first (POST /api/admin/users)"),
    (r"this alarm cannot (?P<what>.+?) now: (?P<reason_note>.*)\. Reload it to see its current state",
     "此警报现在不能「{what_zh}」：{reason_note}。请刷新查看当前状态",
     "this alarm cannot {what} now: {reason_note}. Reload it to see its current state"),
    (r"an alarm in state '(?P<x_state>[a-z_]+)' cannot take the move '(?P<x_move>[a-z_]+)'", "处于「{x_state}」状态的警报不能执行「{x_move}」",
     "an alarm in state '{x_state}' cannot take the move '{x_move}'"),
    (r"this alarm is already closed; there is nothing to verify", "此警报已关闭，无需核实", "this alarm is already closed; there is nothing to verify"),
    (r"this alarm is already (?P<x_state>[a-z_]+); nothing to close", "此警报已是「{x_state}」，无需关闭", "this alarm is already {x_state}; nothing to close"),
    (r"this alarm is closed; open a new one or pick an open alarm to dispatch to", "此警报已关闭；请选择未关闭的警报派遣",
     "this alarm is closed; open a new one or pick an open alarm to dispatch to"),
    (r"this alarm is (?P<x_state>[a-z_]+); lift that first or close it as a false alarm", "此警报处于「{x_state}」；请先解除，或按误报关闭",
     "this alarm is {x_state}; lift that first or close it as a false alarm"),
    (r"acknowledging on behalf of someone is for the command room \((?P<allowed>.*)\); acknowledge for yourself, or ask the duty officer to record it",
     "代他人确认仅限指挥室（{allowed}）；请自己确认，或请值班员记录", "acknowledging on behalf of someone is for the command room ({allowed}); "
     "acknowledge for yourself, or ask the duty officer to record it"),
    (r"(?P<name>.+) \((?P<id>[^()]+)\) belongs to community (?P<c1>\S+), not this alarm's \((?P<c2>.*)\), and is outside your territory; "
     r"pick someone from the alarm's list or ask the street's duty room",
     "{name}（{id}）属于社区 {c1}，不是本警报所在社区（{c2}），且不在您的辖区；请从警报的人员列表中选择，或联系街道值班室",
     "{name} ({id}) belongs to community {c1}, not this alarm's ({c2}), and is outside your territory; pick someone from the alarm's list or "
     "ask the street's duty room"),
    (r"the site directory is not loaded on this server; ask the administrator", "本服务器未加载社区档案；请联系管理员",
     "the site directory is not loaded on this server; ask the administrator"),
    (r"the live feed is not running on this server; reload the page to use the board without it",
     "本服务器未运行实时推送；请刷新页面，不用推送也可使用警报面板",
     "the live feed is not running on this server; reload the page to use the board without it"),
    (r"no time-series store is configured", "未配置时序数据库", "no time-series store is configured"),
    (r"the time-series store is unavailable: (?P<why>.*); try again shortly", "时序数据库暂不可用：{why}；请稍后再试",
     "the time-series store is unavailable: {why}; try again shortly"),
    (r"'to' must be after 'from'", "'to' 必须晚于 'from'", "'to' must be after 'from'"),
    (r"that is more than (?P<n>\d+) buckets: ask for a coarser 'every' or a shorter range", "超过 {n} 个时间段：请加大 'every' 或缩短时间范围",
     "that is more than {n} buckets: ask for a coarser 'every' or a shorter range"),
    (r"the request body is not valid JSON: send Content-Type: application/json with a JSON object",
     "请求内容不是有效的 JSON：请以 Content-Type: application/json 发送一个 JSON 对象",
     "the request body is not valid JSON: send Content-Type: application/json with a JSON object"),
    (r"the server failed on this request and logged it; try again, and tell the administrator if it persists",
     "服务器处理此请求失败，已记录日志；请重试，如仍失败请告知管理员",
     "the server failed on this request and logged it; try again, and tell the administrator if it persists"),
    (r"Not Found", "没有这个地址", "Not Found"),
    (r"Method Not Allowed", "不支持此请求方法", "Method Not Allowed"),
    (r"too many (?P<rest>.*)", "请求过于频繁：{rest}", "too many {rest}"),
)

_THINGS = {"building": "楼栋", "device": "设备", "responder": "人员", "user": "用户", "API token": "API 令牌", "maintenance window": "维护窗口"}
_REST_ZH = {"; check the id": "；请核对编号", "; pick one from the list": "；请从列表中选择", "; pick one from the alarm's list": "；请从警报的人员列表中选择",
            "; pick one on the map": "；请在地图上选择", "; check the id on the device's label": "；请核对设备标签上的编号", "": ""}
_WHAT_ZH = {k.split(".", 1)[1]: zh for k, (zh, _) in CATALOGUE.items() if k.startswith(("cap.", "move."))}

# The validation messages of pydantic a person can cause from a form, in Chinese by their `type`.
VALIDATION_ZH = {
    "missing": "必填", "string_too_short": "太短", "string_too_long": "太长", "greater_than_equal": "太小", "less_than_equal": "太大",
    "greater_than": "太小", "less_than": "太大", "int_parsing": "须为整数", "float_parsing": "须为数字", "bool_parsing": "须为 true 或 false",
    "literal_error": "不是可选的值", "enum": "不是可选的值", "string_pattern_mismatch": "格式不对", "string_type": "须为文字",
    "int_type": "须为整数", "dict_type": "须为 JSON 对象", "model_attributes_type": "须为 JSON 对象", "json_invalid": "不是有效的 JSON",
    "extra_forbidden": "不认识这个字段", "value_error": "取值不对", "list_type": "须为列表", "too_long": "太多", "too_short": "太少",
}


def error_text(detail: str, lang: Lang) -> str:
    """An API error sentence in `lang`, by its shape (details already written in Chinese stay as written)."""
    for pattern, zh, _en in ERROR_SHAPES:
        m = pattern.match(detail)
        if m:
            if lang == "en":
                return detail
            p = _params(m, lang)
            if "x_thing" in m.groupdict():
                p["x_thing"] = _THINGS.get(m.group("x_thing"), m.group("x_thing"))
            if "rest" in m.groupdict():
                p["rest_zh"] = _REST_ZH.get(m.group("rest"), "")
            if "what" in m.groupdict():
                w = m.group("what")
                p["what_zh"] = _WHAT_ZH.get(w.replace(" ", "_"), w)
            if "reason_note" in m.groupdict():
                p["reason_note"] = error_text(m.group("reason_note"), lang)
            return zh.format(**p)
    return detail


def validation_text(errors: list[dict[str, Any]], lang: Lang) -> str:
    """The 422 sentence naming the fields to fix, in `lang`."""
    parts = []
    for e in errors[:5]:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path", "header")]
        field = ".".join(loc) or ("请求" if lang == "zh" else "request")
        msg = VALIDATION_ZH.get(str(e.get("type")), str(e.get("msg", "取值不对"))) if lang == "zh" else str(e.get("msg", "invalid"))
        parts.append(f"{field}：{msg}" if lang == "zh" else f"{field}: {msg}")
    if lang == "zh":
        return "请修正这些字段后重试 — " + "；".join(parts)
    return "fix these fields and try again — " + "; ".join(parts)
