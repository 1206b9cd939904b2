"""Alarm routes of the console: the board, an alarm's detail, and the duty officer's actions.

How this works: every route resolves the caller (backend.api.auth), loads the alarm and answers 404 unless it
lies inside the caller's territory, then asks the alarm service for the move (the one writer of alarm state,
with the logged-in user as actor). The ladder learns of a committed move from the alarm service's result (the
bridge, backend.escalation.bridge), so an acknowledgement is one move, one audit entry, and nothing is sent
back to be refused. The escalation service is called only for what is no lifecycle move: 核实 (`verify`),
and an answer recorded on a responder's behalf (`observe` as that responder: it covers their rung). Acts the
lifecycle has no state for (verify, dispatch, on-behalf answers) are also written to
backend.api.console_records so the timeline shows who did what for whom. Routes stay thin; the reading lives
in backend.api.console_views.

Closing as real walks the legal path (acknowledge → handled → verified and closed) with the same actor and
note, so the audit log still replays through the transition table; a refused move answers 409 with the
lifecycle's reason and what to do instead.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

import backend.escalation.service as escalation_service
from alerting.ladder import Contact, timers
from alerting.lifecycle import TRANSITIONS, AlarmState, Move
from backend.alarms.collab import collab_timeline, current_assignees
from backend.alarms.service import MoveRefused, NoSuchAlarm
from backend.api.auth import ROLE_CAPABILITIES, Auth, Capability, Principal
from backend.api.console_records import ConsoleAct, ConsoleRecords
from backend.api.console_views import alarm_view, board_page, place_view, rung_status
from backend.api.deps import AlarmMoves, ApiDeps, NotWired
from backend.api.errors import ERRORS, request_lang
from backend.forward.timeline import forward_timeline
from backend.i18n import Lang, done_text, render, timeline_text
from backend.notify.channel import Message
from backend.notify.templates import notice_text
from backend.notify.timeline import receipt_timeline
from backend.store.alarms import AlarmRecord

__all__ = ["alarms_router"]


def _with_ladder_json(rows: list[dict[str, Any]], state: Any, policies: Any, utc_offset_min: int) -> list[dict[str, Any]]:
    """The console's rung rows, with the escalation service's own per-rung answer where it offers one
    (`rungs_json`: its state, whether the duty officer's acknowledgement covers the rung, one Chinese line)."""
    official = getattr(escalation_service, "rungs_json", None)
    if official is None:
        return rows
    by_rung = {r["rung"]: r for r in official(state, policies, utc_offset_min)}
    out = []
    for mine in rows:
        o = by_rung.get(mine["rung"])
        out.append(mine if o is None else {
            **mine, "state": o["state"], "command_room": o["command_room"], "text": o["text"], "climbs_at_ms": o["climbs_at_ms"],
            "climbs_to": o["climbs_to"], "next_repeat_ms": o["repeats_at_ms"], "waits_for_answer": o["state"] == "waiting" and not o["command_room"],
        })
    return out


log = logging.getLogger(__name__)

AlarmId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
DeviceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
Note = Annotated[str, Field(max_length=500)]
BEIJING_UTC_OFFSET_MIN = 480  # China has one time zone and no daylight saving
ResponderId = Annotated[str, Field(min_length=1, max_length=96, pattern=r"^[A-Za-z0-9._:\-]+$")]


class AlarmList(BaseModel):
    alarms: list[dict[str, Any]] = Field(description="every open real life-safety alarm (never cut), then one page of the rest, in board order")
    server_now_ms: int
    drill_open: int = Field(description="open drill alarms in your territory (the console shows a drill banner while > 0)")
    life_safety_open: int = Field(default=0, description="open real life-safety alarms: the first rows of `alarms`, all of them")
    rest_total: int = Field(default=0, description="every other alarm matching the filters; `alarms` holds rows offset.. offset+limit of them")
    open_total: int = Field(default=0, description="open alarms matching the filters, life safety included")
    offset: int = 0
    limit: int = 200
    groups: list[dict[str, Any]] = Field(default_factory=list, description="open alarms besides life safety, by type and building "
                                                                            "(or community), largest first: one outage, one group")
    utc_offset_min: int = Field(default=480, description="the site's time zone, minutes east of UTC: times a person reads are shown in it")
    feed_id: str | None = Field(default=None, description="the live feed's newest event id, taken before this read: open /api/feed with it as "
                                                          "Last-Event-ID and every change committed after the read arrives (null: no feed here)")


class MuteBody(BaseModel):
    minutes: int = Field(default=5, ge=1, le=30, description="how long this console's alarm sound stays off; a new life-safety alarm ends it")


class MuteResult(BaseModel):
    muted_until_ms: int
    server_now_ms: int
    minutes: int
    by: str
    alarms: list[str] = Field(description="the unacknowledged life-safety alarms that were sounding (each has the mute in its timeline)")


class AlarmDetail(BaseModel):
    alarm: dict[str, Any]
    place: dict[str, Any]
    timeline: list[dict[str, Any]]
    ladder: dict[str, Any] | None
    responders: list[dict[str, Any]]
    server_now_ms: int
    utc_offset_min: int = 480


class AcknowledgeBody(BaseModel):
    on_behalf_of: ResponderId | None = Field(default=None, description="responder id when acknowledging for someone who answered by phone")
    note: Note = ""


class VerifyBody(BaseModel):
    note: Note = ""


class DispatchBody(BaseModel):
    responder_id: ResponderId
    note: Note = ""


class CloseBody(BaseModel):
    outcome: Literal["real", "false_alarm"]
    note: Annotated[str, Field(min_length=2, max_length=500, description="what happened: required to close")]


class SilenceBody(BaseModel):
    minutes: int = Field(ge=5, le=30 * 24 * 60, description="how long the maintenance window lasts")
    note: Annotated[str, Field(min_length=2, max_length=500, description="why (work order, technician)")]


class ActionResult(BaseModel):
    alarm: dict[str, Any] | None
    done: list[str]
    silenced_alarms: int | None = None


def _refused(exc: MoveRefused) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, f"this alarm cannot {exc.move.replace('_', ' ')} now: {exc.reason}. Reload it to see its current state")


def alarms_router(deps: ApiDeps, auth: Auth, moves: AlarmMoves, records: ConsoleRecords,
                  feed_cursor: Callable[[], str | None] = lambda: None) -> APIRouter:
    """`feed_cursor()` is the running live feed's newest event id (None without a feed)."""
    router = APIRouter(prefix="/api", tags=["alarms"], responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 409, 422, 503)})
    viewer = auth.require(Capability.VIEW_ALARMS)
    sites = deps.sites
    esc = deps.escalation

    async def visible(p: Principal, alarm_id: str) -> AlarmRecord:
        rows = await asyncio.to_thread(_one, alarm_id)
        if not rows or not p.territory.covers(rows[0].building_id, rows[0].grid_id, rows[0].community_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alarm {alarm_id!r} in your territory; check the id or ask the duty officer")
        return rows[0]

    def _one(alarm_id: str) -> list[AlarmRecord]:
        import sqlalchemy as sa

        from backend.alarms.schema import alarms as t
        with deps.alarms.engine.connect() as conn:
            return [AlarmRecord(**r._mapping) for r in conn.execute(sa.select(*[t.c[f] for f in AlarmRecord.__slots__]).where(t.c.id == alarm_id))]

    async def view(alarm_id: str) -> dict[str, Any] | None:
        rows = await asyncio.to_thread(_one, alarm_id)
        return alarm_view(rows[0], sites) if rows else None

    async def move(p: Principal, alarm_id: str, m: Move, note: str) -> None:
        try:
            await moves.move(alarm_id, m, p.username, note=note)
        except MoveRefused as exc:
            raise _refused(exc) from exc
        except NoSuchAlarm as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        except NotWired as exc:  # no alarm service to ask (the thin slice): nothing writes beside the owner
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc

    async def step(p: Principal, alarm_id: str, m: Move, note: str) -> bool:
        """One move of a path a person asked for (close: acknowledge, finish, then verify; acknowledge on someone's
        behalf): True when made; False when refused because a concurrent request (another officer, a responder's
        phone, a drill's responder) already took the open alarm past it. Any other refusal stands (409)."""
        try:
            await move(p, alarm_id, m, note)
        except HTTPException as exc:
            if exc.status_code != status.HTTP_409_CONFLICT or m not in (Move.ACKNOWLEDGE, Move.FINISH):
                raise
            now = await visible(p, alarm_id)
            if not now.is_open or (AlarmState(now.state), m) in TRANSITIONS or AlarmState(now.state) in (AlarmState.SILENCED, AlarmState.SUPPRESSED):
                raise
            return False
        return True

    async def has_ladder(alarm_id: str) -> bool:
        return esc is not None and await esc.get(alarm_id) is not None

    async def on_behalf(alarm_id: str, responder: str) -> bool:
        """The responder's acknowledgement, recorded by the officer (they phoned in): it covers their rung. False
        when there is no ladder for this alarm."""
        if esc is None or not await has_ladder(alarm_id):
            return False
        try:
            await esc.observe(alarm_id, AlarmState.ACKNOWLEDGED, responder)
        except Exception:  # the lifecycle already recorded the act; the ladder failing must not undo it
            log.exception("the ladder could not record %s's acknowledgement on %s", responder, alarm_id)
            return False
        return True

    # -- reading -------------------------------------------------------------------------------------------
    @router.get("/alarms", summary="Alarms in your territory, in board order (open, life safety, severity, oldest first)")
    async def list_alarms(  # noqa: PLR0917 (query parameters, one per filter)
        p: Annotated[Principal, Depends(viewer)],
        open_only: Annotated[bool, Query(alias="open", description="only alarms not yet closed")] = False,
        drill: Annotated[bool | None, Query(description="only drill (true) or only real (false) alarms")] = None,
        building: Annotated[str | None, Query(max_length=64)] = None,
        grid: Annotated[str | None, Query(max_length=64)] = None,
        alarm_type: Annotated[str | None, Query(max_length=64, description="only this alarm type (a group's members)")] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000, description="first row of the page of alarms besides life safety")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000, description="rows per page besides life safety (those are never cut)")] = 200,
    ) -> AlarmList:
        feed_id = feed_cursor()  # before the read: what commits after it is in the feed after this id
        gb = [b.id for b in sites.buildings.values() if b.grid == grid] if sites and grid else []
        page = await asyncio.to_thread(board_page, deps.alarms.engine, p.territory, open_only=open_only, drill=drill, building=building,
                                       grid=grid, grid_buildings=gb, alarm_type=alarm_type, offset=offset, limit=limit)
        groups = []
        for g in page.groups:
            b = sites.buildings.get(g["place"] or "") if sites else None
            c = sites.communities.get(g["place"] or "") if sites and b is None else None
            groups.append({**g, "building_id": b.id if b else None, "place_name": b.name if b else (c.name if c else g["place"])})
        rows = [alarm_view(r, sites) for r in (*page.life_safety, *page.rest)]
        assigned = await asyncio.to_thread(current_assignees, deps.alarms.engine, [r["id"] for r in rows])  # issue 17: the board shows the assignee
        for r in rows:
            a = assigned.get(r["id"])
            r.update(assignee_id=a.assignee_id if a else None, assignee_name=a.assignee_name if a else None)
        return AlarmList(alarms=rows, server_now_ms=deps.clock.now_ms(),
                         drill_open=page.drill_open, life_safety_open=len(page.life_safety), rest_total=page.rest_total,
                         open_total=page.open_total, offset=offset, limit=limit, groups=groups, utc_offset_min=utc_offset_min(), feed_id=feed_id)

    @router.post("/console/mute", summary="Silence this console's alarm sound for a few minutes (recorded with who muted; a new life-safety alarm ends it)")
    async def mute(p: Annotated[Principal, Depends(viewer)], body: MuteBody) -> MuteResult:
        now = deps.clock.now_ms()
        page = await asyncio.to_thread(board_page, deps.alarms.engine, p.territory, open_only=True, limit=1)
        sounding = [a for a in page.life_safety if a.state in (AlarmState.RAISED, AlarmState.NOTIFIED)]
        note = f"值班台警报声静音 {body.minutes} 分钟 / console sound muted for {body.minutes} min"
        acts = [ConsoleAct(a.id, now, p.username, "mute_sound", None, "console", note, a.drill) for a in sounding]
        for act in acts or [ConsoleAct("console", now, p.username, "mute_sound", None, "console", note)]:
            await asyncio.to_thread(records.add, act)
        log.info("console sound muted by %s for %d min (%d alarms sounding)", p.username, body.minutes, len(sounding))
        return MuteResult(muted_until_ms=now + body.minutes * 60_000, server_now_ms=now, minutes=body.minutes, by=p.username, alarms=[a.id for a in sounding])

    @router.get("/alarms/{alarm_id}", summary="One alarm: place, timeline of every change (who, when), rungs notified, deadlines")
    async def alarm_detail(p: Annotated[Principal, Depends(viewer)], alarm_id: AlarmId, lang: Annotated[Lang, Depends(request_lang)]) -> AlarmDetail:
        rec = await visible(p, alarm_id)
        audit = await asyncio.to_thread(deps.alarms.audit, alarm_id)
        acts = await asyncio.to_thread(records.for_alarm, alarm_id)
        timeline: list[dict[str, Any]] = [
            {"at_ms": e.at_ms, "source": "lifecycle", "actor": e.actor, "what": e.move, "from_state": e.from_state.value if e.from_state else None,
             "to_state": e.to_state.value, "note": e.note} for e in audit]
        timeline += [{"at_ms": a.at_ms, "source": "console", "actor": a.actor, "what": a.act, "on_behalf_of": a.on_behalf_of, "target": a.target,
                      "note": a.note} for a in acts]
        timeline += await asyncio.to_thread(forward_timeline, deps.alarms.engine, alarm_id, lang, site_tz())  # issue 17: 转警 119
        timeline += await asyncio.to_thread(receipt_timeline, deps.alarms.engine, alarm_id)  # issue 18: each notice's receipts per person
        timeline += await asyncio.to_thread(collab_timeline, deps.alarms.engine, alarm_id, lang)  # issue 17: assignments and comments
        ladder_view: dict[str, Any] | None = None
        responders: list[dict[str, Any]] = []
        if esc is not None:
            state = await esc.get(alarm_id)
            if state is not None:
                log_rows = await asyncio.to_thread(esc.store.log, alarm_id)
                rungs = esc.policies.rungs
                timeline += [{"at_ms": r.at_ms, "source": "ladder", "actor": r.worker, "what": r.kind, "rung": r.rung, "contact": r.contact,
                              "field_state": r.field_state, "note": r.detail, "rung_label": rungs[r.rung].label if r.rung and r.rung in rungs else None}
                             for r in log_rows if r.kind not in ("advance",)]
                pending = timers(state, esc.policies)
                ladder_view = {
                    "policy": state.policy, "started_ms": state.started_ms, "verified_ms": state.verified_ms, "treated_real_ms": state.treated_real_ms,
                    "stopped": state.stopped, "exhausted": state.exhausted,
                    "rungs": [{"rung": e.rung, "label": rungs[e.rung].label if e.rung in rungs else e.rung, "engaged_ms": e.engaged_ms, "via": e.via.value,
                               "via_text": render(f"via.{e.via.value}", None, lang),
                               "progress": e.progress.value if e.progress else None, "missed": [m.value for m in e.missed], "declined": list(e.declined),
                               "repeats": e.repeats, "contacts": [{"id": c.id, "name": c.name, "kind": c.kind.value} for c in e.contacts]}
                              for e in state.engagements],
                    "deadlines": [{"due_ms": t.due_ms, "kind": t.kind.value, "rung": t.rung,
                                   "label": rungs[t.rung].label if t.rung and t.rung in rungs else None,
                                   "field_state": t.field_state.value if t.field_state else None} for t in pending],
                    "rung_status": _with_ladder_json(rung_status(state, esc.policies, pending), state, esc.policies, utc_offset_min()),
                }
                seen: set[str] = set()
                for e in state.engagements:
                    for c in e.contacts:
                        if c.id not in seen and c.kind.value != "console":
                            seen.add(c.id)
                            responders.append({"id": c.id, "name": c.name, "rung": e.rung})
        if sites is not None and rec.building_id in sites.buildings:
            # people who may be dispatched or answered for: the place's own responders come first
            b = sites.buildings[rec.building_id]
            community = _community(rec)
            for r in sites.responders.values():
                if r.id in {x["id"] for x in responders}:
                    continue
                if r.grid == b.grid or r.building == b.id or (r.community == community and r.role.value in ("fire_station_head", "fire_station_member")):
                    responders.append({"id": r.id, "name": r.name, "rung": r.role.value})
        timeline.sort(key=lambda x: x["at_ms"])
        for entry in timeline:  # `label` and `note_text` in the reader's language; the stored fields stay as they are
            entry.update(timeline_text(entry, lang))
        return AlarmDetail(alarm=alarm_view(rec, sites), place=place_view(rec, sites, with_vulnerable=p.can(Capability.VIEW_VULNERABLE)),
                           timeline=timeline, ladder=ladder_view, responders=responders[:40], server_now_ms=deps.clock.now_ms(),
                           utc_offset_min=utc_offset_min())

    # -- acting --------------------------------------------------------------------------------------------
    @router.post("/alarms/{alarm_id}/acknowledge", summary="Acknowledge (我已收到), yourself or on behalf of a responder (recorded as such)")
    async def acknowledge(p: Annotated[Principal, Depends(auth.require(Capability.ACKNOWLEDGE))], alarm_id: AlarmId, body: AcknowledgeBody,
                  lang: Annotated[Lang, Depends(request_lang)]) -> ActionResult:
        rec = await visible(p, alarm_id)
        rid = body.on_behalf_of
        if rid and not p.can(Capability.ACKNOWLEDGE_FOR_OTHERS):
            allowed = ", ".join(sorted(r.value for r, caps in ROLE_CAPABILITIES.items() if Capability.ACKNOWLEDGE_FOR_OTHERS in caps))
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"acknowledging on behalf of someone is for the command room ({allowed}); "
                                                           "acknowledge for yourself, or ask the duty officer to record it")
        if rid and sites is not None and rid not in sites.responders and not rid.startswith(("family:", "neighbour:")):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"no responder {rid!r} in the site directory; pick one from the alarm's list")
        note = (f"代{_responder_name(rid)}({rid})确认 on behalf of {rid}" + (f": {body.note}" if body.note else "")) if rid else body.note
        done: list[str] = []
        if not rid:
            # one move, one audit entry; the ladder observes it from the committed result (nothing goes back)
            await move(p, alarm_id, Move.ACKNOWLEDGE, note)
            done.append("acknowledged")
        elif (AlarmState(rec.state), Move.ACKNOWLEDGE) in TRANSITIONS and await step(p, alarm_id, Move.ACKNOWLEDGE, note):
            done.append("acknowledged")
        if rid:  # the alarm may be acknowledged already: the responder's own answer is still theirs to record
            await asyncio.to_thread(records.add, ConsoleAct(alarm_id, deps.clock.now_ms(), p.username, "acknowledge_on_behalf", rid,
                                                            None, body.note, rec.drill))
            if await on_behalf(alarm_id, rid):
                done.append("ladder")
        elif await has_ladder(alarm_id):
            done.append("ladder")
        return ActionResult(alarm=await view(alarm_id), done=done_text(done, lang, site_tz()))

    @router.post("/alarms/{alarm_id}/verify", summary="Verify (核实): the alarm is real; the ladder stops waiting for verification")
    async def verify(p: Annotated[Principal, Depends(auth.require(Capability.VERIFY))], alarm_id: AlarmId, body: VerifyBody,
                  lang: Annotated[Lang, Depends(request_lang)]) -> ActionResult:
        rec = await visible(p, alarm_id)
        if not rec.is_open:
            raise HTTPException(status.HTTP_409_CONFLICT, "this alarm is already closed; there is nothing to verify")
        done = ["verified"]
        if rec.state in (AlarmState.RAISED, AlarmState.NOTIFIED):
            await move(p, alarm_id, Move.ACKNOWLEDGE, f"核实 verified: {body.note}".rstrip(": "))
            done.append("acknowledged")
        await asyncio.to_thread(records.add, ConsoleAct(alarm_id, deps.clock.now_ms(), p.username, "verify", None, None, body.note, rec.drill))
        if esc is not None and await has_ladder(alarm_id):
            try:
                await esc.verify(alarm_id, p.username, body.note)
                done.append("ladder")
            except Exception:  # the act is recorded; the ladder failing must not undo it
                log.exception("the ladder could not take the verification of %s", alarm_id)
        return ActionResult(alarm=await view(alarm_id), done=done_text(done, lang, site_tz()))

    @router.post("/alarms/{alarm_id}/dispatch", summary="Dispatch (派遣) a responder: a notice goes to them now, and it is recorded")
    async def dispatch(p: Annotated[Principal, Depends(auth.require(Capability.DISPATCH))], alarm_id: AlarmId, body: DispatchBody,
                  lang: Annotated[Lang, Depends(request_lang)]) -> ActionResult:
        rec = await visible(p, alarm_id)
        if not rec.is_open:
            raise HTTPException(status.HTTP_409_CONFLICT, "this alarm is closed; open a new one or pick an open alarm to dispatch to")
        if sites is None or body.responder_id not in sites.responders:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"no responder {body.responder_id!r} in the site directory; pick one from the list")
        r = sites.responders[body.responder_id]
        community = _community(rec)
        if r.community != community and not p.territory.covers(r.building, r.grid, r.community):
            # Mutual aid across communities is the call of someone whose territory holds the responder (the street's
            # duty room), not of a grid worker or a community's officer.
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"{r.name} ({r.id}) belongs to community {r.community}, not this alarm's ({community}), and is outside your "
                                "territory; pick someone from the alarm's list or ask the street's duty room")
        done = ["recorded"]
        if esc is not None:
            now = deps.clock.now_ms()
            b = sites.buildings.get(rec.building_id or "")
            place = " ".join(x for x in (b.name if b else "", f"{rec.unit}单元" if rec.unit else "") if x) or "位置未知"
            text = notice_text(title=rec.title, place=place, reason="page", severity=rec.severity, rung_label="值班员派遣", drill=rec.drill)
            msg = Message(key=f"{alarm_id}/dispatch/{r.id}/{now}", alarm_id=alarm_id, contact=Contact(r.id, r.name, phone=r.phone),
                          channels=("console", "app", "sms"), text=text + (f" {body.note}" if body.note else ""), title=rec.title, drill=rec.drill,
                          outside_allowed=not rec.drill, reason="page", rung="dispatch", building=rec.building_id, severity=rec.severity, created_ms=now)
            receipts = await esc.dispatcher.deliver(msg)
            done += [f"{x.channel}:{x.status.value}" for x in receipts]
        await asyncio.to_thread(records.add, ConsoleAct(alarm_id, deps.clock.now_ms(), p.username, "dispatch", None, r.id,
                                                        f"{r.name} ({r.role.value})" + (f": {body.note}" if body.note else ""), rec.drill))
        return ActionResult(alarm=await view(alarm_id), done=done_text(done, lang, site_tz()))

    @router.post("/alarms/{alarm_id}/close", summary="Close as real (复核关闭) or as a false alarm (误报), with a note")
    async def close(p: Annotated[Principal, Depends(auth.require(Capability.CLOSE))], alarm_id: AlarmId, body: CloseBody,
                  lang: Annotated[Lang, Depends(request_lang)]) -> ActionResult:
        rec = await visible(p, alarm_id)
        if not rec.is_open:
            raise HTTPException(status.HTTP_409_CONFLICT, f"this alarm is already {rec.state}; nothing to close")
        done: list[str] = []
        if body.outcome == "false_alarm":
            await move(p, alarm_id, Move.MARK_FALSE, body.note)
            done.append("false_alarm")
        else:
            path = {"raised": [Move.ACKNOWLEDGE, Move.FINISH], "notified": [Move.ACKNOWLEDGE, Move.FINISH], "acknowledged": [Move.FINISH],
                    "en_route": [Move.FINISH], "on_scene": [Move.FINISH]}.get(rec.state, [])
            if rec.state in ("silenced", "suppressed"):
                raise HTTPException(status.HTTP_409_CONFLICT, f"this alarm is {rec.state}; lift that first or close it as a false alarm")
            done += [m.value for m in path if await step(p, alarm_id, m, body.note)]  # a step made meanwhile by another request: not twice
            await move(p, alarm_id, Move.VERIFY_CLOSE, body.note)
            done.append(Move.VERIFY_CLOSE.value)
        await asyncio.to_thread(records.add, ConsoleAct(alarm_id, deps.clock.now_ms(), p.username, f"close_{body.outcome}", None, None, body.note, rec.drill))
        if esc is not None and await esc.get(alarm_id) is not None:
            try:
                await esc.stop(alarm_id, "false_alarm" if body.outcome == "false_alarm" else "closed")
                done.append("ladder_stopped")
            except Exception:
                log.exception("stopping the ladder of %s failed", alarm_id)
        return ActionResult(alarm=await view(alarm_id), done=done_text(done, lang, site_tz()))

    @router.post("/devices/{device_id}/silence", summary="Silence a device for maintenance until an expiry (its alarms are held, then resume)")
    async def silence(p: Annotated[Principal, Depends(auth.require(Capability.SILENCE))], device_id: DeviceId, body: SilenceBody,
                      lang: Annotated[Lang, Depends(request_lang)]) -> ActionResult:
        d = sites.devices.get(device_id) if sites else None
        if sites is None or d is None or not p.territory.covers(d.building):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device_id!r} in your territory; check the id on the device's label")
        until = deps.clock.now_ms() + body.minutes * 60_000
        try:
            n = await moves.add_window(f"device:{device_id}", until, p.username, body.note)
        except NotWired as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
        except MoveRefused as exc:
            raise _refused(exc) from exc
        return ActionResult(alarm=None, done=done_text([f"silenced until {until}"], lang, site_tz()), silenced_alarms=n)

    def utc_offset_min() -> int:
        """The site's time zone: the duty rosters' (escalation settings), Beijing time without a ladder."""
        return int(getattr(getattr(esc, "roster", None), "utc_offset_min", BEIJING_UTC_OFFSET_MIN))

    def site_tz() -> timezone:
        return timezone(timedelta(minutes=utc_offset_min()))

    def _community(rec: AlarmRecord) -> str | None:
        """The alarm's community: as stored, else its building's in the site directory."""
        if rec.community_id or sites is None or rec.building_id not in sites.buildings:
            return rec.community_id
        return sites.community_of_building(rec.building_id)

    def _responder_name(rid: str) -> str:
        if sites is not None and rid in sites.responders:
            return sites.responders[rid].name
        return rid

    return router
