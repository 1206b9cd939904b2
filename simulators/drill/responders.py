"""Simulated responders: people who answer drill alarms after drawn response times, without people.

How this works: for every drill alarm the runner sees in the store, `SimulatedResponders.plan(alarm)` asks
each profile of the scenario that answers that alarm type for its delays (drawn from the profile's
distributions with the drill's seeded RNG, so a drill is repeatable) and returns the acts, each at a drill
time counted from the alarm's `raised_at_ms` in the store: an SOS call-back's outcome (`callback:<outcome>`),
acknowledge, then depart, on scene, handled, and the duty officer's verify-and-close. `perform(act)` sleeps on the drill clock until the act is due and makes
it through the target (the alarm service's move, the ladder's respond, or the API), recording what the
system answered. Only drill alarms are ever touched: a real alarm during a drill belongs to real people.

Who acts is resolved from the site directory for the alarm's place: the grid worker of the building's grid,
the building's leader, the head of the community's micro fire station, a volunteer of the community, the
community's duty officer, or the household's family. (Roster shifts are not consulted: a drill names seats.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from backend.sites.model import Role, SiteDirectory
from backend.store.alarms import AlarmRecord
from broker.clock import Clock
from simulators.drill.scenario import ResponderProfile, Scenario
from simulators.drill.target import DrillTarget

__all__ = ["DrillAct", "SimulatedResponders", "needed_moves", "rung_of_actor"]

# The lifecycle move each step of a response makes.
STEP_MOVES: Final = (("acknowledge", "acknowledge"), ("depart", "depart"), ("on_scene", "arrive"), ("handle", "finish"))
_RUNG_OF_ROLE: Final = {
    Role.GRID_WORKER: "grid_worker", Role.BUILDING_LEADER: "building_leader", Role.UNIT_LEADER: "building_leader",
    Role.FIRE_STATION_HEAD: "fire_station", Role.FIRE_STATION_MEMBER: "fire_station", Role.VOLUNTEER: "volunteer",
    Role.DUTY_OFFICER: "duty_officer",
}


def needed_moves(scenario: Scenario) -> set[str]:
    """Every lifecycle move the scenario's simulated responders may make (so a target can refuse them up front)."""
    out: set[str] = set()
    for profile in scenario.responders:
        out.update(move for key, move in STEP_MOVES if getattr(profile, key) is not None)
        if profile.close:
            out.add("verify_close")
        if profile.callback is not None:
            out.add("callback")
    return out


def rung_of_actor(sites: SiteDirectory, actor: str) -> str:
    r = sites.responders.get(actor)
    if r is not None:
        return _RUNG_OF_ROLE.get(r.role, r.role.value)
    if actor.startswith("family:"):
        return "family"
    return "system" if actor == "system" else "other"


@dataclass(slots=True)
class DrillAct:
    """One planned act of a simulated responder, and what the system answered (mutable: filled in when done)."""

    alarm_id: str
    rung: str
    actor: str
    move: str
    due_ms: int  # drill clock
    done_ms: int | None = None
    ok: bool = False
    via: str = ""
    refused: str = ""

    def as_json(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__}


class SimulatedResponders:
    def __init__(self, scenario: Scenario, sites: SiteDirectory, target: DrillTarget, clock: Clock, seed: int | None = None) -> None:
        self.scenario = scenario
        self.sites = sites
        self.target = target
        self.clock = clock
        self.rng = random.Random(scenario.seed if seed is None else seed)
        self.acts: list[DrillAct] = []

    def who(self, profile: ResponderProfile, alarm: AlarmRecord) -> str:
        if profile.who:
            return profile.who
        s, b = self.sites, self.sites.buildings.get(alarm.building_id or "")
        community = alarm.community_id or (s.community_of_building(b.id) if b else next(iter(sorted(s.communities)), ""))
        people = sorted(s.responders.values(), key=lambda r: r.id)
        match profile.rung:
            case "grid_worker":
                hits = [r.id for r in people if r.role is Role.GRID_WORKER and b is not None and r.grid == b.grid]
            case "building_leader":
                hits = [r.id for r in people if r.role is Role.BUILDING_LEADER and b is not None and r.building == b.id]
            case "fire_station":
                hits = [r.id for r in people if r.role is Role.FIRE_STATION_HEAD and r.community == community]
            case "volunteer":
                hits = [r.id for r in people if r.role is Role.VOLUNTEER and r.community == community]
            case "duty_officer":
                hits = [r.id for r in people if r.role is Role.DUTY_OFFICER and r.community == community]
            case _:  # the household's first family contact, as the ladder names it (backend.sites.roster: family:<household>:<n>)
                hits = [f"family:{alarm.household_id or alarm.device_id}:0"]
        return hits[0] if hits else f"drill-{profile.rung}"

    def duty_officer(self, alarm: AlarmRecord) -> str:
        s = self.sites
        b = s.buildings.get(alarm.building_id or "")
        community = alarm.community_id or (s.community_of_building(b.id) if b else "")
        hits = sorted(r.id for r in s.responders.values() if r.role is Role.DUTY_OFFICER and (not community or r.community == community))
        return hits[0] if hits else "drill-duty-officer"

    def plan(self, alarm: AlarmRecord) -> list[DrillAct]:
        """The acts on this alarm, in the order the profiles list them (seeded draws: the same drill, the same plan)."""
        if not alarm.drill:
            return []
        out: list[DrillAct] = []
        for profile in self.scenario.responders:
            if not profile.answers(alarm.alarm_type):
                continue
            actor = self.who(profile, alarm)
            t = alarm.raised_at_ms
            if profile.callback is not None:  # the SOS call-back (回访): its outcome, counted from the press
                outcome, after = profile.callback
                out.append(DrillAct(alarm.id, profile.rung, actor, f"callback:{outcome}", t + round(after.draw(self.rng) * 1000)))
            for key, move in STEP_MOVES:
                delay = getattr(profile, key)
                if delay is None:
                    continue
                t += round(delay.draw(self.rng) * 1000)
                out.append(DrillAct(alarm.id, profile.rung, actor, move, t))
            if profile.close:
                out.append(DrillAct(alarm.id, "duty_officer", self.duty_officer(alarm), "verify_close", t + 1000))
        self.acts += out
        return out

    async def perform(self, act: DrillAct) -> DrillAct:
        await self.clock.sleep_until_ms(act.due_ms)
        result = await self.target.act(act.alarm_id, act.move, act.actor, f"drill: simulated {act.rung}")
        act.done_ms, act.ok, act.via, act.refused = self.clock.now_ms(), result.ok, result.via, result.refused
        return act
