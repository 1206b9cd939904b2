"""Run a drill: simulated devices misbehave on a timeline, the system alarms, simulated people answer.

How this works (`DrillRunner.run()`; one TaskGroup, every task named):

    drill-simulator  a CommunitySimulator of the whole site directory on the drill clock, quiet profile (no
                     random events), publishing to the target's broker as the gateways would (against a running
                     system, only as the gateways the scenario's steps use)
    drill-step-{i}   per runner-level step (an uplink cut): sleeps on the drill clock until its time
    drill-watcher    reads the target's alarm store every `poll_s` (wall); each new drill alarm gets its
                     simulated responders' acts, and the progress display is updated
    drill-act-{n}    one per responder act: sleeps until due, then acts through the target

Device hazards are injected into the fleet up front with their exact drill times (`at=`) and `drill=True`,
so a device's event carries the hazard's time and the drill flag from the simulator through ingest to the
store. t=0 is set one wall second after the simulator is connected. The drill ends `run_for` drill seconds
after t=0 (acts still pending then are cancelled and reported as not done), the simulator stops cleanly,
the runner reads the store until two readings `settle_s` (wall) apart agree (the last messages handled),
and the report is built from that reading, never from what the runner believes happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alerting.model import AuditEntry
from backend.sites.model import SiteDirectory
from backend.store.alarms import AlarmRecord
from simulators.drill.responders import DrillAct, SimulatedResponders
from simulators.drill.scenario import DrillStep, Scenario
from simulators.drill.target import DrillTarget
from simulators.fleet import Fleet
from simulators.live import CommunitySimulator
from simulators.signals import SimulationProfile

__all__ = ["DrillProgress", "DrillRun", "DrillRunner"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DrillProgress:
    drill_s: float = 0.0
    run_for_s: float = 0.0
    steps_done: int = 0
    steps: int = 0
    alarms: int = 0
    acknowledged: int = 0
    on_scene: int = 0
    acts_done: int = 0
    acts_planned: int = 0


@dataclass(slots=True)
class DrillRun:
    """Everything the report needs: what was done when (drill clock), and what the store says."""

    scenario: Scenario
    speed: float
    target: str
    t0_ms: int  # drill clock, Unix ms, of t=0
    end_ms: int
    wall_started: float  # Unix seconds on the wall clock when t=0 was
    wall_seconds: float  # wall time from t=0 to the end of the reading
    hazard_ms: dict[int, int]  # step index -> drill clock ms the hazard began
    alarms: list[AlarmRecord]
    audits: dict[str, list[AuditEntry]]
    ladders: dict[str, dict[str, Any]]
    acts: list[DrillAct]
    simulated_responders: bool
    sent_messages: int
    notes: list[str] = field(default_factory=list)
    observed_ms: dict[str, int] = field(default_factory=dict)  # alarm id -> drill clock when the drill first saw it in the store
    store_still_changing: bool = False  # the store had not settled within settle_max_s when it was read


class DrillRunner:
    def __init__(self, scenario: Scenario, sites: SiteDirectory, target: DrillTarget, *, responders: bool = True,
                 on_progress: Callable[[DrillProgress], None] | None = None, poll_s: float = 0.2, settle_s: float = 1.0,
                 settle_max_s: float = 60.0) -> None:
        self.scenario = scenario
        self.sites = sites
        self.target = target
        self.clock = target.clock
        self.use_responders = responders and bool(scenario.responders)
        self.responders = SimulatedResponders(scenario, sites, target, self.clock)
        self.on_progress = on_progress or (lambda p: None)
        self.poll_s, self.settle_s, self.settle_max_s = poll_s, settle_s, settle_max_s
        self.progress = DrillProgress(run_for_s=scenario.run_for_s, steps=len(scenario.steps))
        self._seen: set[str] = set()
        self._observed: dict[str, int] = {}
        self._act_n = itertools.count(1)

    def _inject(self, fleet: Fleet, step: DrillStep, at: float) -> None:
        dur, p = step.duration_s, step.params
        for device in step.devices:
            match step.action:
                case "smoke":
                    fleet.smoke_alarm(device, at=at, duration_s=dur, drill=True)
                case "self_test":
                    fleet.self_test(device, at=at, drill=True)
                case "tamper":
                    fleet.tamper(device, at=at, duration_s=dur or 300.0, drill=True)
                case "sos":
                    fleet.sos_press(device, at=at, phantom=bool(p.get("phantom", False)), drill=True)
                case "low_battery":
                    fleet.low_battery(device, at=at, drill=True)
                case "cable_heating":
                    fleet.heating(device, at=at, c_per_min=float(p.get("c_per_min", 2.0)), duration_s=dur or 3600.0, drill=True)
                case "leakage_drift":
                    fleet.leakage_drift(device, at=at, ma_per_h=float(p.get("ma_per_h", 600.0)), drill=True)
                case "camera_outage":
                    fleet.camera_outage(device, at=at, duration_s=dur or 300.0, drill=True)
        if step.action == "power_cut" and step.building is not None:
            fleet.power_cut(step.building, at=at, duration_s=dur or 600.0, drill=True)

    async def run(self) -> DrillRun:
        sc, clock, target = self.scenario, self.clock, self.target
        notes: list[str] = []
        beside_real = bool(getattr(target, "only_touched_gateways", False))  # a running system's own gateways are connected too
        async with CommunitySimulator(
            self.sites, target.broker_host, target.broker_port, clock=clock, speed=clock.speed, seed=sc.seed,
            profile=SimulationProfile.quiet(), step_s=max(0.5, clock.speed * 0.05), client_id_prefix="drill",
            username=target.broker_username, password=target.broker_password,
            drill_links=True,  # the drill's gateways: an uplink cut (the Last Will) is the drill's, never a real gateway_offline
            gateways=self._touched_gateways() if beside_real else None,
            farewell=not beside_real,  # the real gateways stay online: no retained offline status when the drill ends
        ) as sim:
            t0 = clock.now_ms() / 1000 + clock.speed * 1.0
            t0_ms = round(t0 * 1000)
            wall_started = time.time() + 1.0
            hazard_ms = {s.index: round((t0 + s.at_s) * 1000) for s in sc.steps}
            for step in sc.steps:
                self._inject(sim.fleet, step, t0 + step.at_s)
            end = t0 + sc.run_for_s
            async with asyncio.TaskGroup() as tg:
                acts: list[asyncio.Task[DrillAct]] = []
                for step in sc.steps:
                    if step.action == "uplink_cut":
                        tg.create_task(self._cut(sim, step, t0), name=f"drill-step-{step.index}")
                watcher = tg.create_task(self._watch(tg, acts, t0, t0_ms, end), name="drill-watcher")
                await clock.sleep_until_ms(round(end * 1000))
                watcher.cancel()
                for task in acts:
                    task.cancel()
            self.progress.drill_s = sc.run_for_s
            sent = sim.stats.total
        alarms, settled = await self._settled(t0_ms)
        end_ms = clock.now_ms()
        if not settled:
            notes.append(f"the alarm store was still changing {self.settle_max_s:g} s (wall) after the drill ended: the system had a "
                         "backlog; alarms written after this reading are not in the report")
        audits = {a.id: await target.audit(a.id) for a in alarms}
        ladders = {a.id: lad for a in alarms if (lad := await target.ladder(a.id)) is not None}
        if self.use_responders and not target.can_act:
            notes.append("the system offers no way for simulated responders to act; only real people's acts are in the report")
        return DrillRun(sc, clock.speed, target.description, t0_ms, end_ms, wall_started, time.time() - wall_started, hazard_ms, alarms,
                        audits, ladders, self.responders.acts, self.use_responders, sent, notes, dict(self._observed), not settled)

    def _touched_gateways(self) -> list[str]:
        """The gateways the scenario's steps use (a running system's other gateways keep only their own links)."""
        out: set[str] = set()
        for step in self.scenario.steps:
            out.update(self.sites.devices[d].gateway for d in step.devices if d in self.sites.devices)
            if step.gateway is not None:
                out.add(step.gateway)
            if step.action == "power_cut" and step.building is not None:
                out.update(d.gateway for d in self.sites.devices.values() if d.building == step.building)
        return sorted(out)

    async def _settled(self, t0_ms: int) -> tuple[list[AlarmRecord], bool]:
        """The store's alarms once the last messages have been handled: read until two readings `settle_s` apart
        agree (ids, states, update times), at most `settle_max_s` (wall). Under load the uplink lane can be
        seconds behind, and an alarm stamped inside the drill may be written after it ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_max_s
        quiet = getattr(self.target, "quiet", None)  # a target that can tell: nothing taken in is still waiting for the rules
        before = await self.target.alarms(t0_ms - 1000)
        while True:
            await asyncio.sleep(self.settle_s)
            now = await self.target.alarms(t0_ms - 1000)
            self._observe(now)
            same = {(a.id, a.state, a.updated_ms) for a in now} == {(a.id, a.state, a.updated_ms) for a in before}
            if same and (quiet is None or await quiet()):  # an empty store a second apart is no proof when the intake is behind
                return now, True
            if loop.time() > deadline:
                return now, False
            before = now

    def _observe(self, rows: list[AlarmRecord]) -> None:
        now = self.clock.now_ms()
        for a in rows:
            self._observed.setdefault(a.id, now)

    async def _cut(self, sim: CommunitySimulator, step: DrillStep, t0: float) -> None:
        await self.clock.sleep_until_ms(round((t0 + step.at_s) * 1000))
        assert step.gateway is not None
        sim.cut_uplink(step.gateway, step.duration_s or self.scenario.run_for_s)

    async def _watch(self, tg: asyncio.TaskGroup, acts: list[asyncio.Task[DrillAct]], t0: float, t0_ms: int, end: float) -> None:
        p = self.progress
        while True:
            now = self.clock.now_ms() / 1000
            p.drill_s = max(0.0, min(now - t0, self.scenario.run_for_s))
            p.steps_done = sum(1 for s in self.scenario.steps if s.at_s <= p.drill_s)
            try:
                rows = await self.target.alarms(t0_ms - 1000)
            except Exception:  # a slow or restarting API: try again next round
                log.exception("could not read the alarms")
                rows = []
            self._observe(rows)
            for alarm in rows:
                if alarm.id in self._seen or not alarm.drill:
                    continue
                self._seen.add(alarm.id)
                if self.use_responders and self.target.can_act:
                    acts.extend(tg.create_task(self.responders.perform(act), name=f"drill-act-{next(self._act_n)}")
                                for act in self.responders.plan(alarm) if act.due_ms <= end * 1000)
            p.alarms = sum(1 for a in rows if a.drill)
            p.acknowledged = sum(1 for a in rows if a.drill and a.state not in ("raised", "notified", "suppressed", "silenced"))
            p.on_scene = sum(1 for a in rows if a.drill and a.state in ("on_scene", "handled", "closed", "archived"))
            p.acts_planned = len(self.responders.acts)
            p.acts_done = sum(1 for a in self.responders.acts if a.done_ms is not None)
            self.on_progress(p)
            with contextlib.suppress(TimeoutError):
                await asyncio.sleep(self.poll_s)
