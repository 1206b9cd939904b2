"""Between the alarm service and the escalation ladder: which alarm changes start and stop a ladder, and
how the ladder's lifecycle moves reach the alarm.

How this works: `AlarmLadderBridge.on_actions` is an AlarmService listener. An alarm that is new and open
(not raised suppressed or silenced) starts its escalation, with its place resolved through the roster; an
alarm that leaves the open states, or is suppressed or silenced, stops it. `apply_move` is the ladder's
`on_advance`: it asks the alarm service for the move, and a refused move (the alarm is already further
along, or a person already closed it) is only logged. Acts of people on the console reach the ladder
through the console's own routes (backend/api/console_alarms.py), not through here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alerting.ladder.engine import AdvanceAlarm, AlarmFacts
from alerting.lifecycle import AlarmState
from alerting.model import Action, Alarm, Persist
from backend.alarms.service import AlarmService, MoveRefused, NoSuchAlarm
from backend.escalation.service import EscalationService
from backend.sites.roster import SiteRoster

__all__ = ["AlarmLadderBridge"]

log = logging.getLogger(__name__)

_HELD = frozenset({AlarmState.SUPPRESSED, AlarmState.SILENCED})


class AlarmLadderBridge:
    """Made before the escalation runtime (which needs `apply_move`), attached to its service after."""

    def __init__(self, alarms: AlarmService) -> None:
        self.alarms = alarms
        self._ladder: tuple[EscalationService, SiteRoster] | None = None
        self.started = 0
        self.stopped = 0

    def attach(self, ladder: EscalationService, roster: SiteRoster) -> None:
        self._ladder = (ladder, roster)
        self.alarms.add_listener(self.on_actions)

    @property
    def ladder(self) -> EscalationService:
        assert self._ladder is not None, "attach the escalation service first"
        return self._ladder[0]

    async def on_actions(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if not isinstance(action, Persist):
                continue
            alarm = action.alarm
            raised = any(entry.from_state is None for entry in action.audit)
            if raised and alarm.is_open and alarm.state not in _HELD:
                await self._start(alarm)
            elif action.audit and (not alarm.is_open or alarm.state in _HELD):
                await self._stop(alarm)

    async def _start(self, alarm: Alarm) -> None:
        place = alarm.place
        assert self._ladder is not None
        where = self._ladder[1].where(device=place.device, building=place.building, household=place.household, unit=place.unit)
        facts = AlarmFacts(alarm.id, alarm.alarm_type, alarm.severity, alarm.raised_at_ms, where, alarm.title, alarm.drill)
        await self.ladder.start(facts)
        self.started += 1

    async def _stop(self, alarm: Alarm) -> None:
        if await self.ladder.get(alarm.id) is None:
            return
        try:
            await self.ladder.stop(alarm.id, alarm.state.value)
        except Exception:  # already stopped, or stopped by another process: nothing left to do
            log.debug("ladder of %s was already stopped", alarm.id, exc_info=True)
            return
        self.stopped += 1

    async def apply_move(self, advance: AdvanceAlarm) -> None:
        try:
            await self.alarms.move(advance.alarm_id, advance.move, advance.actor)
        except (MoveRefused, NoSuchAlarm) as exc:
            log.info("ladder move %s on %s not applied: %s", advance.move.value, advance.alarm_id, exc)
