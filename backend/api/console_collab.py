"""Working an alarm together (协同处置, issue 17): assign it, comment on it (with photos), archive it.

How this works: the routes are thin. Assignments and comments are records beside the lifecycle
(backend.alarms.collab: they never change the alarm's state; each is published on the centre's stream, so every
console of the territory sees it live); archiving is the lifecycle's `archive` move, asked of the alarm service,
the one writer of alarm state (closed or false alarms only). The service is the server's
(built from the `alarms.*` settings the server hands in, `ApiDeps.extras["alarms"]`) or, when none were given (the
test rigs), one with the default limits.

Who may (backend.api.auth capabilities): reading the collaboration and the photos needs `view_alarms`; commenting
needs `acknowledge` (the field's own record); assigning needs `dispatch`; archiving needs `close`. An alarm outside
the caller's territory answers 404 exactly like an unknown one. The people an alarm may be assigned to are the
responders of its community and the officers whose territory holds it (GET .../collab lists them). Every refusal
is a sentence in Chinese (English on `Accept-Language: en`) and nothing is written: 404 unknown alarm or photo, 409
archiving an alarm that is not closed (or archived already), assigning an archived one or to the person who has it,
413 a photo too large, 415 not a JPEG / PNG / WebP, 422 an empty or too long comment, too many photos, an assignee
who is unknown or outside the alarm's territory.

(No `from __future__ import annotations`: FastAPI must see the real dependency objects in signatures.)
"""

import asyncio
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from alerting.lifecycle import AlarmState, Move
from backend.alarms.collab import AlarmCollab, CollabConflict, CollabError, CollabSettings, NoAlarm, Person, PhotoRefused
from backend.alarms.schema import alarms as alarms_table
from backend.alarms.service import MoveRefused, NoSuchAlarm
from backend.alarms.store import AlarmRecord
from backend.api.auth import Auth, Capability, Principal, Territory
from backend.api.console_views import alarm_view
from backend.api.deps import AlarmMoves, ApiDeps, NotWired
from backend.api.errors import ERRORS, request_lang
from backend.errors import Unavailable
from backend.i18n import Lang
from backend.store.db import sqlite_file
from backend.store.users import UserRole
from backend.stream import CentreStream

__all__ = ["collab_of", "collab_router"]

AlarmId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
PhotoId = Annotated[str, PathParam(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9]+$")]
OFFICER_ROLES = (UserRole.DUTY_OFFICER, UserRole.GRID_WORKER, UserRole.BUILDING_LEADER, UserRole.MICRO_FIRE_STATION)
STATE_ZH = {"raised": "报警", "notified": "已通知", "acknowledged": "已确认", "en_route": "出发", "on_scene": "到场", "handled": "处置完成",
            "closed": "复核关闭", "archived": "已归档", "false_alarm": "误报", "suppressed": "已抑制", "silenced": "维护屏蔽",
            "awaiting_verification": "设备已恢复待核实"}


class AssignBody(BaseModel):
    assignee_id: str = Field(min_length=1, max_length=96, pattern=r"^[A-Za-z0-9._:\-]+$",
                             description="a person from GET /api/alarms/{id}/collab `candidates`: a responder id, or user:<login> for an officer")
    note: str = Field(default="", max_length=500)


class ArchiveBody(BaseModel):
    note: str = Field(default="", max_length=500, description="why now (optional)")


class CollabView(BaseModel):
    alarm_id: str
    state: str
    assignee: dict[str, Any] | None = Field(description="the current assignee (the newest assignment), or null")
    assignments: list[dict[str, Any]] = Field(description="every assignment, oldest first: who assigned, when, to whom")
    comments: list[dict[str, Any]] = Field(description="every comment, oldest first, with its photos' URLs and `author_name` (how a person reads the author)")
    candidates: list[dict[str, Any]] = Field(description="who the alarm may be assigned to (empty without the dispatch capability)")
    can_archive: bool = Field(description="closed or false alarm, and the caller may archive")
    archive_after_days: float | None = Field(default=None, description="closed alarms archive by themselves after this many quiet days")
    limits: dict[str, int]
    server_now_ms: int


class AssignResult(BaseModel):
    assignment: dict[str, Any]
    alarm: dict[str, Any] | None


class ArchiveResult(BaseModel):
    alarm: dict[str, Any] | None
    done: list[str]


def _pick(zh: str, en: str, lang: str) -> str:
    return en if lang == "en" else zh


def _default_photos_dir(deps: ApiDeps) -> Path:
    """Without the server's settings: beside a SQLite alarm database (the data folder), else ./var."""
    db = sqlite_file(deps.alarms.engine)
    return db.resolve().parent / "alarm-photos" if db is not None else Path("var") / "alarm-photos"


def collab_of(deps: ApiDeps) -> AlarmCollab:
    """The collaboration service on the alarm database: with the server's `alarms` settings (`ApiDeps.extras["alarms"]`,
    photos under `alarms.photos_dir`, else `extras["data_dir"]/alarm-photos`), or the default limits (the test rigs)."""
    extras = deps.extras or {}
    config = extras.get("alarms")
    photos = _default_photos_dir(deps)
    if config is not None:
        data_dir = extras.get("data_dir")
        photos = config.photos_dir or (Path(data_dir) / "alarm-photos" if data_dir is not None else photos)
    # the centre's stream: the server's, else the alarm service's (the one the live feed of this process reads)
    stream = deps.stream or getattr(deps.alarm_service, "stream", None) or getattr(deps.feed, "stream", None)
    return AlarmCollab(deps.alarms, deps.clock, photos, stream=stream if isinstance(stream, CentreStream) else None,
                       settings=CollabSettings.of(config) if config is not None else CollabSettings())


def collab_router(deps: ApiDeps, auth: Auth, moves: AlarmMoves) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["alarms"], responses={k: v for k, v in ERRORS.items() if k in (400, 401, 403, 404, 409, 422, 503)})
    svc = collab_of(deps)
    sites = deps.sites
    viewer = auth.require(Capability.VIEW_ALARMS)
    archive_after = getattr((deps.extras or {}).get("alarms"), "archive_after_days", None)

    def refused(exc: CollabError, lang: str) -> HTTPException:
        if isinstance(exc, Unavailable):  # nothing was recorded; the same request may succeed in a moment
            return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, exc.text(lang), headers={"Retry-After": "5"})
        code = (status.HTTP_404_NOT_FOUND if isinstance(exc, NoAlarm) else status.HTTP_409_CONFLICT if isinstance(exc, CollabConflict)
                else exc.status if isinstance(exc, PhotoRefused) else status.HTTP_422_UNPROCESSABLE_CONTENT)
        return HTTPException(code, exc.text(lang))

    def _record(alarm_id: str) -> AlarmRecord | None:
        t = alarms_table
        with deps.alarms.engine.connect() as conn:
            r = conn.execute(sa.select(*[t.c[f] for f in AlarmRecord.__slots__]).where(t.c.id == alarm_id)).first()
        return AlarmRecord(**r._mapping) if r is not None else None

    async def visible(p: Principal, alarm_id: str, lang: str) -> AlarmRecord:
        rec = await asyncio.to_thread(_record, alarm_id)
        if rec is None or not p.territory.covers(rec.building_id, rec.grid_id, rec.community_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, _pick(f"您的辖区内没有编号为 {alarm_id} 的警报；请核对编号",
                                                                  f"no alarm {alarm_id!r} in your territory; check the id", lang))
        return rec

    def community_of(rec: AlarmRecord) -> str | None:
        if rec.community_id or sites is None or rec.building_id not in sites.buildings:
            return rec.community_id
        return sites.community_of_building(rec.building_id)

    def candidates(rec: AlarmRecord) -> list[Person]:
        """The responders of the alarm's community, then the officers whose territory holds the alarm."""
        community = community_of(rec)
        people = [Person(r.id, r.name, r.role.value) for r in sorted(sites.responders.values(), key=lambda r: r.id)
                  if community is not None and r.community == community] if sites is not None else []
        officers = {r.value for r in OFFICER_ROLES}
        people.extend(Person(f"user:{u.username}", u.display_name or u.username, u.role) for u in sorted(deps.users.all(), key=lambda u: u.username)
                      if u.role in officers and Territory.of(u, sites).covers(rec.building_id, rec.grid_id, rec.community_id))
        return people

    def author_names(logins: set[str]) -> dict[str, str]:
        """How a person reads a comment's author: an officer's name with the login (徐静（duty1）); a phone's comment
        already carries the person's name and role."""
        out: dict[str, str] = {}
        for login in logins:
            user = deps.users.get(login)
            if user is not None and user.display_name and user.display_name != login:
                out[login] = f"{user.display_name}（{login}）"
        return out

    @router.get("/alarms/{alarm_id}/collab", summary="Working an alarm together: its assignee, assignments, comments (with photos) and who may be assigned")
    async def get_collab(p: Annotated[Principal, Depends(viewer)], alarm_id: AlarmId, lang: Annotated[Lang, Depends(request_lang)]) -> CollabView:
        rec = await visible(p, alarm_id, lang)
        assignments = await asyncio.to_thread(svc.assignments, alarm_id)
        comments = await asyncio.to_thread(svc.comments, alarm_id)
        names = await asyncio.to_thread(author_names, {c.author for c in comments})
        people = await asyncio.to_thread(candidates, rec) if p.can(Capability.DISPATCH) else []
        closed = rec.state in (AlarmState.CLOSED, AlarmState.FALSE_ALARM)
        return CollabView(alarm_id=alarm_id, state=rec.state, assignee=assignments[-1].as_json() if assignments else None,
                          assignments=[a.as_json() for a in assignments],
                          comments=[{**c.as_json(), "author_name": names.get(c.author, c.author)} for c in comments],
                          candidates=[x.as_json() for x in people], can_archive=closed and p.can(Capability.CLOSE),
                          archive_after_days=float(archive_after) if isinstance(archive_after, int | float) else None,
                          limits={"comment_max_chars": svc.settings.comment_max_chars, "photo_max_bytes": svc.settings.photo_max_bytes,
                                  "max_photos": svc.settings.max_photos}, server_now_ms=deps.clock.now_ms())

    @router.post("/alarms/{alarm_id}/assign", summary="Assign (or re-assign) the alarm to a responder or an officer of its territory (audited, live)")
    async def assign(p: Annotated[Principal, Depends(auth.require(Capability.DISPATCH))], alarm_id: AlarmId, body: AssignBody,
                     lang: Annotated[Lang, Depends(request_lang)]) -> AssignResult:
        rec = await visible(p, alarm_id, lang)
        person = next((x for x in await asyncio.to_thread(candidates, rec) if x.id == body.assignee_id), None)
        if person is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                _pick(f"{body.assignee_id} 不在该警报所在辖区的人员名单中：请从名单中选择",
                                      f"{body.assignee_id} is not a person of this alarm's territory: pick one from the list", lang))
        try:
            a = await svc.assign(alarm_id, p.username, person, body.note)
        except CollabError as exc:
            raise refused(exc, lang) from exc
        rec2 = await asyncio.to_thread(_record, alarm_id)
        return AssignResult(assignment=a.as_json(), alarm=alarm_view(rec2, sites) if rec2 else None)

    @router.post("/alarms/{alarm_id}/comments", status_code=status.HTTP_201_CREATED,
                 summary="Comment on the alarm (multipart: `text`, and `photos`: JPEG, PNG or WebP by their bytes); its state does not change",
                 responses={413: {**ERRORS[422], "description": "a photo is too large"},
                            415: {**ERRORS[422], "description": "a photo is not a JPEG, PNG or WebP"}})
    async def add_comment(p: Annotated[Principal, Depends(auth.require(Capability.ACKNOWLEDGE))], alarm_id: AlarmId,
                          lang: Annotated[Lang, Depends(request_lang)],
                          text: Annotated[str, Form(max_length=20_000, description="the comment (cleaned; the length limit is in settings)")] = "",
                          photos: Annotated[list[UploadFile] | None, File(description="photos (optional)")] = None) -> dict[str, Any]:
        await visible(p, alarm_id, lang)
        files = [f for f in photos or [] if f.filename or f.size]
        if len(files) > svc.settings.max_photos:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _pick(f"每条评论最多 {svc.settings.max_photos} 张照片",
                                                                          f"at most {svc.settings.max_photos} photos per comment", lang))
        data = [await f.read(svc.settings.photo_max_bytes + 1) for f in files]
        try:
            c = await svc.comment(alarm_id, p.username, text, data)
        except CollabError as exc:
            raise refused(exc, lang) from exc
        return c.as_json()

    @router.get("/alarms/{alarm_id}/photos/{photo_id}", summary="A photo of a comment on the alarm (its bytes; ETag is its SHA-256)",
                response_class=FileResponse, responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}})
    async def get_photo(p: Annotated[Principal, Depends(viewer)], alarm_id: AlarmId, photo_id: PhotoId,
                        lang: Annotated[Lang, Depends(request_lang)]) -> FileResponse:
        await visible(p, alarm_id, lang)
        try:
            row, path = await asyncio.to_thread(svc.photo_file, alarm_id, photo_id)
        except CollabError as exc:
            raise refused(exc, lang) from exc
        return FileResponse(path, media_type=row["content_type"], headers={"ETag": f'"{row["sha256"]}"', "Cache-Control": "private, max-age=3600",
                                                                          "X-Content-SHA256": row["sha256"]})

    @router.post("/alarms/{alarm_id}/archive", summary="Archive (归档) a closed or false alarm: it leaves the board's open list, history keeps it")
    async def archive(p: Annotated[Principal, Depends(auth.require(Capability.CLOSE))], alarm_id: AlarmId, body: ArchiveBody,
                      lang: Annotated[Lang, Depends(request_lang)]) -> ArchiveResult:
        rec = await visible(p, alarm_id, lang)
        if rec.state == AlarmState.ARCHIVED:
            raise HTTPException(status.HTTP_409_CONFLICT, _pick("该警报已归档", "this alarm is already archived", lang))
        if rec.state not in (AlarmState.CLOSED, AlarmState.FALSE_ALARM):
            raise HTTPException(status.HTTP_409_CONFLICT, _pick(
                f"该警报尚未关闭（当前：{STATE_ZH.get(rec.state, rec.state)}），只有已复核关闭或判为误报的警报才能归档；请先关闭",
                f"this alarm is still {rec.state}: only a closed or false alarm can be archived; close it first", lang))
        try:
            await moves.move(alarm_id, Move.ARCHIVE, p.username, note=body.note.strip())
        except MoveRefused as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, _pick(f"该警报现在不能归档：{exc.reason}；请刷新后查看其当前状态",
                                                                 f"this alarm cannot be archived now: {exc.reason}; reload it", lang)) from exc
        except NoSuchAlarm as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, _pick(f"没有编号为 {alarm_id} 的警报", str(exc), lang)) from exc
        except NotWired as exc:  # no alarm service to ask: nothing writes beside the owner
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
        rec2 = await asyncio.to_thread(_record, alarm_id)
        return ArchiveResult(alarm=alarm_view(rec2, sites) if rec2 else None, done=[_pick("已归档", "archived", lang)])

    return router
