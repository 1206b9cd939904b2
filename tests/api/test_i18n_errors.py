"""API error messages and server-made timeline text by `Accept-Language`: Chinese by default, English on request,
the machine-readable part (status code, `errors`, headers) the same in both (backend/i18n.py)."""

from __future__ import annotations

import re

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
