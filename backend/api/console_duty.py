"""Duty routes of the console (issue 17): who is on duty, roster overrides, shifts, the shift handover, the audit.

How this works: the routes are thin; the rules live in backend.duty (DutyService). The service is built here
over the alarm database and the ladder's own roster (`deps.escalation.roster`, the object the escalation
service asks for every fill), so an override written through these routes is what the next alarm's ladder
resolves from, at once and without a restart. Without a ladder in this process (the thin slice) the routes
keep a roster of their own over the site directory.

Who may: everyone logged in reads who is on duty and the overrides (their territory's); admins, duty officers and
grid workers change the roster (their territory's people and seats); admins and duty officers keep watch: log in
to a shift, write and accept handovers, read the audit (logins in it for admins only). Every refusal is a sentence
a person can act on, in Chinese unless the request asks for English; an unknown person, override or handover,
or one outside the caller's territory, answers 404 alike.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from alerting.directory import Seat
from backend.api.auth import Auth, Capability, Principal
from backend.api.deps import ApiDeps
from backend.api.errors import ERRORS
from backend.duty import DutyError, DutyService, DutyStore, OverrideRequest, audit_view
from backend.duty.service import overdue_rungs
from backend.escalation.service import rungs_json
from backend.i18n import lang_of
from backend.sites.roster import OverrideKind, SiteRoster
from backend.store.users import UserRole

__all__ = ["duty_router", "duty_service"]

AcceptLanguage = Annotated[str | None, Header(description="`en` for English messages; Chinese otherwise")]
RecordId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._\-]+$")]
WATCH_ROLES = frozenset({UserRole.ADMIN, UserRole.DUTY_OFFICER})
MINUTE_MS = 60_000
T = TypeVar("T")


class OverrideIn(BaseModel):
    kind: OverrideKind = Field(description="leave 请假, sick 病假, away 不在岗, swap 换班, assign 临时指定")
    responder: Annotated[str | None, Field(max_length=64, description="who is off (leave, sick, away, swap)")] = None
    substitute: Annotated[str | None, Field(max_length=64, description="who stands in (swap, assign; optional for leave and sickness)")] = None
    seat: Literal["grid_worker", "building_leader", "fire_station", "volunteer", "duty_officer"] | None = Field(
        default=None, description="assign: the seat; leave or swap: only this seat's shifts")
    scope: Annotated[str | None, Field(max_length=64, description="assign: the grid, building, fire station, volunteer team or community")] = None
    start_ms: Annotated[int | None, Field(ge=0, le=32_503_680_000_000, description="start (epoch ms); unset: now")] = None
    end_ms: Annotated[int | None, Field(ge=0, le=32_503_680_000_000, description="end (epoch ms); or give `minutes`")] = None
    minutes: Annotated[int | None, Field(ge=1, le=200_000, description="length from the start; or give `end_ms`")] = None
    reason: Annotated[str, Field(min_length=2, max_length=500, description="why: 病假条, 调休, who asked")]


class CancelIn(BaseModel):
    reason: Annotated[str, Field(min_length=2, max_length=500)]


class ShiftIn(BaseModel):
    community: Annotated[str | None, Field(max_length=64, description="unset: your community (or the site's only one)")] = None


class HandoverIn(BaseModel):
    community: Annotated[str | None, Field(max_length=64, description="unset: your community (or the site's only one)")] = None
    notes: Annotated[str, Field(max_length=4000, description="what the incoming officer must know")] = ""


class AcceptIn(BaseModel):
    objections: Annotated[str, Field(max_length=2000, description="what the incoming officer does not accept as handed over")] = ""


def _refuse(exc: DutyError, accept_language: str | None) -> HTTPException:
    return HTTPException(exc.status, exc.text(lang_of(accept_language)))


def duty_service(deps: ApiDeps) -> DutyService | None:
    """The duty service over the alarm database and the ladder's roster; None without a site directory."""
    if deps.sites is None:
        return None
    esc = deps.escalation
    roster = esc.roster if esc is not None and isinstance(esc.roster, SiteRoster) else SiteRoster(deps.sites)
    offset = esc.settings.utc_offset_min if esc is not None else 480
    return DutyService(DutyStore(deps.alarms.engine), deps.sites, roster, deps.clock, utc_offset_min=offset)


def duty_router(deps: ApiDeps, auth: Auth, duty: DutyService) -> APIRouter:
    router = APIRouter(prefix="/api/duty", tags=["duty"], responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 409, 422)})
    esc = deps.escalation
    offset = esc.settings.utc_offset_min if esc is not None else 480
    viewer = auth.require(Capability.VIEW_ALARMS)
    planner = auth.require(Capability.DISPATCH)
    current = auth.current

    def watch() -> Callable[..., Coroutine[Any, Any, Principal]]:
        async def dependency(p: Annotated[Principal, Depends(current)]) -> Principal:
            if p.role not in WATCH_ROLES:
                allowed = ", ".join(sorted(r.value for r in WATCH_ROLES))
                raise HTTPException(status.HTTP_403_FORBIDDEN, f"your role ({p.role.value}) may not keep watch; roles that may: {allowed}")
            return p

        return dependency

    keeper = watch()

    async def run(fn: Callable[..., T], *args: Any, lang: str | None = None) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except DutyError as exc:
            raise _refuse(exc, lang) from exc

    @router.get("/now", summary="Who is on duty now: officers logged in to a shift per community, against GB 25506's two per shift")
    async def on_duty(p: Annotated[Principal, Depends(viewer)]) -> dict[str, Any]:
        communities = await run(duty.on_duty, p.territory)
        return {"communities": communities, "server_now_ms": deps.clock.now_ms(), "me": await asyncio.to_thread(duty.store.open_shift, p.username)
                is not None, "warning": next((c["warning"] for c in communities if c["warning"]), None)}

    @router.get("/roster", summary="Who holds each rung's seat now (overrides applied), per grid, building, station, team and community")
    async def roster_now(p: Annotated[Principal, Depends(viewer)],
                         seat: Annotated[Literal["grid_worker", "building_leader", "fire_station", "volunteer", "duty_officer"] | None,
                                         Query(description="only this seat")] = None,
                         at_ms: Annotated[int | None, Query(ge=0, le=32_503_680_000_000, description="at this time (epoch ms); unset: now")] = None,
                         ) -> dict[str, Any]:
        seats = await run(duty.roster_now, p.territory, at_ms, Seat(seat) if seat else None)
        return {"seats": seats, "people": await run(duty.people, p.territory), "server_now_ms": deps.clock.now_ms()}

    @router.get("/roster/overrides", summary="Roster overrides in force or planned (with `include_past`, ended and cancelled ones too)")
    async def overrides(p: Annotated[Principal, Depends(viewer)], include_past: bool = False) -> dict[str, Any]:
        return {"overrides": await run(duty.overrides, p.territory, include_past)}

    @router.post("/roster/overrides", status_code=201, summary="Change who is on duty over a time range: leave, sickness, a swap, a one-off assignment")
    async def add_override(p: Annotated[Principal, Depends(planner)], body: OverrideIn, accept_language: AcceptLanguage = None) -> dict[str, Any]:
        now = deps.clock.now_ms()
        start = body.start_ms if body.start_ms is not None else now
        if (body.end_ms is None) == (body.minutes is None):
            lang = lang_of(accept_language)
            raise HTTPException(422, "give either end_ms or minutes" if lang == "en" else "请填写结束时间或时长（二选一）")
        end = body.end_ms if body.end_ms is not None else start + (body.minutes or 0) * MINUTE_MS
        req = OverrideRequest(body.kind, start, end, body.reason, body.responder or None, body.substitute or None,
                              Seat(body.seat) if body.seat else None, body.scope or None)
        rec = await run(duty.add_override, req, p.username, p.territory, lang=accept_language)
        return duty.override_view(rec)

    @router.post("/roster/overrides/{override_id}/cancel", summary="End an override now (back early, swap called off)")
    async def cancel_override(p: Annotated[Principal, Depends(planner)], override_id: RecordId, body: CancelIn,
                              accept_language: AcceptLanguage = None) -> dict[str, Any]:
        rec = await run(duty.cancel_override, override_id, p.username, body.reason, p.territory, lang=accept_language)
        return duty.override_view(rec)

    @router.post("/shifts/start", status_code=201, summary="Log in to a shift (接班上岗)")
    async def start_shift(p: Annotated[Principal, Depends(keeper)], body: ShiftIn, accept_language: AcceptLanguage = None) -> dict[str, Any]:
        community = await run(duty.community_of, body.community, p.user.scope, p.territory, lang=accept_language)
        s = await run(duty.start_shift, p.username, p.user.display_name, community, lang=accept_language)
        return {"id": s.id, "username": s.username, "community": s.community, "started_ms": s.started_ms, "started_local": duty.local(s.started_ms)}

    @router.post("/shifts/end", summary="Log out of your shift (下岗)")
    async def end_shift(p: Annotated[Principal, Depends(keeper)], accept_language: AcceptLanguage = None) -> dict[str, Any]:
        s = await run(duty.end_shift, p.username, p.user.display_name, lang=accept_language)
        return {"id": s.id, "username": s.username, "community": s.community, "started_ms": s.started_ms, "ended_ms": s.ended_ms,
                "ended_local": duty.local(s.ended_ms)}

    async def overdue(alarm_id: str, now_ms: int) -> list[str]:
        if esc is None:
            return []
        state = await esc.get(alarm_id)
        if state is None:
            return []
        return overdue_rungs(rungs_json(state, esc.policies, offset), now_ms)

    async def snapshot(community: str) -> dict[str, Any]:
        open_alarms = await asyncio.to_thread(deps.alarms.list, open_only=True, limit=1000)
        snap = await duty.snapshot(community, deps.alarms.engine, open_alarms, overdue)
        return snap.as_json()

    @router.get("/handover/draft", summary="What a handover written now would hand over (open, overdue, silenced, offline)")
    async def draft(p: Annotated[Principal, Depends(keeper)], community: Annotated[str | None, Query(max_length=64)] = None,
                    accept_language: AcceptLanguage = None) -> dict[str, Any]:
        c = await run(duty.community_of, community, p.user.scope, p.territory, lang=accept_language)
        return {"community": c, "snapshot": await snapshot(c), "server_now_ms": deps.clock.now_ms()}

    @router.post("/handovers", status_code=201, summary="Write a shift handover (交班): the record of what is open, with your notes")
    async def write(p: Annotated[Principal, Depends(keeper)], body: HandoverIn, accept_language: AcceptLanguage = None) -> dict[str, Any]:
        c = await run(duty.community_of, body.community, p.user.scope, p.territory, lang=accept_language)
        snap = await duty.snapshot(c, deps.alarms.engine, await asyncio.to_thread(deps.alarms.list, open_only=True, limit=1000), overdue)
        rec = await run(duty.write_handover, c, p.username, body.notes, snap, lang=accept_language)
        return duty.handover_view(rec)

    @router.get("/handovers", summary="Handovers, newest first")
    async def handovers(p: Annotated[Principal, Depends(keeper)], limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
        return {"handovers": await run(duty.handovers, p.territory, limit)}

    @router.get("/handovers/{handover_id}", summary="One handover")
    async def handover(p: Annotated[Principal, Depends(keeper)], handover_id: RecordId, accept_language: AcceptLanguage = None) -> dict[str, Any]:
        return duty.handover_view(await run(duty.visible_handover, handover_id, p.territory, lang=accept_language))

    @router.post("/handovers/{handover_id}/accept", summary="Accept a handover (接班), once, with objections if any")
    async def accept(p: Annotated[Principal, Depends(keeper)], handover_id: RecordId, body: AcceptIn,
                     accept_language: AcceptLanguage = None) -> dict[str, Any]:
        rec = await run(duty.accept_handover, handover_id, p.username, body.objections, p.territory, lang=accept_language)
        return duty.handover_view(rec)

    @router.get("/audit", summary="One audit list: roster changes, shifts, handovers, admin actions, logins (admins), maintenance windows, silences")
    async def audit(p: Annotated[Principal, Depends(keeper)], limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                    area: Annotated[Literal["roster", "shift", "handover", "admin", "login", "maintenance", "silence"] | None, Query()] = None,
                    ) -> dict[str, Any]:
        logins = await asyncio.to_thread(deps.users.login_audit, limit) if p.can(Capability.MANAGE_USERS) else None

        def visible(community: str | None) -> bool:
            return community is None or p.territory.covers(None, None, community)

        rows = await asyncio.to_thread(audit_view, duty.store, local=duty.local, visible=visible, logins=logins, limit=limit, area=area)
        return {"entries": rows, "server_now_ms": deps.clock.now_ms()}

    return router
