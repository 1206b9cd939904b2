"""The site directory: the sample loads, the generator scales, and every mistake is reported with file:line."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml

from alerting.directory import Seat
from backend.sites import SiteDirectory, SiteDirectoryInvalid, generate_site_document, parse_site_directory, write_site_document
from backend.sites.model import Gateway
from broker.kinds import DeviceKind
from shouwang.cli import main
from tests.conftest import SAMPLE_SITE

GOOD = textwrap.dedent("""\
    street: 和平街道
    communities:
      - {id: c01, name: 幸福里社区}
    grids:
      - {id: g1, name: 第1网格, community: c01}
    buildings:
      - {id: b1, name: 1号楼, grid: g1, floors: 6, units: 2, x: 0, y: 0}
    households:
      - {id: h1, building: b1, unit: 1, room: "101", vulnerable: {lives_alone: true, welfare_check_hours: 24,
         family_contacts: [{name: 王芳, phone: "13800000000", relation: 女儿}]}}
    gateways:
      - {id: gw1, community: c01, building: b1}
    devices:
      - {id: d1, kind: smoke, gateway: gw1, building: b1, unit: 1, household: h1}
      - {id: cam1, kind: camera, gateway: gw1, building: b1}
    fire_stations:
      - {id: mfs, name: 微型消防站, community: c01}
    volunteer_teams: []
    responders:
      - {id: w1, name: 李伟, role: grid_worker, phone: "1", community: c01, grid: g1}
      - {id: w2, name: 张娜, role: grid_worker, phone: "2", community: c01, grid: g1}
    shifts:
      - {seat: grid_worker, scope: g1, responder: w1, deputy: w2, start: "08:00", end: "20:00"}
      - {seat: grid_worker, scope: g1, responder: w2, deputy: w1, start: "20:00", end: "08:00"}
""")


def parse(text: str) -> SiteDirectory:
    return parse_site_directory(text, "community.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(SiteDirectoryInvalid) as info:
        parse(text)
    return [str(e) for e in info.value.errors]


def test_a_good_directory_loads_with_defaults_filled_in() -> None:
    s = parse(GOOD)
    assert s.devices["cam1"].report_interval_s == 60.0  # camera heartbeat, GB/T 28181
    assert s.devices["d1"].report_interval_s == 86_400.0  # smoke detectors check in daily
    vul = s.households["h1"].vulnerable
    assert vul is not None
    assert vul.family_contacts[0].relation == "女儿"
    night = s.shifts[1]
    assert night.covers(0, 23 * 60)
    assert night.covers(1, 7 * 60)
    assert not night.covers(1, 9 * 60)


def test_device_on_an_unknown_building_names_file_line_and_fix() -> None:
    errs = problems(GOOD.replace("{id: cam1, kind: camera, gateway: gw1, building: b1}", "{id: cam1, kind: camera, gateway: gw1, building: b9}"))
    assert errs == ["community.yaml:15: building 'b9' is not defined; add it or fix the id"]


def test_unknown_device_kind_is_reported_with_the_allowed_kinds() -> None:
    errs = problems(GOOD.replace("kind: camera", "kind: toaster"))
    assert len(errs) == 1
    assert errs[0].startswith("community.yaml:15: device cam1: field 'kind'")
    assert "'smoke'" in errs[0]


def test_two_grid_workers_claiming_one_grid_for_the_same_shift() -> None:
    errs = problems(GOOD.replace('responder: w2, deputy: w1, start: "20:00", end: "08:00"', 'responder: w2, deputy: w1, start: "19:00", end: "08:00"'))
    assert len(errs) == 1
    assert errs[0].startswith("community.yaml:24: 'w2' and 'w1' (line 23) both claim the grid_worker seat of 'g1'")


def test_team_seats_may_hold_many_people_at_once() -> None:
    text = GOOD.replace("shifts:\n", "shifts:\n  - {seat: fire_station, scope: mfs, responder: w1, start: '00:00', end: '24:00'}\n"
                                    "  - {seat: fire_station, scope: mfs, responder: w2, start: '00:00', end: '24:00'}\n")
    assert len([s for s in parse(text).shifts if s.seat is Seat.FIRE_STATION]) == 2


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("unit: 1, household: h1}", "unit: 3, household: h1}", "unit 3 is beyond building 'b1', which has 2 unit(s)"),
        ("{id: cam1,", "{id: d1,", "device id 'd1' is used twice"),
        ("floors: 6", "floors: many", "field 'floors'"),
        ("gateway: gw1, building: b1}", "gateway: gw1, building: b1, colour: red}", "field 'colour': Extra inputs are not permitted"),
        ('start: "08:00"', 'start: "8am"', "time '8am' must be HH:MM"),
        ("street: 和平街道", "street: 和平街道\nstreets: []", "unknown section 'streets'"),
    ],
)
def test_each_mistake_is_reported(old: str, new: str, expected: str) -> None:
    errs = problems(GOOD.replace(old, new, 1))
    assert any(expected in e for e in errs), errs
    assert all(e.startswith("community.yaml:") for e in errs)


def test_generated_files_take_the_fast_path_and_report_lines_like_yaml(tmp_path: Path) -> None:
    doc = generate_site_document(1, grids=1, buildings_per_grid=1)
    doc["devices"][3]["building"] = "b-missing"
    write_site_document(doc, tmp_path / "one.yaml")
    text = (tmp_path / "one.yaml").read_text(encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if "b-missing" in t)
    with pytest.raises(SiteDirectoryInvalid) as fast:
        parse_site_directory(text, "one.yaml")
    assert [str(e) for e in fast.value.errors] == [f"one.yaml:{line}: building 'b-missing' is not defined; add it or fix the id"]
    # The same document in block style goes through PyYAML and reports the same problem at its own line.
    block = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    with pytest.raises(SiteDirectoryInvalid) as slow:
        parse_site_directory(block, "block.yaml")
    [err] = slow.value.errors
    assert err.message == "building 'b-missing' is not defined; add it or fix the id"
    assert "b-missing" in block.splitlines()[err.line - 1]


def test_every_problem_is_reported_not_just_the_first() -> None:
    errs = problems(GOOD.replace("building: b1, unit: 1, household", "building: b7, unit: 1, household").replace("kind: camera", "kind: toaster"))
    assert len(errs) >= 2


def test_broken_yaml_says_where() -> None:
    errs = problems("communities: [\n  {id: c01\n")
    assert errs[0].startswith("community.yaml:")
    assert "not valid YAML" in errs[0]


def test_the_shipped_sample_is_one_realistic_community(sample_site: SiteDirectory) -> None:
    summary = sample_site.summary()
    assert summary["communities"] == 1
    assert summary["grids"] == 8
    assert summary["buildings"] == 40
    assert summary["households"] == 2400
    assert 5500 <= summary["devices"] <= 6500
    kinds = {d.kind for d in sample_site.devices.values()}
    assert kinds == {DeviceKind.SMOKE, DeviceKind.ELECTRICAL, DeviceKind.CAMERA, DeviceKind.SOS}
    assert any(h.vulnerable for h in sample_site.households.values())


def test_the_shipped_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    write_site_document(generate_site_document(1), tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text(encoding="utf-8") == SAMPLE_SITE.read_text(encoding="utf-8")


def test_generator_makes_a_street_of_about_100k_devices() -> None:
    doc = generate_site_document(15)
    assert 85_000 <= len(doc["devices"]) <= 100_000
    assert len({d["id"] for d in doc["devices"]}) == len(doc["devices"])


def test_sites_cli_generates_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "two.yaml"
    assert main(["sites", "generate", "--communities", "2", "--grids", "2", "--buildings-per-grid", "2", "-o", str(out)]) == 0
    assert main(["sites", "check", str(out)]) == 0
    assert "is valid" in capsys.readouterr().out
    out.write_text(out.read_text(encoding="utf-8").replace('"grid": "c01-g1",', '"grid": "nowhere",', 1), encoding="utf-8")
    assert main(["sites", "check", str(out)]) == 1
    assert "grid 'nowhere' is not defined" in capsys.readouterr().err


def test_places_of_buildings_and_gateways(sample_site: SiteDirectory) -> None:
    b = next(iter(sample_site.buildings.values()))
    assert sample_site.place_of_building(b.id) == (b.grid, sample_site.grids[b.grid].community)
    assert sample_site.place_of_building("nowhere") == sample_site.place_of_building(None) == (None, None)
    in_building = next(g for g in sample_site.gateways.values() if g.building is not None)
    assert sample_site.place_of_gateway(in_building.id) == sample_site.place_of_building(in_building.building)
    community_level = Gateway("c01-gw-yard", None, "c01")
    site = dataclasses.replace(sample_site, gateways={**sample_site.gateways, community_level.id: community_level})
    assert site.place_of_gateway(community_level.id) == (None, "c01")
    assert sample_site.place_of_gateway("nowhere") == (None, None)
