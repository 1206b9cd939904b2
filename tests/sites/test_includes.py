"""A site directory split over files: the main file includes one file per building; errors name the included file."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.sites import SiteDirectoryInvalid, load_site_directory

MAIN = """\
street: "测试街道"
include: [buildings/*.yaml]
communities:
  - {id: c9, name: 测试社区}
grids:
  - {id: c9-g1, name: 第1网格, community: c9}
gateways:
  - {id: c9-gw-b1, building: c9-b1, community: c9}
"""

BUILDING = """\
# Building 1, added by the installer as its own file
buildings:
  - {id: c9-b1, name: 1号楼, grid: c9-g1, floors: 6, units: 1, x: 10, y: 10}
devices:
  - {id: c9-b1-smoke, kind: smoke, gateway: c9-gw-b1, building: c9-b1}
"""


def _tree(tmp_path: Path, building: str) -> Path:
    (tmp_path / "buildings").mkdir()
    (tmp_path / "buildings" / "b1.yaml").write_text(building, encoding="utf-8")
    main = tmp_path / "street.yaml"
    main.write_text(MAIN, encoding="utf-8")
    return main


def test_records_of_included_files_join_the_main_files(tmp_path: Path) -> None:
    sites = load_site_directory(_tree(tmp_path, BUILDING))
    assert set(sites.buildings) == {"c9-b1"}
    assert sites.devices["c9-b1-smoke"].gateway == "c9-gw-b1"


def test_a_mistake_in_an_included_file_is_reported_at_its_own_file_and_line(tmp_path: Path) -> None:
    broken = BUILDING.replace("gateway: c9-gw-b1", "gateway: c9-gw-b9")
    with pytest.raises(SiteDirectoryInvalid) as invalid:
        load_site_directory(_tree(tmp_path, broken))
    assert [str(e) for e in invalid.value.errors] == [f"{tmp_path / 'buildings' / 'b1.yaml'}:5: gateway 'c9-gw-b9' is not defined; add it or fix the id"]


def test_an_include_matching_nothing_or_holding_street_is_an_error(tmp_path: Path) -> None:
    main = _tree(tmp_path, 'street: "别的街道"\n' + BUILDING)
    main.write_text(MAIN.replace("[buildings/*.yaml]", "[buildings/*.yaml, towers/*.yaml]"), encoding="utf-8")
    with pytest.raises(SiteDirectoryInvalid) as invalid:
        load_site_directory(main)
    text = str(invalid.value)
    assert "include 'towers/*.yaml' matches no file" in text
    assert f"{tmp_path / 'buildings' / 'b1.yaml'}:1: 'street' belongs in the main file only" in text
