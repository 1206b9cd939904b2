"""Generate realistic site directories of any size, deterministically from a seed.

One community is 8 grids of 5 buildings; a building has 2 units of 15 floors with 2 flats a floor (60
households); each flat has a kitchen smoke detector and a household electrical meter; about one household
in seven is a vulnerable resident with an SOS button; each unit's distribution box has a leakage and cable
temperature monitor and its stairwell three smoke detectors; each building has 12 cameras and one gateway.
That gives ~2,400 households and ~6,000 devices a community; 15 communities make a street of ~90,000.
A share of devices speak the real ecosystem dialects so the edge adapters are exercised end to end.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

__all__ = ["generate_site_document", "write_site_document"]

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ["芳", "伟", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英", "桂兰", "建国"]
_SKILLS = ["first_aid", "extinguisher", "lift_rescue", "elderly_care", "electrician"]
_DISTRICT = ["幸福里", "和平", "光明", "建设", "朝阳", "民主", "团结", "友谊", "前进", "东风", "新华", "胜利", "红旗", "复兴", "安康"]


def _name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + rng.choice(_GIVEN)


def _phone(rng: random.Random) -> str:
    return f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _community(doc: dict[str, list[dict[str, Any]]], rng: random.Random, index: int, grids: int, buildings_per_grid: int) -> None:
    c = f"c{index:02d}"
    doc["communities"].append({"id": c, "name": f"{_DISTRICT[(index - 1) % len(_DISTRICT)]}社区"})
    station = f"{c}-mfs"
    doc["fire_stations"].append({"id": station, "name": "微型消防站", "community": c, "x": 5.0, "y": 5.0})
    for t, team_name in enumerate(("志愿消防队", "邻里互助队"), start=1):
        doc["volunteer_teams"].append({"id": f"{c}-vt{t}", "name": team_name, "community": c})
    responders, shifts = doc["responders"], doc["shifts"]

    def person(rid: str, role: str, **extra: Any) -> str:
        responders.append({"id": rid, "name": _name(rng), "role": role, "phone": _phone(rng), "community": c, **extra})
        return rid

    for d in range(1, 5):
        person(f"{c}-duty{d}", "duty_officer")
    shifts.append({"seat": "duty_officer", "scope": c, "responder": f"{c}-duty1", "start": "08:00", "end": "20:00"})
    shifts.append({"seat": "duty_officer", "scope": c, "responder": f"{c}-duty2", "start": "08:00", "end": "20:00"})
    shifts.append({"seat": "duty_officer", "scope": c, "responder": f"{c}-duty3", "start": "20:00", "end": "08:00"})
    shifts.append({"seat": "duty_officer", "scope": c, "responder": f"{c}-duty4", "start": "20:00", "end": "08:00"})
    head = person(f"{c}-mfs-head", "fire_station_head", station=station, skills=["extinguisher", "first_aid"])
    shifts.append({"seat": "fire_station", "scope": station, "responder": head, "start": "00:00", "end": "24:00"})
    for m in range(1, 7):
        rid = person(f"{c}-mfs-m{m}", "fire_station_member", station=station, skills=["extinguisher"])
        shifts.append({"seat": "fire_station", "scope": station, "responder": rid, "deputy": head, "start": "00:00", "end": "24:00"})

    building_ids: list[str] = []
    for g in range(1, grids + 1):
        grid = f"{c}-g{g}"
        doc["grids"].append({"id": grid, "name": f"第{g}网格", "community": c})
        a = person(f"{grid}-w1", "grid_worker", grid=grid)
        b = person(f"{grid}-w2", "grid_worker", grid=grid)
        shifts.append({"seat": "grid_worker", "scope": grid, "responder": a, "deputy": b, "start": "08:00", "end": "20:00"})
        shifts.append({"seat": "grid_worker", "scope": grid, "responder": b, "deputy": a, "start": "20:00", "end": "08:00"})
        for k in range(buildings_per_grid):
            n = (g - 1) * buildings_per_grid + k + 1
            bid = f"{c}-b{n:02d}"
            building_ids.append(bid)
            col, row = (n - 1) % 8, (n - 1) // 8
            doc["buildings"].append({"id": bid, "name": f"{n}号楼", "grid": grid, "floors": 15, "units": 2, "x": 20.0 + col * 45.0, "y": 20.0 + row * 35.0})
            gw = f"{c}-gw-b{n:02d}"
            doc["gateways"].append({"id": gw, "community": c, "building": bid, "name": f"{n}号楼网关"})
            leader = person(f"{bid}-leader", "building_leader", building=bid, grid=grid)
            deputy = person(f"{bid}-u2-leader", "unit_leader", building=bid, grid=grid, unit=2)
            shifts.append({"seat": "building_leader", "scope": bid, "responder": leader, "deputy": deputy, "start": "00:00", "end": "24:00"})
            _building_devices(doc, rng, bid, gw)
    for v in range(1, 31):
        team = f"{c}-vt{1 + v % 2}"
        home = rng.choice(building_ids)
        rid = person(f"{c}-vol{v:02d}", "volunteer", team=team, building=home, skills=sorted(rng.sample(_SKILLS, rng.randint(1, 2))))
        window = rng.choice(
            [("18:00", "23:00", "weekdays"), ("08:00", "20:00", "weekends"), ("00:00", "24:00", "daily"), ("07:00", "22:00", "daily")]
        )
        shifts.append({"seat": "volunteer", "scope": team, "responder": rid, "start": window[0], "end": window[1], "days": window[2]})


def _building_devices(doc: dict[str, list[dict[str, Any]]], rng: random.Random, bid: str, gw: str) -> None:
    devices = doc["devices"]

    def dev(did: str, kind: str, dialect: str, **extra: Any) -> None:
        devices.append({"id": did, "kind": kind, "gateway": gw, "building": bid, "dialect": dialect, **extra})

    for unit in (1, 2):
        # A unit's distribution box watches the unit's feeder (rated 250 A in simulators/fleet.py), not a flat's 32 A
        # breaker: its overload level is set on the detector, as an installer would.
        dev(f"{bid}-u{unit}-box", "electrical", "native", unit=unit, location="配电箱", report_interval_s=60, model="leakage+cable-temp",
            rules={"overload": {"above": 250, "clear": 220}})
        for floor in (3, 8, 13):
            dev(f"{bid}-u{unit}-f{floor}-smoke", "smoke", _pick(rng, {"native": 0.6, "esphome": 0.4}), unit=unit, location=f"{floor}F 楼梯间")
        for floor in range(1, 16):
            for door in (1, 2):
                room = f"{floor}{door:02d}"
                hid = f"{bid}-{unit}-{room}"
                household: dict[str, Any] = {"id": hid, "building": bid, "unit": unit, "room": room, "residents": rng.randint(1, 5)}
                if rng.random() < 0.15:
                    household["residents"] = 1 if rng.random() < 0.6 else 2
                    household["vulnerable"] = {
                        "lives_alone": household["residents"] == 1,
                        "mobility": rng.choice([None, "walking_aid", "wheelchair", "bedridden"]),
                        "key_holder": f"{bid}-leader",
                        "family_contacts": [{"name": _name(rng), "phone": _phone(rng), "relation": rng.choice(["儿子", "女儿", "侄女"])}],
                        "neighbours": [{"name": _name(rng), "phone": _phone(rng), "relation": "邻居"}],
                        "welfare_check_hours": 24,
                    }
                    dev(f"{hid}-sos", "sos", _pick(rng, {"native": 0.6, "zigbee2mqtt": 0.4}), unit=unit, household=hid, location="卧室")
                doc["households"].append(household)
                dev(f"{hid}-smoke", "smoke", _pick(rng, {"native": 0.7, "zigbee2mqtt": 0.2, "shelly": 0.1}), unit=unit, household=hid, location="厨房")
                meter_dialect = _pick(rng, {"native": 0.6, "tasmota": 0.25, "shelly": 0.15})
                dev(f"{hid}-meter", "electrical", meter_dialect, unit=unit, household=hid, location="户内配电", report_interval_s=300)
    for cam in range(1, 13):
        dev(f"{bid}-cam{cam:02d}", "camera", _pick(rng, {"native": 0.7, "frigate": 0.3}), location=rng.choice(["单元门", "电梯厅", "地下车库", "楼顶", "周界"]))


def generate_site_document(communities: int = 1, seed: int = 7, grids: int = 8, buildings_per_grid: int = 5, street: str = "和平街道") -> dict[str, Any]:
    """A site directory as plain data, ready to dump as YAML."""
    rng = random.Random(seed)
    doc: dict[str, Any] = {"street": street}
    for section in ("communities", "grids", "buildings", "households", "gateways", "devices", "fire_stations", "volunteer_teams", "responders", "shifts"):
        doc[section] = []
    for i in range(1, communities + 1):
        _community(doc, rng, i, grids, buildings_per_grid)
    return doc


def write_site_document(doc: dict[str, Any], path: Path) -> None:
    """Write one record per line as a JSON object (which is also YAML flow style): compact, diff-friendly, and
    read by the loader's line-by-line fast path (a street of 90,000 devices loads in seconds, not a minute)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("# Shouwang site directory. Sections: communities, grids, buildings, households, gateways,\n")
        f.write("# devices, fire_stations, volunteer_teams, responders, shifts. See docs/site-directory.md.\n")
        f.write(f"street: {json.dumps(doc.get('street', ''), ensure_ascii=False)}\n")
        for section, records in doc.items():
            if section == "street":
                continue
            f.write(f"{section}:\n")
            for rec in records:
                f.write(f"  - {json.dumps(rec, ensure_ascii=False, separators=(', ', ': '))}\n")
