"""Working an alarm together (协同处置, issue 17): an assignee, and free comments with photos, beside the lifecycle.

How this works: none of this is a lifecycle move, so none of it goes through the alarm service or changes an
alarm's state. Three append-only tables of the alarm database (backend/alarms/schema.py, migration 0004_collab):
`alarm_assignments` (each row the audited act: who assigned, when, to whom, with a note; the alarm's current assignee
is its newest row), `alarm_comments` and `alarm_comment_photos`. Each write is one transaction and, once committed,
one typed event on the centre's stream (backend.stream `AlarmAssigned`, `CommentAdded`), which the live feed turns
into an `assignment` or `comment` event for every console of the alarm's territory.

A comment's text is cleaned like any text a person types: line ends made `\n`, control characters (but newline
and tab) and bidirectional overrides removed, trimmed; empty or longer than `comment_max_chars` is refused. Its
photos are checked before anything is written (size, then type by their first bytes: JPEG, PNG or WebP only,
backend.workorders.photos.sniff), stored like the work orders' (PhotoFolder: `<alarm folder>/<sha256>.<ext>`,
fsynced, renamed into place), and removed again when the comment's rows cannot be committed.

Who may be assigned is the caller's business (the API offers the alarm's community's responders and the officers
whose territory holds it, backend/api/console_collab.py); this module records the choice. An archived alarm takes
no new assignment or comment: its record is filed.

Exceptions (a Chinese and an English sentence for the person to act on):

    CollabError
     ├── NoAlarm            no such alarm, or no such photo of it (the API answers 404)
     ├── CollabRefused      empty or too long a comment, too many photos, an unknown assignee (422)
     ├── CollabConflict     the alarm is archived, or already assigned to that person (409)
     ├── PhotoRefused       too large (413) or not a JPEG / PNG / WebP (415)
     └── PhotoStoreUnavailable  the photos folder cannot be written (also backend.errors.Unavailable: 503)
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from alerting.lifecycle import AlarmState
from backend.alarms.schema import alarm_assignments, alarm_comment_photos, alarm_comments, alarms
from backend.alarms.store import AlarmStore, translated
from backend.errors import BackendError, Unavailable
from backend.stream import AlarmAssigned, CentreStream, CommentAdded
from backend.workorders.photos import PhotoFolder, StoredPhoto, sniff
from broker.clock import Clock

__all__ = ["AlarmCollab", "Assignment", "CollabConflict", "CollabError", "CollabRefused", "CollabSettings", "Comment", "NoAlarm", "Person",
           "PhotoRefused", "PhotoStoreUnavailable", "clean_text", "collab_timeline", "current_assignees"]

log = logging.getLogger(__name__)

# C0 and C1 control characters but tab and newline; the bidirectional embeddings, overrides and isolates, which
# can make a comment read differently from what it says.
_UNWANTED: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
ROLE_ZH: Final = {"grid_worker": "网格员", "building_leader": "楼栋长", "unit_leader": "单元长", "fire_station_head": "微型消防站站长",
                  "fire_station_member": "微型消防站队员", "volunteer": "志愿者", "duty_officer": "值班员", "admin": "管理员",
                  "micro_fire_station": "微型消防站"}


class CollabError(BackendError):
    def __init__(self, zh: str, en: str) -> None:
        self.zh, self.en = zh, en
        super().__init__(en)

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


class NoAlarm(CollabError):
    pass


class CollabRefused(CollabError):
    pass


class CollabConflict(CollabError):
    pass


class PhotoRefused(CollabError):
    def __init__(self, zh: str, en: str, status: int) -> None:
        self.status = status
        super().__init__(zh, en)


class PhotoStoreUnavailable(CollabError, Unavailable):
    """The photos folder cannot be written now: nothing was recorded."""


@dataclass(frozen=True, slots=True)
class CollabSettings:
    comment_max_chars: int = 1000
    photo_max_bytes: int = 10 * 1024 * 1024
    max_photos: int = 4

    @classmethod
    def of(cls, config: Any) -> CollabSettings:
        """From backend.settings.AlarmsConfig."""
        return cls(config.comment_max_chars, config.comment_photo_max_bytes, config.comment_max_photos)


@dataclass(frozen=True, slots=True)
class Person:
    """Someone an alarm may be assigned to: a responder of the site directory, or an officer's login (`user:<name>`)."""

    id: str
    name: str
    role: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "role_zh": ROLE_ZH.get(self.role, self.role)}


@dataclass(frozen=True, slots=True)
class Assignment:
    alarm_id: str
    at_ms: int
    actor: str
    assignee_id: str
    assignee_name: str
    assignee_role: str
    note: str
    drill: bool

    def as_json(self) -> dict[str, Any]:
        return {**{f: getattr(self, f) for f in self.__slots__}, "assignee_role_zh": ROLE_ZH.get(self.assignee_role, self.assignee_role)}


@dataclass(frozen=True, slots=True)
class Comment:
    id: str
    alarm_id: str
    at_ms: int
    author: str
    text: str
    drill: bool
    photos: tuple[dict[str, Any], ...] = ()  # id, sha256, content_type, size_bytes, url

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "alarm_id": self.alarm_id, "at_ms": self.at_ms, "author": self.author, "text": self.text, "drill": self.drill,
                "photos": list(self.photos)}


def clean_text(text: str, max_chars: int) -> str:
    """A person's comment as stored: line ends `\\n`, no control characters but newline and tab, trimmed; refused
    (CollabRefused) when nothing is left or it is longer than `max_chars`."""
    cleaned = _UNWANTED.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not cleaned:
        raise CollabRefused("评论不能为空", "the comment is empty")
    if len(cleaned) > max_chars:
        raise CollabRefused(f"评论过长（{len(cleaned)} 字），最多 {max_chars} 字", f"the comment is too long ({len(cleaned)} characters; at most {max_chars})")
    return cleaned


def _folder(alarm_id: str) -> str:
    """The photos' folder of an alarm (PhotoFolder names take letters, digits, _ and - only; the files are named by
    their checksum, so two alarm ids that map to one folder only share identical files)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", alarm_id)[:40] or "_"


def _photo_url(alarm_id: str, photo_id: str) -> str:
    return f"/api/alarms/{alarm_id}/photos/{photo_id}"


def current_assignees(engine: sa.Engine, alarm_ids: Sequence[str]) -> dict[str, Assignment]:
    """Each alarm's current assignee (its newest assignment), for the board: one query for a page of alarms."""
    if not alarm_ids:
        return {}
    t = alarm_assignments
    newest = sa.select(sa.func.max(t.c.id)).where(t.c.alarm_id.in_(list(alarm_ids))).group_by(t.c.alarm_id).scalar_subquery()
    q = sa.select(*[t.c[f] for f in Assignment.__slots__]).where(t.c.id.in_(newest))
    with translated("could not read the alarm assignments"), engine.connect() as conn:
        return {r.alarm_id: Assignment(**r._mapping) for r in conn.execute(q)}


def _assignments(engine: sa.Engine, alarm_id: str) -> list[Assignment]:
    t = alarm_assignments
    q = sa.select(*[t.c[f] for f in Assignment.__slots__]).where(t.c.alarm_id == alarm_id).order_by(t.c.id)
    with translated("could not read the alarm assignments"), engine.connect() as conn:
        return [Assignment(**r._mapping) for r in conn.execute(q)]


def _comments(engine: sa.Engine, alarm_id: str) -> list[Comment]:
    c, p = alarm_comments, alarm_comment_photos
    with translated("could not read the alarm comments"), engine.connect() as conn:
        photos: dict[str, list[dict[str, Any]]] = {}
        for r in conn.execute(sa.select(p.c.id, p.c.comment_id, p.c.sha256, p.c.content_type, p.c.size_bytes).where(p.c.alarm_id == alarm_id)
                              .order_by(p.c.id)):
            photos.setdefault(r.comment_id, []).append({"id": r.id, "sha256": r.sha256, "content_type": r.content_type, "size_bytes": r.size_bytes,
                                                        "url": _photo_url(alarm_id, r.id)})
        rows = conn.execute(sa.select(c.c.id, c.c.alarm_id, c.c.at_ms, c.c.author, c.c.text, c.c.drill).where(c.c.alarm_id == alarm_id)
                            .order_by(c.c.at_ms, c.c.id))
        return [Comment(r.id, r.alarm_id, r.at_ms, r.author, r.text, r.drill, tuple(photos.get(r.id, ()))) for r in rows]


def collab_timeline(engine: sa.Engine, alarm_id: str, lang: str = "zh") -> list[dict[str, Any]]:
    """The alarm's assignments and comments as timeline entries (GET /api/alarms/{id}): `what` already in the reader's
    language (the console shows it as the entry's label), the comment's text as the note, its photos' URLs."""
    zh = lang != "en"
    out: list[dict[str, Any]] = []
    previous: str | None = None
    for a in _assignments(engine, alarm_id):
        role = ROLE_ZH.get(a.assignee_role, a.assignee_role) if zh else a.assignee_role.replace("_", " ")
        verb = ("改派给" if previous else "指派给") if zh else ("Re-assigned to" if previous else "Assigned to")
        what = f"{verb} {a.assignee_name}（{role}）" if zh else f"{verb} {a.assignee_name} ({role})"
        out.append({"at_ms": a.at_ms, "source": "assignment", "actor": a.actor, "what": what, "note": a.note, "assignee_id": a.assignee_id,
                    "assignee_name": a.assignee_name})
        previous = a.assignee_id
    for c in _comments(engine, alarm_id):
        n = len(c.photos)
        what = ("评论" + (f"（{n} 张照片）" if n else "")) if zh else ("Comment" + (f" ({n} photo{'s' if n > 1 else ''})" if n else ""))
        out.append({"at_ms": c.at_ms, "source": "comment", "actor": c.author, "what": what, "note": c.text, "comment_id": c.id,
                    "photos": [p["url"] for p in c.photos]})
    return out


class AlarmCollab:
    """Assignments and comments of alarms. Reads block (call them off the event loop); `assign` and `comment` are async:
    they write in a worker thread, then publish on the stream."""

    def __init__(self, store: AlarmStore, clock: Clock, photos_dir: Path, *, stream: CentreStream | None = None,
                 settings: CollabSettings | None = None) -> None:
        self.store = store
        self.engine = store.engine
        self.clock = clock
        self.stream = stream
        self.photos = PhotoFolder(photos_dir)
        self.settings = settings or CollabSettings()

    # -- reading --------------------------------------------------------------------------------------------------------
    def assignments(self, alarm_id: str) -> list[Assignment]:
        return _assignments(self.engine, alarm_id)

    def comments(self, alarm_id: str) -> list[Comment]:
        return _comments(self.engine, alarm_id)

    def current(self, alarm_id: str) -> Assignment | None:
        return current_assignees(self.engine, [alarm_id]).get(alarm_id)

    def photo_file(self, alarm_id: str, photo_id: str) -> tuple[dict[str, Any], Path]:
        p = alarm_comment_photos
        with translated("could not read the comment photos"), self.engine.connect() as conn:
            row = conn.execute(sa.select(p).where(p.c.id == photo_id, p.c.alarm_id == alarm_id)).first()
        if row is None:
            raise NoAlarm(f"警报 {alarm_id} 没有编号为 {photo_id} 的照片", f"alarm {alarm_id} has no photo {photo_id!r}")
        path = self.photos.path(row.file_name)
        if not path.is_file():
            raise NoAlarm(f"照片 {photo_id} 的文件已不在数据目录中，请联系管理员", f"the file of photo {photo_id} is missing; tell the administrator")
        return dict(row._mapping), path

    def _alarm(self, alarm_id: str) -> tuple[AlarmState, bool]:
        with translated("could not read the alarm store"), self.engine.connect() as conn:
            row = conn.execute(sa.select(alarms.c.state, alarms.c.drill).where(alarms.c.id == alarm_id)).first()
        if row is None:
            raise NoAlarm(f"没有编号为 {alarm_id} 的警报", f"no alarm {alarm_id!r}")
        state = AlarmState(row.state)
        return state, bool(row.drill)

    # -- writing --------------------------------------------------------------------------------------------------------
    async def assign(self, alarm_id: str, actor: str, person: Person, note: str = "") -> Assignment:
        """Assign (or re-assign) the alarm to `person`; refused on an archived alarm and when it is theirs already."""
        note = _UNWANTED.sub("", note).strip()[:500]
        state, drill = await asyncio.to_thread(self._alarm, alarm_id)
        if state is AlarmState.ARCHIVED:
            raise CollabConflict("警报已归档，不能再指派", "the alarm is archived: it takes no assignment")
        current = await asyncio.to_thread(self.current, alarm_id)
        if current is not None and current.assignee_id == person.id:
            raise CollabConflict(f"该警报已指派给 {person.name}", f"the alarm is already assigned to {person.name}")
        a = Assignment(alarm_id, self.clock.now_ms(), actor[:64], person.id[:96], person.name[:64], person.role[:32], note, drill)

        def write() -> None:
            with translated("could not record the assignment"), self.engine.begin() as conn:
                conn.execute(sa.insert(alarm_assignments).values(**{f: getattr(a, f) for f in Assignment.__slots__}))

        await asyncio.to_thread(write)
        log.info("alarm %s assigned to %s (%s) by %s", alarm_id, person.id, person.role, actor)
        if self.stream is not None:
            await self.stream.publish([AlarmAssigned(alarm_id, a.assignee_id, a.assignee_name, a.assignee_role, a.actor, a.note, a.at_ms, drill)])
        return a

    def check_photo(self, data: bytes) -> str:
        """The photo's type, or PhotoRefused (too large: 413; not a JPEG / PNG / WebP by its bytes: 415)."""
        limit = self.settings.photo_max_bytes
        if len(data) > limit:
            raise PhotoRefused(f"照片过大（{len(data) / 1048576:.1f} MB），上限 {limit / 1048576:.0f} MB：请压缩后再传",
                               f"the photo is too large ({len(data)} bytes; at most {limit}): shrink it", 413)
        kind = sniff(data[:16])
        if kind is None:
            raise PhotoRefused("只接受 JPEG、PNG 或 WebP 格式的照片（按文件内容判断，与文件名无关）",
                               "only JPEG, PNG or WebP photos are taken (judged by the file's bytes, not its name)", 415)
        return kind

    async def comment(self, alarm_id: str, author: str, text: str, photos: Sequence[bytes] = ()) -> Comment:
        """Add a comment (with photos) to the alarm's record; its state does not change. Everything is checked before
        anything is written; the photos' files are removed again if the rows cannot be committed."""
        body = clean_text(text, self.settings.comment_max_chars)
        if len(photos) > self.settings.max_photos:
            raise CollabRefused(f"每条评论最多 {self.settings.max_photos} 张照片", f"at most {self.settings.max_photos} photos per comment")
        kinds = [self.check_photo(p) for p in photos]
        state, drill = await asyncio.to_thread(self._alarm, alarm_id)
        if state is AlarmState.ARCHIVED:
            raise CollabConflict("警报已归档，不能再添加评论", "the alarm is archived: it takes no more comments")
        now = self.clock.now_ms()
        cid = f"C{uuid.uuid4().hex[:16]}"
        stored: list[StoredPhoto] = []
        try:
            for data, kind in zip(photos, kinds, strict=True):
                stored.append(await asyncio.to_thread(self.photos.put, _folder(alarm_id), data, kind))
        except OSError as exc:
            for s in stored:
                self.photos.discard(s)
            log.warning("alarm comments: cannot store a photo under %s: %s", self.photos.root, exc)
            raise PhotoStoreUnavailable("照片存储暂时不可用，本条评论未保存：请稍后重试，并告知管理员检查数据目录",
                                        "the photo store is unavailable, so the comment was not saved: try again, and tell the administrator") from exc
        ids = [f"P{uuid.uuid4().hex[:16]}" for _ in stored]
        rows: list[dict[str, Any]] = [{"id": pid, "comment_id": cid, "alarm_id": alarm_id, "sha256": s.sha256, "content_type": s.content_type,
                 "size_bytes": s.size_bytes, "file_name": s.file_name} for pid, s in zip(ids, stored, strict=True)]
        c = Comment(cid, alarm_id, now, author[:64], body, drill,
                    tuple({"id": r["id"], "sha256": r["sha256"], "content_type": r["content_type"], "size_bytes": r["size_bytes"],
                           "url": _photo_url(alarm_id, pid)} for pid, r in zip(ids, rows, strict=True)))

        def write() -> None:
            with translated("could not record the comment"), self.engine.begin() as conn:
                conn.execute(sa.insert(alarm_comments).values(id=cid, alarm_id=alarm_id, at_ms=now, author=c.author, text=body, drill=drill))
                if rows:
                    conn.execute(sa.insert(alarm_comment_photos), rows)

        try:
            await asyncio.to_thread(write)
        except BaseException:
            for s in stored:
                self.photos.discard(s)
            raise
        log.info("alarm %s: comment %s by %s (%d photos)", alarm_id, cid, author, len(rows))
        if self.stream is not None:
            await self.stream.publish([CommentAdded(alarm_id, cid, c.author, body, tuple(ids), now, drill)])
        return c
