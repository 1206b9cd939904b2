"""API error messages and server-made timeline text by `Accept-Language`: Chinese by default, English on request,
the machine-readable part (status code, `errors`, headers) the same in both (backend/i18n.py)."""

from __future__ import annotations

import re

import pytest

from backend.i18n import note_text
from tests.api.conftest import ApiRig

EN = {"Accept-Language": "en-US,en;q=0.9"}
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
# a Latin word a person would have to read: letters only (a token with digits is an id: c01-g1-w1, A19b76daa800.2);
# usernames and field names are allowed by name
TOKEN = re.compile(r"[A-Za-z0-9_.\-]+")


def _chinese(text: str, allowed: set[str]) -> bool:
    words = [w for w in TOKEN.findall(text) if re.fullmatch(r"[A-Za-z_]{3,}", w) and w not in allowed]
    return bool(re.search(r"[\u4e00-\u9fff]", text)) and not words


async def test_errors_a_duty_officer_can_cause_are_chinese_by_default_and_english_on_request(rig: ApiRig) -> None:
    c = rig.client
    alarm = await rig.smoke(rig.device("c01-g1"))
    other = await rig.smoke(rig.device("c01-g2"))
    cases = [  # (method, path, json, who): login, territory, unknown id, a refused move, validation
        ("POST", "/api/login", {"username": "duty", "password": "nope"}, None),
        ("GET", "/api/alarms", None, None),
        ("GET", "/api/alarms/nosuch-0", None, "duty"),
        ("GET", f"/api/alarms/{other}", None, "gw1"),
        ("POST", f"/api/alarms/{alarm}/acknowledge", {"on_behalf_of": "c01-g1-w1"}, "gw1"),
        ("POST", f"/api/alarms/{alarm}/dispatch", {"responder_id": "nobody"}, "duty"),
        ("POST", f"/api/alarms/{alarm}/close", {"outcome": "real"}, "duty"),
        ("POST", "/api/devices/nosuch/silence", {"minutes": 30, "note": "维修"}, "duty"),
    ]
    await c.post(f"/api/alarms/{alarm}/acknowledge", headers=rig.auth("duty"), json={})
    cases.append(("POST", f"/api/alarms/{alarm}/acknowledge", {}, "duty"))  # already acknowledged: the lifecycle refuses
    allowed = {"POST", "api", "login", "Authorization", "Bearer", "token", "nosuch", "nobody", "note", "duty_officer", "admin", "grid_worker",
               "acknowledge_for_others", alarm, other}
    for method, path, body, who in cases:
        auth = rig.auth(who) if who else {}
        zh = await c.request(method, path, json=body, headers={**auth, **ZH})
        default = await c.request(method, path, json=body, headers=auth)
        en = await c.request(method, path, json=body, headers={**auth, **EN})
        assert zh.status_code == en.status_code == default.status_code >= 400, (path, zh.text, en.text)
        assert zh.json()["detail"] == default.json()["detail"], "Chinese is the default"
        assert _chinese(zh.json()["detail"], allowed), (path, zh.json()["detail"])
        assert not re.search(r"[\u4e00-\u9fff]", en.json()["detail"]), (path, en.json()["detail"])
        assert zh.json().get("errors") == en.json().get("errors"), "the machine-readable list does not change with the language"
        assert zh.headers.get("www-authenticate") == en.headers.get("www-authenticate")
    refused = await c.post(f"/api/alarms/{alarm}/acknowledge", headers={**rig.auth("duty"), **ZH}, json={})
    assert "已确认" in refused.json()["detail"], "the state the alarm is in, in the console's words"
    missing = await c.post(f"/api/alarms/{alarm}/close", headers={**rig.auth("duty"), **ZH}, json={"outcome": "real"})
    assert "note：必填" in missing.json()["detail"]


async def test_timeline_and_action_results_render_in_the_readers_language(rig: ApiRig) -> None:
    c = rig.client
    alarm = await rig.smoke(rig.device("c01-g1"))
    ack = await c.post(f"/api/alarms/{alarm}/acknowledge", headers={**rig.auth("duty"), **ZH}, json={"on_behalf_of": "c01-g1-w1", "note": "电话告知"})
    assert ack.status_code == 200, ack.text
    assert ack.json()["done"][0] == "已确认"
    closed = await c.post(f"/api/alarms/{alarm}/close", headers={**rig.auth("duty"), **EN}, json={"outcome": "real", "note": "厨房起火已扑灭"})
    assert closed.json()["done"][:2] == ["handled", "closed"]
    zh = (await c.get(f"/api/alarms/{alarm}", headers=rig.auth("duty"))).json()["timeline"]
    en = (await c.get(f"/api/alarms/{alarm}", headers={**rig.auth("duty"), **EN})).json()["timeline"]
    assert [e["note"] for e in zh] == [e["note"] for e in en], "what is stored does not change with the language"
    allowed = {"duty", "system"}
    for e in zh:
        shown = f"{e['actor_text']} {e['label']} {e['note_text']}"
        assert _chinese(shown, allowed | set(re.findall(r"c\d\d[-\w]*", shown))), shown
    behalf = next(e for e in zh if e["what"] == "acknowledge")
    assert behalf["note_text"].startswith("代")
    assert "on behalf" not in behalf["note_text"]
    assert "acknowledged on behalf of" in next(e for e in en if e["what"] == "acknowledge")["note_text"]
    assert [e["label"] for e in en if e["source"] == "lifecycle"][-1] == "Closed"
    assert [e["label"] for e in zh if e["source"] == "lifecycle"][-1] == "复核关闭"


# Every note the system writes into a timeline, as alerting/book.py, alerting/ladder/engine.py, backend/sites/roster.py
# and backend/api/console_alarms.py spell it (a person's own words inside are Chinese here).
SYSTEM_NOTES = [
    "the device alarms again", "caused by A1.1", "the device recovered", "the device cleared; verify on site",
    "maintenance window: 更换探头", "maintenance window ended", "the life-safety override of the maintenance window ended",
    "maintenance window ended; the device cleared during it: verify on site", "maintenance window ended; the device is still in alarm",
    "cause A1.1 is over; this alarm remains", "stable again after flapping", "代张伟(c01-g1-w1)确认 on behalf of c01-g1-w1: 电话告知",
    "核实 verified: 摄像头确认有烟", "via console by duty1", "值班台警报声静音 5 分钟 / console sound muted for 5 min", "维护 maintenance",
    "刘芳 (fire_station_head): 请带灭火器", "nobody on record", "网格员: nobody on duty", "repeat 2", "on_scene not reached in time",
    "nobody verified in time: treated as real", "every rung has been paged; the duty console holds the alarm",
    "live again while this round still waits for its first answer: no new round (maintenance window ended)", "round 2: the device alarms again",
    "major -> critical; policy default -> life_safety", "duty1: acknowledge (covers console)", "c01-g1-w1: en_route (电话里说马上到)",
    "grid_worker c01-g1: 休假; deputy c01-g1-w2 stands in", "grid_worker c01-g1: holder unavailable; no deputy available",
    "c01-g1-w1 is on scene", "confirmed by duty1", "handled", "closed", "false_alarm",
]


@pytest.mark.parametrize("note", SYSTEM_NOTES)
def test_every_note_the_system_writes_reads_chinese_and_english(note: str) -> None:
    zh, en = note_text(note, "zh"), note_text(note, "en")
    assert not [w for w in TOKEN.findall(zh) if re.fullmatch(r"[A-Za-z_]{3,}", w) and w not in {"default", "life_safety"}], (note, zh)
    assert re.search(r"[A-Za-z]{3,}", en), (note, en)
    assert set(_cjk(en)) <= set(_cjk(note)), f"English adds no Chinese of its own: {note!r} -> {en!r}"


def _cjk(text: str) -> str:
    return "".join(re.findall(r"[\u4e00-\u9fff]", text))


def test_the_rungs_an_acknowledgement_covers_read_in_the_readers_language() -> None:
    """The duty officer's acknowledgement note names the rungs it covers: in Chinese, no rung ids (a deployment's own rung
    ids, which have no word, stay as written)."""
    from backend.i18n import note_text

    assert note_text("duty1: acknowledge (covers console, duty_officer)", "zh").endswith("（覆盖 值班台、值班员）")
    assert note_text("duty1: acknowledge (covers console, duty_officer)", "en").endswith("(covers duty console, duty officer)")
    assert note_text("duty1: acknowledge (covers night_desk)", "zh").endswith("（覆盖 night_desk）")
