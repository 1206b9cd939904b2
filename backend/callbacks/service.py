"""The SOS call-back desk (回访): what the console and the responder's phone ask about an SOS press's call-back.

How this works: the call-back itself is the ladder's (alerting.ladder: `Callback` in the escalation state, its
deadline re-derived from the stored opening and the policy's `answer_within`, so a restart loses nothing). This
desk checks a request against the stored facts (the alarm exists and lies in the caller's territory, its policy
opens a call-back, no outcome yet, the alarm can still take the moves the outcome needs) *before* anything is
written, records the outcome through `EscalationService.record_callback` (one ladder step: audited with the actor
and time in the escalation log; no answer or needs help pages the family and climbs there), and then makes the
outcome's lifecycle moves through the alarm service as the caller (a person's moves, each in the alarm's audit):

- 接通·平安 (answered_fine): the legal path to closed (acknowledge → finish → verify_close), the outcome as the note;
- 误按 (false_press): mark_false with its reason;
- 接通·需要帮助 / 无人接听: no move; the ladder has already climbed.

The ladder stops when the bridge observes the close. Times a person reads are in the site's zone (Beijing).

Exceptions (each carries the HTTP status and a Chinese sentence for the route to answer with):

    CallbackDeskError
     ├── CallbackNotFound     no such alarm in the caller's territory (404)
     ├── CallbackConflict     not an SOS, an outcome twice, the alarm already over (409)
     └── CallbackInvalid      a false press without its reason (422)
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Protocol

from alerting.ladder import CallbackError, CallbackOutcome, CallbackRecorded, EscalationState, callback_deadline
from alerting.lifecycle import AlarmState, Move
from alerting.model import Alarm
from backend.alarms.store import AlarmRecord, AlarmStore
from backend.errors import BackendError
from backend.escalation.service import EscalationService
from backend.sites.model import SiteDirectory

__all__ = [
    "OUTCOME_ZH",
    "CallbackConflict",
    "CallbackDesk",
    "CallbackDeskError",
    "CallbackInvalid",
    "CallbackNotFound",
    "Place",
]

log = logging.getLogger(__name__)

OUTCOME_ZH: Final = {
    CallbackOutcome.ANSWERED_FINE: "接通·平安",
    CallbackOutcome.NEEDS_HELP: "接通·需要帮助",
    CallbackOutcome.NO_ANSWER: "无人接听",
    CallbackOutcome.FALSE_PRESS: "误按",
}
# the lifecycle moves that take an open alarm to closed, by its state (the table's legal path)
_CLOSE_PATH: Final[dict[AlarmState, tuple[Move, ...]]] = {
    AlarmState.RAISED: (Move.ACKNOWLEDGE, Move.FINISH, Move.VERIFY_CLOSE),
    AlarmState.NOTIFIED: (Move.ACKNOWLEDGE, Move.FINISH, Move.VERIFY_CLOSE),
    AlarmState.ACKNOWLEDGED: (Move.FINISH, Move.VERIFY_CLOSE),
    AlarmState.EN_ROUTE: (Move.FINISH, Move.VERIFY_CLOSE),
    AlarmState.ON_SCENE: (Move.FINISH, Move.VERIFY_CLOSE),
    AlarmState.HANDLED: (Move.VERIFY_CLOSE,),
    AlarmState.AWAITING_VERIFICATION: (Move.VERIFY_CLOSE,),
}
_FALSE_FROM: Final = frozenset({AlarmState.RAISED, AlarmState.NOTIFIED, AlarmState.ACKNOWLEDGED, AlarmState.EN_ROUTE, AlarmState.ON_SCENE,
                                AlarmState.AWAITING_VERIFICATION})


class CallbackDeskError(BackendError):
    status: int = 400

    def __init__(self, zh: str) -> None:
        self.zh = zh
        super().__init__(zh)


class CallbackNotFound(CallbackDeskError):
    status = 404


class CallbackConflict(CallbackDeskError):
    status = 409


class CallbackInvalid(CallbackDeskError):
    status = 422


class Place(Protocol):
    """The caller's territory (backend.api.auth.Territory)."""

    def covers(self, building_id: str | None, grid_id: str | None = None, community_id: str | None = None) -> bool: ...


class Mover(Protocol):
    async def move(self, alarm_id: str, move: Move | str, actor: str, *, note: str = "", until_ms: int | None = None) -> Alarm: ...


@dataclass(frozen=True, slots=True)
class _Found:
    record: AlarmRecord
    state: EscalationState


class CallbackDesk:
    def __init__(self, escalation: EscalationService, moves: Mover, alarms: AlarmStore, sites: SiteDirectory | None, *,
                 utc_offset_min: int = 480) -> None:
        self.escalation = escalation
        self.moves = moves
        self.alarms = alarms
        self.sites = sites
        self.tz = timezone(timedelta(minutes=utc_offset_min))

    # -- reading ------------------------------------------------------------------------------------------------
    async def open_callbacks(self, territory: Place) -> list[dict[str, Any]]:
        """Call-backs waiting for their outcome in `territory`, the earliest deadline first."""
        out = []
        for state in await self.escalation.open_callbacks():
            rec = await asyncio.to_thread(self._record, state.alarm_id)
            if rec is not None and rec.is_open and territory.covers(rec.building_id, rec.grid_id, rec.community_id):
                out.append(self._view(rec, state))
        return sorted(out, key=lambda v: (v["deadline_ms"] or 0, v["alarm_id"]))

    async def callback(self, alarm_id: str, territory: Place) -> dict[str, Any]:
        found = await self._find(alarm_id, territory)
        return self._view(found.record, found.state)

    # -- the one act ----------------------------------------------------------------------------------------------
    async def record(self, alarm_id: str, outcome: CallbackOutcome, actor: str, territory: Place, note: str = "") -> dict[str, Any]:
        """Record the call-back's outcome as `actor` (once), then make the moves it needs. Refused: nothing written."""
        note = note.strip()
        if outcome is CallbackOutcome.FALSE_PRESS and len(note) < 2:
            raise CallbackInvalid("误按需要写明原因（例如：老人说不小心碰到了按钮），才能按误报关闭")
        found = await self._find(alarm_id, territory)
        cb, rec = found.state.callback, found.record
        assert cb is not None
        if cb.outcome is not None:
            raise CallbackConflict(f"这次回访已记录为「{OUTCOME_ZH[cb.outcome]}」（{cb.actor}，{self._clock(cb.outcome_ms)}），不能重复记录")
        if not rec.is_open or found.state.stopped is not None:
            raise CallbackConflict(f"报警已结束（{_STATE_ZH.get(rec.state, rec.state)}），回访无需再记录")
        state = AlarmState(rec.state)
        if outcome is CallbackOutcome.ANSWERED_FINE and state not in _CLOSE_PATH:
            raise CallbackConflict(f"报警处于「{_STATE_ZH.get(rec.state, rec.state)}」状态，不能按平安关闭：请先解除后再记录")
        if outcome is CallbackOutcome.FALSE_PRESS and state not in _FALSE_FROM:
            raise CallbackConflict(f"报警处于「{_STATE_ZH.get(rec.state, rec.state)}」状态，不能按误报关闭")
        try:
            after = await self.escalation.record_callback(alarm_id, outcome, actor, note)
        except CallbackRecorded as exc:  # another console got there first
            raise CallbackConflict(f"这次回访已记录为「{OUTCOME_ZH[exc.outcome]}」，不能重复记录") from exc
        except CallbackError as exc:
            raise CallbackConflict("报警已结束，回访无需再记录") from exc
        words = f"回访：{OUTCOME_ZH[outcome]}" + (f"。{note}" if note else "")
        if outcome is CallbackOutcome.ANSWERED_FINE:
            for move in _CLOSE_PATH[state]:
                await self.moves.move(alarm_id, move, actor, note=words)
        elif outcome is CallbackOutcome.FALSE_PRESS:
            await self.moves.move(alarm_id, Move.MARK_FALSE, actor, note=words)
        rec2 = await asyncio.to_thread(self._record, alarm_id)
        return self._view(rec2 or rec, after)

    # -- helpers --------------------------------------------------------------------------------------------------
    def _record(self, alarm_id: str) -> AlarmRecord | None:
        alarm = self.alarms.get(alarm_id)
        return None if alarm is None else self.alarms.record(alarm)

    async def _find(self, alarm_id: str, territory: Place) -> _Found:
        rec = await asyncio.to_thread(self._record, alarm_id)
        if rec is None or not territory.covers(rec.building_id, rec.grid_id, rec.community_id):
            raise CallbackNotFound(f"你的辖区内没有报警 {alarm_id}：请核对编号")
        state = await self.escalation.get(alarm_id)
        if state is None or state.callback is None:
            raise CallbackConflict(f"报警 {alarm_id} 不是一键呼救（{rec.alarm_type}），没有回访任务")
        return _Found(rec, state)

    def _clock(self, at_ms: int | None) -> str:
        if at_ms is None:
            return ""
        return datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(self.tz).strftime("%H:%M:%S")

    def _view(self, rec: AlarmRecord, state: EscalationState) -> dict[str, Any]:
        cb = state.callback
        assert cb is not None
        deadline = callback_deadline(state, self.escalation.policies)
        rung = self.escalation.policies.rungs.get(cb.rung)
        hh = self.sites.households.get(rec.household_id or "") if self.sites is not None else None
        v = hh.vulnerable if hh is not None else None
        family = [{"name": f.name, "relation": f.relation, "phone": f.phone} for f in (v.family_contacts if v else ())]
        building = self.sites.buildings.get(rec.building_id or "") if self.sites is not None else None
        where = " ".join(p for p in (building.name if building is not None else rec.building_id or "",
                                     f"{rec.unit}单元" if rec.unit is not None else "", hh.room if hh else "") if p)
        return {
            "alarm_id": rec.id, "alarm_type": rec.alarm_type, "title": rec.title,
            "drill": rec.drill, "alarm_state": rec.state, "building_id": rec.building_id, "household": rec.household_id, "place": where or "位置未知",
            "resident_phone": hh.phone if hh is not None else None, "family": family,
            "rung": cb.rung, "rung_label": rung.label if rung is not None else cb.rung,
            "opened_ms": cb.opened_ms, "deadline_ms": deadline, "deadline_text": self._clock(deadline),
            "expired_ms": cb.expired_ms, "climbed_ms": cb.climbed_ms,
            "outcome": cb.outcome.value if cb.outcome is not None else None,
            "outcome_text": OUTCOME_ZH[cb.outcome] if cb.outcome is not None else None,
            "outcome_ms": cb.outcome_ms, "actor": cb.actor, "note": cb.note, "open": cb.open and state.stopped is None and rec.is_open,
            "outcomes": [{"outcome": o.value, "text": OUTCOME_ZH[o]} for o in CallbackOutcome],
        }


_STATE_ZH: Final = {"raised": "报警", "notified": "已通知", "acknowledged": "已确认", "en_route": "已出发", "on_scene": "已到场",
                    "handled": "处置完成", "closed": "已关闭", "archived": "已归档", "false_alarm": "误报", "suppressed": "被抑制",
                    "silenced": "维护静默", "awaiting_verification": "待核实"}
