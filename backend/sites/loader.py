"""Load and validate a site directory file (YAML), reporting every problem with file, line and the fix.

How this works: a YAML loader that remembers the line of every mapping and of each of its keys; each
record is checked against its pydantic schema (types, required fields, unknown fields), then every
cross-reference is checked (a device on an unknown building, a unit beyond the building's count, two grid
workers claiming one grid for the same hours). All problems are collected, not just the first, and raised
together as `SiteDirectoryInvalid`.

A directory may be split over files: the main file's `include:` lists other files (paths relative to it, glob
patterns allowed, e.g. `buildings/*.yaml`), each holding records of any sections but `street` and `include`; their
records join the main file's, so an installer adds a building as one file without touching the generated rest.
Every line number carries its file: included file k numbers its lines from k × _FILE_SPAN, and the checker turns
that back into `file:line` when it reports.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alerting.directory import Seat
from backend.errors import BackendError
from backend.sites.model import (
    DEFAULT_REPORT_INTERVAL_S,
    NO_ENTITIES,
    Building,
    Community,
    Device,
    FamilyContact,
    FireStation,
    Gateway,
    Grid,
    Household,
    Responder,
    Role,
    Shift,
    SiteDirectory,
    VolunteerTeam,
    Vulnerability,
)
from broker.ids import ID_PATTERN
from broker.kinds import DeviceKind

__all__ = ["SiteDirectoryInvalid", "SiteError", "load_site_directory", "parse_site_directory"]

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")


@dataclass(frozen=True, slots=True)
class SiteError:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class SiteDirectoryInvalid(BackendError, ValueError):
    def __init__(self, errors: list[SiteError]) -> None:
        self.errors = errors
        shown = "\n".join(f"  {e}" for e in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"site directory has {len(errors)} problem(s):\n{shown}{more}")


# ---------------------------------------------------------------- YAML with line numbers


class _Mapping(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    duplicate_keys: list[tuple[int, str]]
    line_base: int = 0


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    base = loader.line_base + 1
    out = _Mapping()
    out.line = node.start_mark.line + base
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            loader.duplicate_keys.append((key_node.start_mark.line + base, str(key)))
        out[str(key)] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + base
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# Fast path for generated files, where every record is one JSON object on its own line (JSON is YAML flow
# style, so the file is plain YAML too). PyYAML needs ~40 s for a street of 90,000 devices; reading such a
# file line by line with the json module takes about a second and gives the same line numbers. Any line
# outside this shape (block style, comments inside records, anchors) sends the whole file to PyYAML.
_SECTION_LINE = re.compile(r"([a-z_]+):\s*(\[\])?\s*")
_STREET_LINE = re.compile(r"street:\s*(.*)")
_RECORD_LINE = re.compile(r"\s+-\s+(\{.*\})\s*")
_OTHER_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # line breaks to str.splitlines (and some to YAML) beyond \r and \n


def _json_mapping(value: Any, line: int) -> Any:
    if isinstance(value, dict):
        out = _Mapping({k: _json_mapping(v, line) for k, v in value.items()})
        out.line = line
        out.key_lines = dict.fromkeys(value, line)
        return out
    if isinstance(value, list):
        return [_json_mapping(v, line) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class _Line:
    """A record of the fast path, kept as its JSON text until the checker reads it (`mapping()`). A street's
    records held as parsed mappings (a dict, its key lines and their strings each) until every section was
    checked cost ~3 KB a device at their peak, and the process kept most of it after they were freed (its
    heap cannot hand back memory with live objects scattered through it); as text they cost the line."""

    line: int
    text: str

    def mapping(self) -> Any:
        try:
            record = json.loads(self.text)
        except json.JSONDecodeError:
            raise _NotJson from None
        return _json_mapping(record, self.line)


class _NotJson(BackendError):
    """A line of the fast path is not JSON after all: the whole file is read again by PyYAML (never leaves the loader)."""


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` one at a time (split at "\\n" only): no list of every line of a large file at once."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        if end < 0:
            end = size
        yield text[start:end]
        start = end + 1


def _fast_load(text: str, base: int = 0) -> _Mapping | None:
    doc = _Mapping()
    doc.line, doc.key_lines = base + 1, {}
    current: list[Any] | None = None
    number = base
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if "\r" in text or _OTHER_BREAKS.search(text):
        return None
    for raw in _lines(text):
        number += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not raw[0].isspace():
            if m := _STREET_LINE.fullmatch(raw):
                try:
                    street = json.loads(m.group(1)) if m.group(1).startswith('"') else m.group(1)
                except json.JSONDecodeError:
                    return None
                doc["street"], doc.key_lines["street"] = street, number
                continue
            m = _SECTION_LINE.fullmatch(raw)
            if m is None or m.group(1) in doc:
                return None
            current = []
            doc[m.group(1)], doc.key_lines[m.group(1)] = current, number
            continue
        m = _RECORD_LINE.fullmatch(raw)
        if m is None or current is None:
            return None
        current.append(_Line(number, m.group(1)))  # decoded when checked (_Line.mapping); not JSON: PyYAML reads the file
    return doc


# ---------------------------------------------------------------- record schemas (trust boundary)

IdStr = str


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("id", mode="after", check_fields=False)
    @classmethod
    def _id_grammar(cls, v: str) -> str:
        if not ID_PATTERN.fullmatch(v):
            raise ValueError("use 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v


class _Community(_Record):
    id: IdStr
    name: str


class _Grid(_Record):
    id: IdStr
    name: str
    community: IdStr


class _Building(_Record):
    id: IdStr
    name: str
    grid: IdStr
    floors: int = Field(ge=1, le=200)
    units: int = Field(ge=1, le=50)
    x: float
    y: float
    width: float = Field(default=30.0, gt=0)
    depth: float = Field(default=15.0, gt=0)


class _Contact(_Record):
    name: str
    phone: str
    relation: str = ""


class _Vulnerability(_Record):
    lives_alone: bool = False
    mobility: str | None = None
    key_holder: str | None = None
    family_contacts: list[_Contact] = []
    neighbours: list[_Contact] = []
    notes: str | None = None
    welfare_check_hours: float | None = Field(default=None, gt=0)


class _Household(_Record):
    id: IdStr
    building: IdStr
    unit: int = Field(ge=1)
    room: str
    residents: int = Field(default=1, ge=0)
    vulnerable: _Vulnerability | None = None
    phone: str | None = Field(default=None, max_length=32)


class _Gateway(_Record):
    id: IdStr
    community: IdStr
    building: IdStr | None = None
    name: str = ""


class _Device(_Record):
    id: IdStr
    kind: DeviceKind
    gateway: IdStr
    building: IdStr
    unit: int | None = Field(default=None, ge=1)
    household: IdStr | None = None
    location: str = ""
    report_interval_s: float | None = Field(default=None, gt=0)
    dialect: Literal["native", "zigbee2mqtt", "tasmota", "shelly", "frigate", "esphome"] = "native"
    model: str = ""
    rules: dict[str, dict[str, float]] = Field(default_factory=dict)  # this detector's settings, e.g. {overload: {above: 250}}
    # Where the edge finds it on the building's LAN: its name in its ecosystem (Zigbee2MQTT friendly name, Tasmota
    # topic, Shelly prefix, Frigate camera, ESPHome node); default its id. And, for ESPHome nodes, what each entity
    # means (`sensor/leak: {metric: residual_current_ma}`): `shouwang edge config` writes both into the gateway's file.
    lan_name: str | None = None
    channels: int = Field(default=1, ge=1, le=99)
    entities: dict[str, dict[str, str | float]] = Field(default_factory=dict)


class _FireStation(_Record):
    id: IdStr
    name: str
    community: IdStr
    x: float = 0.0
    y: float = 0.0


class _Team(_Record):
    id: IdStr
    name: str
    community: IdStr


class _Responder(_Record):
    id: IdStr
    name: str
    role: Role
    phone: str
    community: IdStr
    grid: IdStr | None = None
    building: IdStr | None = None
    unit: int | None = Field(default=None, ge=1)
    station: IdStr | None = None
    team: IdStr | None = None
    skills: list[str] = []


# The seats a shift may fill, as the site file spells them (FAMILY is the ladder's only: no shifts).
_ShiftSeat = Literal["grid_worker", "building_leader", "fire_station", "volunteer", "duty_officer"]


class _Shift(_Record):
    seat: _ShiftSeat
    scope: IdStr
    responder: IdStr
    deputy: IdStr | None = None
    days: list[str] | str = "daily"
    start: str
    end: str


_SECTIONS: dict[str, type[_Record]] = {
    "communities": _Community,
    "grids": _Grid,
    "buildings": _Building,
    "households": _Household,
    "gateways": _Gateway,
    "devices": _Device,
    "fire_stations": _FireStation,
    "volunteer_teams": _Team,
    "responders": _Responder,
    "shifts": _Shift,
}
R = TypeVar("R", bound=_Record)


_FILE_SPAN = 10_000_000  # line numbers of included file k start at k * _FILE_SPAN (no site file has 10 M lines)


class _Checker:
    def __init__(self, file: str, *, fast: bool = True) -> None:
        self.fast = fast  # False: every file through PyYAML (a fast-path line was not JSON)
        self.files = [file]
        self.errors: list[SiteError] = []

    def where(self, line: int) -> tuple[str, int]:
        index, local = divmod(line, _FILE_SPAN)
        return (self.files[index], local) if index < len(self.files) else (self.files[0], line)

    def error(self, line: int, message: str) -> None:
        self.errors.append(SiteError(*self.where(line), message))

    def records(self, doc: _Mapping, section: str, schema: type[R]) -> Iterator[tuple[_Mapping, R]]:
        raw = doc.get(section, [])
        if raw is None:
            return
        if not isinstance(raw, list):
            self.error(doc.key_lines.get(section, doc.line), f"'{section}' must be a list of records")
            return
        for entry in raw:
            item = entry.mapping() if isinstance(entry, _Line) else entry
            if not isinstance(item, _Mapping):
                self.error(doc.key_lines.get(section, doc.line), f"each entry of '{section}' must be a mapping")
                continue
            try:
                yield item, schema.model_validate(dict(item))
            except ValidationError as exc:
                for err in exc.errors():
                    key = str(err["loc"][0]) if err["loc"] else ""
                    line = item.key_lines.get(key, item.line)
                    where = ".".join(str(p) for p in err["loc"])
                    label = item.get("id", section[:-1])
                    self.error(line, f"{section[:-1]} {label!s}: field '{where}': {err['msg']}")


def _minutes(text: str) -> int:
    if not _HHMM.fullmatch(text):
        raise ValueError(f"time {text!r} must be HH:MM between 00:00 and 24:00")
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def _days(spec: list[str] | str) -> frozenset[int]:
    if spec in ("daily", "all"):
        return frozenset(range(7))
    if spec == "weekdays":
        return frozenset(range(5))
    if spec == "weekends":
        return frozenset({5, 6})
    items = spec if isinstance(spec, list) else [spec]
    unknown = [d for d in items if d.lower()[:3] not in _DAYS]
    if unknown:
        raise ValueError(f"unknown day(s) {unknown}: use mon..sun, 'daily', 'weekdays' or 'weekends'")
    return frozenset(_DAYS[d.lower()[:3]] for d in items)


def _load(text: str, file: str, base: int, check: _Checker) -> _Mapping:
    doc = _fast_load(text, base) if check.fast else None
    if doc is None:
        loader = _Loader(text)
        loader.duplicate_keys = []
        loader.line_base = base
        try:
            doc = loader.get_single_data()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise SiteDirectoryInvalid([SiteError(file, (mark.line + 1) if mark else 0, f"not valid YAML: {exc}")]) from exc
        finally:
            loader.dispose()
        for line, key in loader.duplicate_keys:
            check.error(line, f"key '{key}' appears twice in one record")
    if not isinstance(doc, _Mapping):
        raise SiteDirectoryInvalid([SiteError(file, 1, "the file must be a mapping with sections such as 'buildings:'")])
    return doc


def _include(doc: _Mapping, base_dir: Path | None, check: _Checker) -> None:
    """Join the records of the files the main file's `include:` names to its sections (see the module docstring)."""
    spec = doc.pop("include")
    line = doc.key_lines.pop("include")
    patterns = [spec] if isinstance(spec, str) else spec
    if not isinstance(patterns, list) or not all(isinstance(x, str) for x in patterns):
        check.error(line, "'include' must be a file name or a list of file names (relative to this file; glob patterns allowed)")
        return
    if base_dir is None:
        check.error(line, "'include' needs the directory to be read from a file (shouwang sites check FILE)")
        return
    for pattern in patterns:
        paths = sorted(base_dir.glob(pattern)) if any(c in pattern for c in "*?[") else [base_dir / pattern]
        if not paths:
            check.error(line, f"include '{pattern}' matches no file in {base_dir}")
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                check.error(line, f"include '{path}': cannot read the file: {exc.strerror}")
                continue
            check.files.append(str(path))
            part = _load(text, str(path), (len(check.files) - 1) * _FILE_SPAN, check)
            for key, value in part.items():
                if key in ("street", "include"):
                    check.error(part.key_lines[key], f"'{key}' belongs in the main file only ({check.files[0]})")
                elif key not in _SECTIONS:
                    check.error(part.key_lines[key], f"unknown section '{key}'; expected one of {', '.join(_SECTIONS)}")
                elif not isinstance(value, list):
                    check.error(part.key_lines[key], f"'{key}' must be a list of records")
                elif isinstance(doc.get(key), list):
                    doc[key].extend(value)
                elif key not in doc:
                    doc[key], doc.key_lines[key] = list(value), part.key_lines[key]


def parse_site_directory(text: str, file: str = "<site directory>", *, base_dir: Path | None = None) -> SiteDirectory:
    """Parse and validate a site directory; raise SiteDirectoryInvalid listing every problem. `base_dir` is where the
    files named by `include:` are looked for (the main file's folder)."""
    try:
        return _parse(text, file, base_dir, _Checker(file))
    except _NotJson:
        return _parse(text, file, base_dir, _Checker(file, fast=False))


def _parse(text: str, file: str, base_dir: Path | None, check: _Checker) -> SiteDirectory:
    doc = _load(text, file, 0, check)
    if "include" in doc:
        _include(doc, base_dir, check)
    for key in doc:
        if key not in _SECTIONS and key != "street":
            check.error(doc.key_lines[key], f"unknown section '{key}'; expected one of {', '.join(_SECTIONS)}")

    # One string object for each repeated value (a device's gateway, building, household, location, dialect, model; a
    # household's building and room): parsed from each record's own line they would be a copy each, ~300 B a device.
    pool: dict[str, str] = {}

    def share(value: str | None) -> Any:
        return value if value is None else pool.setdefault(value, value)

    def collect(section: str, schema: type[R], build: Callable[[_Mapping, R], Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item, rec in check.records(doc, section, schema):
            rid = getattr(rec, "id", None)
            if rid in out:
                check.error(item.line, f"{section[:-1]} id '{rid}' is used twice")
                continue
            value = build(item, rec)
            if value is not None:
                out[rid if rid is not None else str(len(out))] = value
        return out

    communities = collect("communities", _Community, lambda _i, r: Community(r.id, r.name))

    def ref(item: _Mapping, field_name: str, value: str | None, table: dict[str, Any], what: str) -> bool:
        if value is None or value in table:
            return True
        check.error(item.key_lines.get(field_name, item.line), f"{what} '{value}' is not defined; add it or fix the id")
        return False

    def grid(item: _Mapping, r: _Grid) -> Grid:
        ref(item, "community", r.community, communities, "community")
        return Grid(r.id, r.name, r.community)

    grids = collect("grids", _Grid, grid)

    def building(item: _Mapping, r: _Building) -> Building:
        ref(item, "grid", r.grid, grids, "grid")
        return Building(r.id, r.name, r.grid, r.floors, r.units, r.x, r.y, r.width, r.depth)

    buildings = collect("buildings", _Building, building)

    def unit_ok(item: _Mapping, building_id: str, unit: int | None) -> None:
        b = buildings.get(building_id)
        if b is not None and unit is not None and unit > b.units:
            check.error(item.key_lines.get("unit", item.line), f"unit {unit} is beyond building '{building_id}', which has {b.units} unit(s)")

    def contacts(cs: list[_Contact]) -> tuple[FamilyContact, ...]:
        return tuple(FamilyContact(c.name, c.phone, c.relation) for c in cs)

    def household(item: _Mapping, r: _Household) -> Household:
        ref(item, "building", r.building, buildings, "building")
        unit_ok(item, r.building, r.unit)
        v = r.vulnerable
        vul = None
        if v is not None:
            vul = Vulnerability(v.lives_alone, v.mobility, v.key_holder, contacts(v.family_contacts), contacts(v.neighbours), v.notes, v.welfare_check_hours)
        return Household(share(r.id), share(r.building), r.unit, share(r.room), r.residents, vul, r.phone)

    households = collect("households", _Household, household)

    def gateway(item: _Mapping, r: _Gateway) -> Gateway:
        ref(item, "community", r.community, communities, "community")
        ref(item, "building", r.building, buildings, "building")
        return Gateway(r.id, r.building, r.community, r.name)

    gateways = collect("gateways", _Gateway, gateway)

    def device(item: _Mapping, r: _Device) -> Device:
        ref(item, "gateway", r.gateway, gateways, "gateway")
        ref(item, "building", r.building, buildings, "building")
        unit_ok(item, r.building, r.unit)
        if ref(item, "household", r.household, households, "household") and r.household is not None:
            h = households[r.household]
            if h.building != r.building:
                check.error(item.key_lines.get("household", item.line), f"household '{r.household}' is in building '{h.building}', not '{r.building}'")
        interval = r.report_interval_s if r.report_interval_s is not None else DEFAULT_REPORT_INTERVAL_S[r.kind]
        if r.rules:
            rule_settings[r.id] = {rule: dict(params) for rule, params in r.rules.items()}
        return Device(r.id, r.kind, share(r.gateway), share(r.building), r.unit, share(r.household), share(r.location), interval,
                      share(r.dialect), share(r.model), lan_name=r.lan_name or r.id, channels=r.channels,
                      entities={k: dict(v) for k, v in r.entities.items()} if r.entities else NO_ENTITIES)

    rule_settings: dict[str, dict[str, dict[str, float]]] = {}
    devices = collect("devices", _Device, device)

    def station(item: _Mapping, r: _FireStation) -> FireStation:
        ref(item, "community", r.community, communities, "community")
        return FireStation(r.id, r.name, r.community, r.x, r.y)

    stations = collect("fire_stations", _FireStation, station)

    def team(item: _Mapping, r: _Team) -> VolunteerTeam:
        ref(item, "community", r.community, communities, "community")
        return VolunteerTeam(r.id, r.name, r.community)

    teams = collect("volunteer_teams", _Team, team)

    def responder(item: _Mapping, r: _Responder) -> Responder:
        ref(item, "community", r.community, communities, "community")
        ref(item, "grid", r.grid, grids, "grid")
        ref(item, "building", r.building, buildings, "building")
        ref(item, "station", r.station, stations, "fire station")
        ref(item, "team", r.team, teams, "volunteer team")
        return Responder(r.id, r.name, r.role, r.phone, r.community, r.grid, r.building, r.unit, r.station, r.team, frozenset(r.skills))

    responders = collect("responders", _Responder, responder)

    scopes: dict[Seat, tuple[dict[str, Any], str]] = {
        Seat.GRID_WORKER: (grids, "grid"),
        Seat.BUILDING_LEADER: (buildings, "building"),
        Seat.FIRE_STATION: (stations, "fire station"),
        Seat.VOLUNTEER: (teams, "volunteer team"),
        Seat.DUTY_OFFICER: (communities, "community"),
    }
    shifts: list[tuple[int, Shift]] = []
    for item, r in check.records(doc, "shifts", _Shift):
        seat = Seat(r.seat)
        table, what = scopes[seat]
        ok = ref(item, "scope", r.scope, table, what)
        ok = ref(item, "responder", r.responder, responders, "responder") and ok
        ok = ref(item, "deputy", r.deputy, responders, "deputy responder") and ok
        try:
            days = _days(r.days)
            start, end = _minutes(r.start), _minutes(r.end)
        except ValueError as exc:
            check.error(item.line, f"shift of '{r.responder}': {exc}")
            continue
        if ok:
            shifts.append((item.line, Shift(seat, r.scope, r.responder, days, start % 1440, end if end != 1440 else 1440, r.deputy)))

    _check_exclusive_seats(check, shifts)
    if check.errors:
        raise SiteDirectoryInvalid(check.errors)
    street = doc.get("street", "")
    return SiteDirectory(
        communities=communities, grids=grids, buildings=buildings, households=households, gateways=gateways,
        devices=devices, fire_stations=stations, volunteer_teams=teams, responders=responders,
        shifts=tuple(s for _, s in shifts), street=str(street) if street else "", rule_settings=rule_settings,
    )


def _check_exclusive_seats(check: _Checker, shifts: list[tuple[int, Shift]]) -> None:
    by_seat: dict[tuple[Seat, str], list[tuple[int, Shift]]] = defaultdict(list)
    for line, s in shifts:
        if s.seat.exclusive:
            by_seat[(s.seat, s.scope)].append((line, s))
    for (seat, scope), items in by_seat.items():
        for i, (line_a, a) in enumerate(items):
            for line_b, b in items[i + 1 :]:
                if a.responder == b.responder:
                    continue
                if any(x0 < y1 and y0 < x1 for x0, x1 in a.week_intervals() for y0, y1 in b.week_intervals()):
                    check.error(
                        line_b,
                        f"'{b.responder}' and '{a.responder}' (line {line_a}) both claim the {seat.value} seat of "
                        f"'{scope}' for overlapping hours; make the shifts not overlap or make one the deputy",
                    )


def load_site_directory(path: str | Path) -> SiteDirectory:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteDirectoryInvalid([SiteError(str(p), 0, f"cannot read the file: {exc.strerror}")]) from exc
    return parse_site_directory(text, str(p), base_dir=p.parent)
