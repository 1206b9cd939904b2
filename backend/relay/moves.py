"""Moves on alarms from any backend process, applied by the rules leader through the uplink queue.

How this works: in a scaled-out deployment only the rules leader runs the alarm service (the one writer of
alarm state), but every backend serves the console and the one-tap links and steps the escalation ladder.
`QueuedMoves` is what those give the API (it has the shape of backend.api.deps.AlarmMoves): a console action
or a responder's one-tap answer becomes a `move` (or `window`) row in the uplink queue, the leader applies it
in order with the device stream, its bridge lets the ladder observe the committed move, and it writes a
result; the action waits for that result (`relay.move_timeout_s`), then answers with the alarm as stored.
The ladder itself asks for no moves: it learns of every move from the leader's committed result.

Errors as the API knows them: `NoSuchAlarm`, `MoveRefused` (backend.alarms.service); no leader answering in
time is `NotWired("the rules leader")` (HTTP 503).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

import msgspec

from alerting.lifecycle import Move
from alerting.model import Alarm
from backend.alarms.service import MoveRefused, NoSuchAlarm
from backend.alarms.store import AlarmStore
from backend.api.deps import NotWired
from backend.relay.leader import MoveCommand, WindowCommand
from backend.relay.queue import QueueUnavailable, UplinkQueue
from backend.settings import RelaySettings
from broker.clock import Clock

__all__ = ["QueuedMoves"]

log = logging.getLogger(__name__)
_POLL_S = 0.05  # a console action's result is usually there within one leader round (milliseconds)


class _Result(msgspec.Struct):
    ok: bool
    error: str | None = None
    reason: str = ""
    move: str = ""
    silenced: int = 0


class QueuedMoves:
    def __init__(self, url: str, store: AlarmStore, clock: Clock, settings: RelaySettings) -> None:
        self.queue = UplinkQueue(url)
        self.store = store
        self.clock = clock
        self.settings = settings
        self._exec = ThreadPoolExecutor(1, thread_name_prefix="relay-moves")

    def close(self) -> None:
        self._exec.submit(self.queue.close)
        self._exec.shutdown(wait=True)

    async def _put(self, kind: str, body: bytes) -> int:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._exec, self.queue.put_command, kind, f"cmd/{uuid.uuid4()}", body, self.clock.now_ms())
        except QueueUnavailable as exc:
            raise NotWired(f"the rules queue ({exc.why})") from exc

    async def _await_result(self, row_id: int, what: str) -> _Result:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.move_timeout_s
        while loop.time() < deadline:
            text = await loop.run_in_executor(self._exec, self.queue.result, row_id)
            if text is not None:
                return msgspec.json.decode(text, type=_Result)
            await asyncio.sleep(_POLL_S)
        raise NotWired(f"the rules leader (no answer to {what} within {self.settings.move_timeout_s:g} s)")

    async def move(self, alarm_id: str, move: Move | str, actor: str, *, note: str = "", until_ms: int | None = None) -> Alarm:
        m = Move(move)
        row = await self._put("move", msgspec.json.encode(MoveCommand(alarm_id, m.value, actor, note, until_ms)))
        r = await self._await_result(row, f"{m.value} on {alarm_id}")
        if r.error == "no_such_alarm":
            raise NoSuchAlarm(alarm_id)
        if not r.ok:
            raise MoveRefused(alarm_id, m.value, r.reason)
        alarm = await asyncio.to_thread(self.store.get, alarm_id)
        if alarm is None:
            raise NoSuchAlarm(alarm_id)
        return alarm

    async def add_window(self, subject: str, until_ms: int, author: str, note: str = "") -> int:
        row = await self._put("window", msgspec.json.encode(WindowCommand(subject, until_ms, author, note)))
        r = await self._await_result(row, f"a maintenance window on {subject}")
        if not r.ok:
            raise MoveRefused(subject, "silence", r.reason)
        return r.silenced
