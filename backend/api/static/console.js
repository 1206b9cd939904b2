// The duty console. Plain JS, no build step, nothing from the internet.
// State lives in S; the live feed (server-sent events read with fetch so the bearer token stays in a header)
// upserts alarms as they change and resumes after the last event id it saw.
// Sound: the Web Audio context is made as the page loads; while the browser keeps it from running (no click yet
// on this page, which a reload with a saved session also is), a full-width prompt covers the board until a click
// starts it. While a real life-safety alarm is unacknowledged: a sound loop in its severity's tone, a flashing
// title, one system notification (where allowed) and a red banner (role="alert"). Mute is per console, expires
// (5 min), is recorded on the server with who muted, and a new life-safety alarm ends it.
// Board: every open real life-safety alarm always comes from the server, first; the rest come as a page with
// totals, shown as groups (type and building) when there are more than a page.
"use strict";
const PAGE = 200;
const S = {
  token: sessionStorage.getItem("sw-token"), me: null, alarms: new Map(), selected: null, detail: null, tab: "board",
  lastEventId: null, feedAbort: null, serverSkew: 0, drillOpen: 0, audio: null, beepTimer: null, selectedBuilding: null,
  utcOffset: 480, board: null, offset: 0, view: "auto", expanded: new Map(), tone: null, titleTimer: null, flashOn: false,
  muteUntil: 0, mutedIds: new Map(), mutedBy: "", notified: new Set(), boardTimer: null, detailParts: {},
};
const $ = sel => document.querySelector(sel);
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const now = () => Date.now() + S.serverSkew;
const can = cap => !!(S.me && S.me.capabilities.includes(cap));
const SEV = { critical: 3, major: 2, minor: 1, info: 0 };
const OPEN = new Set(["raised", "notified", "acknowledged", "en_route", "on_scene", "handled", "suppressed", "silenced", "awaiting_verification"]);

async function api(path, opts = {}) {
  const headers = { "Content-Type": "application/json", "Accept-Language": LANG === "en" ? "en" : "zh-CN" };  // server-made text and errors
  if (S.token) headers.Authorization = "Bearer " + S.token;
  const r = await fetch(path, { ...opts, headers: { ...headers, ...(opts.headers || {}) } });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401 && path !== "/api/login") { logout(); }
  if (!r.ok) throw new Error((body && body.detail) || r.statusText);
  return body;
}
// times a person reads are in the site's time zone (the server says its offset), whatever the browser's zone
const siteDate = ms => new Date(ms + S.utcOffset * 60000);
function fmtTime(ms) { return siteDate(ms).toLocaleTimeString(LANG === "zh" ? "zh-CN" : "en-GB", { hour12: false, timeZone: "UTC" }); }
function fmtDateTime(ms) { return siteDate(ms).toLocaleString(LANG === "zh" ? "zh-CN" : "en-GB", { hour12: false, timeZone: "UTC" }); }
function fmtDur(ms) {
  const s = Math.max(0, Math.floor(ms / 1000)), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(x).padStart(2, "0");
}
function sevLabel(s) { return `<span class="sev ${esc(s)}">${esc(t("sev_" + s))}</span>`; }
function stateLabel(s) { return `<span class="tag state" data-state="${esc(s)}">${esc(t("st_" + s))}</span>`; }
function placeText(a) {
  return [a.building_name || a.building_id, a.unit ? a.unit + (LANG === "zh" ? "单元" : "u") : "", a.room || "", a.device_location || ""].filter(Boolean).join(" ");
}
function isOpen(a) { return a.is_open ?? OPEN.has(a.state); }
function unacked(a) { return isOpen(a) && a.life_safety && !a.drill && (a.state === "raised" || a.state === "notified"); }
function boardOrder(a, b) {
  const ao = isOpen(a) ? 0 : 1, bo = isOpen(b) ? 0 : 1;
  if (ao !== bo) return ao - bo;
  if (a.life_safety !== b.life_safety) return a.life_safety ? -1 : 1;
  if (SEV[a.severity] !== SEV[b.severity]) return SEV[b.severity] - SEV[a.severity];
  return ao === 0 ? a.raised_at_ms - b.raised_at_ms : b.updated_ms - a.updated_ms;
}

// -- login ------------------------------------------------------------------------------------------------
async function login(ev) {
  ev.preventDefault();
  $("#error").textContent = "";
  try {
    const r = await api("/api/login", { method: "POST", body: JSON.stringify({ username: $("#username").value, password: $("#password").value }) });
    S.token = r.token; sessionStorage.setItem("sw-token", r.token);
    unlockAudio();  // the login click is a gesture: the sound can start now
    await start();
  } catch (e) { $("#error").textContent = t("bad_login") + " (" + e.message + ")"; }
}
function logout() {
  S.token = null; sessionStorage.removeItem("sw-token");
  if (S.feedAbort) S.feedAbort.abort();
  stopSound();
  location.reload();
}
function deadlineText(x) {  // "网格员 · 到场时限", "核实窗口": who (when a rung), then what falls due
  const what = x.field_state ? t("fs_" + x.field_state) + (LANG === "zh" ? "" : " ") + t("dk_" + x.kind) : t("dk_" + x.kind);
  const who = x.label || x.rung || "";
  return who ? `${who} · ${what}` : what;
}
function renderWho() {  // the role in the reader's language (role ids are for machines)
  const role = TEXTS[LANG]["role_" + S.me.role] ? t("role_" + S.me.role) : S.me.role;
  $("#who").textContent = `${S.me.display_name || S.me.username} · ${role}${S.me.scope ? " · " + S.me.scope : ""}`;
}
async function start() {
  S.me = await api("/api/me");
  $("#login").hidden = true; $("#tabs").hidden = false; $("#logout").hidden = false;
  renderWho();
  if (!can("view_health")) document.querySelector('[data-tab="health"]').hidden = true;
  show("board");
  await loadBoard();
  connectFeed();
  setInterval(tick, 1000);
  setInterval(() => { if (!S.feedLive) loadBoard(); }, 10000);  // fallback while the feed is down
}
function show(tab) {
  S.tab = tab;
  document.querySelectorAll("#tabs button").forEach(b => b.classList.toggle("active", b.dataset.tab === tab));
  for (const v of ["board", "map", "health"]) $("#view-" + v).hidden = v !== tab;
  if (tab === "map") loadMap();
  if (tab === "health") loadHealth();
}

// -- board --------------------------------------------------------------------------------------------------
async function loadBoard() {
  clearTimeout(S.boardTimer); S.boardTimer = null;
  const r = await api(`/api/alarms?limit=${PAGE}&offset=${S.offset}` + ($("#open-only").checked ? "&open=true" : ""));
  S.serverSkew = r.server_now_ms - Date.now();
  S.utcOffset = r.utc_offset_min ?? S.utcOffset;
  S.board = r;
  if (!S.lastEventId && r.feed_id) S.lastEventId = r.feed_id;  // the feed resumes from this read: an alarm committed before the stream opens is not missed
  S.alarms = new Map(r.alarms.map(a => [a.id, a]));
  for (const [key, g] of S.expanded) if (g.rows) loadGroup(key, true);
  renderBoard();
}
function loadBoardSoon() {  // counts and groups follow the feed without a reload per event (an outage is thousands)
  if (!S.boardTimer) S.boardTimer = setTimeout(loadBoard, 1500);
}
const urgent = a => a.life_safety && !a.drill && isOpen(a);
const groupKey = g => `${g.alarm_type}|${g.place || ""}|${g.drill ? 1 : 0}`;
async function loadGroup(key, quiet) {
  const g = S.expanded.get(key); if (!g) return;
  const q = `/api/alarms?open=true&limit=500&alarm_type=${encodeURIComponent(g.alarm_type)}&drill=${g.drill}` + (g.building_id ? "&building=" + encodeURIComponent(g.building_id) : "");
  const r = await api(q);
  g.rows = r.alarms.filter(a => !urgent(a) && (g.building_id ? a.building_id === g.building_id : (a.building_id || a.community_id || "") === (g.place || "")));
  g.total = r.rest_total;
  if (!quiet) renderBoard();
}
function upsert(a) {
  const old = S.alarms.get(a.id) || {};
  S.alarms.set(a.id, { ...old, ...a });
}
function rowHtml(a, extra) {
  return `
    <tr data-alarm-id="${esc(a.id)}" data-building="${esc(a.building_id)}" class="sev-${esc(a.severity)} ${extra || ""} ${unacked(a) ? "unacked" : ""} ${isOpen(a) ? "" : "closed"} ${a.drill ? "is-drill" : ""} ${S.selected === a.id ? "selected" : ""}">
      <td>${sevLabel(a.severity)}</td>
      <td>${esc(a.title)}${a.drill ? `<span class="tag drill">${esc(t("drill"))}</span>` : ""}${a.life_safety ? `<span class="tag ls">${esc(t("life_safety"))}</span>` : ""}${a.vulnerable ? `<span class="tag vuln">♥</span>` : ""}${a.assignee_name ? `<span class="tag assignee" title="${esc(t("assignee"))}">→ ${esc(a.assignee_name)}</span>` : ""}</td>
      <td>${esc(placeText(a))}</td>
      <td>${stateLabel(a.state)}</td>
      <td class="age" data-since="${a.raised_at_ms}">${fmtDur(now() - a.raised_at_ms)}</td>
      <td>${a.occurrences}</td>
    </tr>`;
}
function groupHtml(g) {
  const key = groupKey(g), open = S.expanded.has(key), ex = S.expanded.get(key);
  const head = `<tr class="group sev-${esc(g.severity)} ${g.drill ? "is-drill" : ""}" data-group="${esc(key)}" aria-expanded="${open}">
      <td>${sevLabel(g.severity)}</td>
      <td><span class="caret">${open ? "▾" : "▸"}</span> ${esc(String(g.title || g.alarm_type).split(" · ")[0])} <b class="n">× ${g.count}</b> <span class="dim">${esc(g.place_name || "")}</span>${g.drill ? `<span class="tag drill">${esc(t("drill"))}</span>` : ""}</td>
      <td>${esc(g.place_name || "—")}</td><td>${esc(t("group_open"))}</td>
      <td class="age" data-since="${g.oldest_ms}">${fmtDur(now() - g.oldest_ms)}</td><td></td></tr>`;
  if (!open) return head;
  if (!ex.rows) return head + `<tr class="member"><td colspan="6" class="dim">…</td></tr>`;
  const more = ex.total > ex.rows.length ? `<tr class="member"><td colspan="6" class="dim">${esc(t("group_more", { shown: ex.rows.length, n: g.count }))}</td></tr>` : "";
  return head + ex.rows.map(a => rowHtml(a, "member")).join("") + more;
}
function renderBoard() {
  const b = S.board || { life_safety_open: 0, rest_total: 0, open_total: 0, limit: PAGE, offset: 0, groups: [] };
  const grouped = b.rest_total > b.limit && S.view !== "list";
  let list = [...S.alarms.values()].filter(a => !$("#open-only").checked || isOpen(a)).sort(boardOrder);
  if (grouped) list = list.filter(urgent);  // the rest is in the groups
  $("#alarms").innerHTML = list.map(a => rowHtml(a)).join("") + (grouped ? b.groups.map(groupHtml).join("") : "");
  $("#empty").hidden = list.length > 0 || (grouped && b.groups.length > 0);
  const ls = [...S.alarms.values()].filter(urgent).length;
  const total = $("#open-only").checked ? Math.max(b.open_total, list.length) : b.rest_total + b.life_safety_open;
  $("#board-count").textContent = t($("#open-only").checked ? "n_open" : "n_alarms", { n: total.toLocaleString(), ls });
  $("#board-count").dataset.total = String(total);
  $("#board-mode").hidden = b.rest_total <= b.limit;
  $("#mode-toggle").textContent = t(S.view === "list" ? "show_groups" : "show_list");
  const paged = !grouped && b.rest_total > b.limit;
  $("#pager").hidden = !paged;
  if (paged) {
    $("#page-text").textContent = t("page_of", { from: b.offset + 1, to: Math.min(b.offset + b.limit, b.rest_total), n: b.rest_total });
    $("#page-prev").disabled = b.offset === 0; $("#page-next").disabled = b.offset + b.limit >= b.rest_total;
  }
  document.querySelectorAll("#alarms tr[data-alarm-id]").forEach(tr => tr.addEventListener("click", () => openDetail(tr.dataset.alarmId)));
  document.querySelectorAll("#alarms tr.group").forEach(tr => tr.addEventListener("click", () => {
    const key = tr.dataset.group;
    if (S.expanded.has(key)) { S.expanded.delete(key); renderBoard(); return; }
    const g = b.groups.find(x => groupKey(x) === key); if (!g) return;
    S.expanded.set(key, { ...g, rows: null }); renderBoard(); loadGroup(key);
  }));
  S.drillOpen = [...S.alarms.values()].filter(a => a.drill && isOpen(a)).length;
  $("#drill-banner").hidden = S.drillOpen === 0;
  $("#drill-banner").textContent = t("drill_banner", { n: S.drillOpen });
  updateAlert();
}

// -- audible alert ------------------------------------------------------------------------------------------
// Each tone is (frequency Hz, start s, end s) within one cycle; a critical alarm is the fast two-tone one.
const TONES = {
  critical: { every: 1200, type: "square", notes: [[880, 0, 0.25], [660, 0.3, 0.55]] },
  major: { every: 2000, type: "triangle", notes: [[740, 0, 0.2], [740, 0.35, 0.55]] },
  other: { every: 3000, type: "sine", notes: [[520, 0, 0.35]] },
};
function ensureAudio() {
  if (!S.audio) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    try { S.audio = new Ctx(); S.audio.addEventListener("statechange", () => { updateGate(); updateAlert(); }); } catch (e) { S.audio = null; }
  }
  return S.audio;
}
const audioRunning = () => !!(S.audio && S.audio.state === "running");
function updateGate() {
  const blocked = !!S.audio && !audioRunning();  // no Web Audio at all: nothing a click could start
  if (!blocked) S.soundFailed = S.soundSkipped = false;
  // a click that could not start the sound (no output device...) may go on silently, but never unnoticed
  $("#sound-gate").hidden = !blocked || !!S.soundSkipped;
  $("#sound-failed").hidden = $("#sound-skip").hidden = !S.soundFailed;
  $("#sound-off").hidden = !(blocked && S.soundSkipped);
  document.body.dataset.sound = blocked ? "blocked" : muted() ? "muted" : "ready";
}
function unlockAudio() {
  const ctx = ensureAudio();
  if (ctx) ctx.resume().then(updateGate, updateGate);
  askNotify();
  updateGate();
}
function beep() {
  const ctx = S.audio;
  if (!ctx || ctx.state !== "running") { updateGate(); return; }
  const tone = TONES[S.tone] || TONES.other, t0 = ctx.currentTime;
  for (const [f, a, b] of tone.notes) {
    const o = ctx.createOscillator(), g = ctx.createGain();
    o.type = tone.type; o.frequency.value = f;
    g.gain.value = 0; g.gain.setValueAtTime(0.2, t0 + a); g.gain.setValueAtTime(0, t0 + b);
    o.connect(g).connect(ctx.destination); o.start(t0 + a); o.stop(t0 + b + 0.02);
  }
}
function startSound(severity) {
  const tone = TONES[severity] ? severity : "other";
  if (S.tone !== tone) { stopSound(); S.tone = tone; }
  if (!S.beepTimer) { beep(); S.beepTimer = setInterval(beep, TONES[tone].every); }
  document.body.dataset.tone = tone;
}
function stopSound() { if (S.beepTimer) clearInterval(S.beepTimer); S.beepTimer = null; S.tone = null; delete document.body.dataset.tone; }
function startTitleFlash(a) {
  S.flashWhat = a.title;
  if (S.titleTimer) return;
  S.titleTimer = setInterval(() => { S.flashOn = !S.flashOn; document.title = S.flashOn ? t("title_alarm", { what: S.flashWhat }) : t("title"); }, 700);
}
function stopTitleFlash() { if (S.titleTimer) clearInterval(S.titleTimer); S.titleTimer = null; document.title = t("title"); }
function askNotify() {  // asked once per browser, on a click (browsers ignore or block a request made without one)
  if (!("Notification" in window) || Notification.permission !== "default" || localStorage.getItem("sw-notify-asked")) return;
  localStorage.setItem("sw-notify-asked", "1");
  try { Promise.resolve(Notification.requestPermission()).catch(() => {}); } catch (e) { /* old browsers */ }
}
function notifyNew(pending) {
  for (const a of pending) {
    if (S.notified.has(a.id)) continue;
    S.notified.add(a.id);
    if (!("Notification" in window) || Notification.permission !== "granted") continue;
    try {
      const n = new Notification(t("notify_title"), { body: `${a.title} · ${placeText(a)}`, tag: a.id, requireInteraction: true });
      n.onclick = () => { window.focus(); show("board"); openDetail(a.id); };
    } catch (e) { /* a page may not construct notifications on some platforms */ }
  }
}
const muted = () => S.muteUntil > now();
async function mute() {
  const r = await api("/api/console/mute", { method: "POST", body: JSON.stringify({ minutes: 5 }) });
  S.serverSkew = r.server_now_ms - Date.now();  // the countdown runs on the server's clock
  S.muteUntil = r.muted_until_ms; S.mutedBy = r.by;
  S.mutedIds = new Map([...S.alarms.values()].filter(unacked).map(a => [a.id, muteKey(a)]));
  updateAlert();
}
function endMute() { S.muteUntil = 0; S.mutedIds = new Map(); S.mutedBy = ""; }
// What a mute covers of an alarm: it as it was when muted. It alarming again or getting worse is news: the sound comes back.
const muteKey = a => `${a.severity}|${a.occurrences}`;
function renderMute() {
  const on = muted() && !$("#alert-banner").hidden;
  $("#mute-bar").hidden = !on;
  if (on) $("#mute-text").textContent = t("muted_for", { left: fmtDur(S.muteUntil - now()), who: S.mutedBy });
}
function updateAlert() {
  const pending = [...S.alarms.values()].filter(unacked).sort(boardOrder);
  if (S.muteUntil && (!muted() || !pending.length || pending.some(a => S.mutedIds.get(a.id) !== muteKey(a)))) endMute();  // expired, over, a new alarm, or one again or worse
  if (pending.length) {
    $("#alert-banner").hidden = false;
    $("#alert-text").textContent = t("alert_banner", { what: pending[0].title }) + (pending.length > 1 ? ` (+${pending.length - 1})` : "");
    $("#alert-ack").dataset.alarmId = pending[0].id;
    $("#alert-ack").hidden = !can("acknowledge");
    $("#alert-mute").hidden = muted();
    if (muted()) stopSound(); else startSound(pending[0].severity);
    startTitleFlash(pending[0]);
    notifyNew(pending);
    document.body.dataset.alerting = "1";
  } else {
    $("#alert-banner").hidden = true; stopSound(); stopTitleFlash(); document.body.dataset.alerting = "0";
  }
  renderMute();
  updateGate();
}

// -- detail -------------------------------------------------------------------------------------------------
async function openDetail(id) {
  S.selected = id;
  renderBoard();
  try { S.detail = await api("/api/alarms/" + encodeURIComponent(id)); }
  catch (e) { $("#detail").hidden = false; $("#detail").innerHTML = `<p class="msg err">${esc(e.message)}</p>`; return; }
  S.serverSkew = S.detail.server_now_ms - Date.now();
  S.utcOffset = S.detail.utc_offset_min ?? S.utcOffset;
  upsert(S.detail.alarm);
  renderDetail();
  drawReadings(S.detail.alarm);
}
function renderDetail() {
  const d = S.detail, a = d.alarm, p = d.place, el = $("#detail");
  el.hidden = false;
  el.dataset.alarmId = a.id;
  const v = p.vulnerable;
  const vul = v ? `<div class="vulnerable" id="vulnerable"><b>${esc(t("vulnerable"))}</b>
      <dl class="kv">${v.lives_alone ? `<dt>${esc(t("lives_alone"))}</dt><dd>✔</dd>` : ""}${v.mobility ? `<dt>${esc(t("mobility"))}</dt><dd>${esc(TEXTS[LANG]["mob_" + v.mobility] ? t("mob_" + v.mobility) : v.mobility)}</dd>` : ""}
      ${v.key_holder ? `<dt>${esc(t("key_holder"))}</dt><dd>${esc(v.key_holder_text || v.key_holder)}</dd>` : ""}
      ${v.family_contacts.length ? `<dt>${esc(t("family"))}</dt><dd>${v.family_contacts.map(f => esc(`${f.name} (${f.relation}) ${f.phone}`)).join("<br>")}</dd>` : ""}
      ${v.neighbours.length ? `<dt>${esc(t("neighbours"))}</dt><dd>${v.neighbours.map(f => esc(`${f.name} ${f.phone}`)).join("<br>")}</dd>` : ""}
      ${v.notes ? `<dt></dt><dd>${esc(v.notes)}</dd>` : ""}</dl></div>` : (p.vulnerable_hidden ? `<p class="dim">${esc(t("vulnerable_hidden"))}</p>` : "");
  const lad = d.ladder;
  const deadlines = lad && lad.deadlines.length ? `<ul class="list countdowns">${lad.deadlines.map(x => `
      <li><span>${esc(deadlineText(x))}</span>
      <span class="countdown" data-due="${x.due_ms}"></span></li>`).join("")}</ul>` : `<p class="dim">${esc(t(lad ? "no_deadlines" : "no_ladder"))}</p>`;
  const rungs = lad ? `<ul class="list" id="rungs">${lad.rungs.map(r => `<li><b>${esc(r.label)}</b> · ${r.contacts.map(c => esc(c.name)).join("、") || "—"}
      <span class="dim">${fmtTime(r.engaged_ms)} · ${esc(r.via_text || r.via)}${r.progress ? " · " + esc(t("st_" + r.progress)) : ""}${r.missed.length ? " · ⚠ " + r.missed.map(m => esc(t("fs_" + m))).join(",") : ""}</span></li>`).join("")}</ul>` : "";
  // per rung: does it still wait for its own answer, when does it re-page, when and where does it climb
  const cd = ms => ms ? `<span class="countdown" data-due="${ms}"></span> <span class="dim">(${fmtTime(ms)})</span>` : "—";
  const rs = lad && lad.rung_status ? lad.rung_status : [];
  const rungStatus = rs.length ? `<p class="dim" id="ack-meaning">${esc(t(lad.console_ack_covers ? "ack_covers" : "ack_meaning"))}</p>
    <table class="rungs" id="rung-status"><thead><tr><th>${esc(t("r_rung"))}</th><th>${esc(t("r_status"))}</th><th>${esc(t("r_repeat"))}</th><th>${esc(t("r_climb"))}</th></tr></thead><tbody>
    ${rs.map(r => {
      // r.state and r.command_room come from the escalation service (rungs_json) when it offers them
      const status = !r.paged ? (r.reached_at_ms ? t("r_not_yet_at") : t("r_not_yet"))
        : r.state ? (r.state === "waiting" ? t(r.command_room ? "r_console" : "r_waits") : t((TEXTS.zh["st_" + r.state] ? "st_" : "rs_") + r.state))
        : r.waits_for_answer ? t("r_waits") : r.progress ? t("st_" + r.progress) : t("r_done");
      const climb = r.climbs_to ? `→ ${esc((rs.find(x => x.rung === r.climbs_to) || {}).label || r.climbs_to)} ${cd(r.climbs_at_ms)}` : (!r.paged && r.reached_at_ms ? cd(r.reached_at_ms) : "—");
      return `<tr data-rung="${esc(r.rung)}" data-waits="${r.waits_for_answer ? 1 : 0}" class="${r.waits_for_answer ? "waits" : ""} ${r.paged ? "" : "unpaged"}">
        <td><b>${esc(r.label)}</b>${r.missed.length ? ` <span class="late">⚠ ${r.missed.map(m => esc(t("fs_" + m))).join(",")}</span>` : ""}</td>
        <td>${esc(status)}</td><td>${r.waits_for_answer ? cd(r.next_repeat_ms) : "—"}</td><td>${climb}</td></tr>`;
    }).join("")}</tbody></table>` : "";
  const timeline = `<ol class="timeline" id="timeline">${d.timeline.map(e => `<li class="${esc(e.source)}" data-what="${esc(e.what)}"${e.source === "receipt" ? ` data-contact="${esc(e.contact)}" data-channel="${esc(e.channel)}"` : ""}>
      <span class="t">${fmtTime(e.at_ms)}</span><b>${esc(e.actor_text || e.actor)}</b> · ${esc(e.label || (e.to_state ? t("st_" + e.to_state) : e.what))}
      ${e.on_behalf_of ? " ⇢ " + esc(e.on_behalf_of) : ""}${e.target ? " → " + esc(e.target) : ""}${e.rung ? " [" + esc(e.rung_text || e.rung) + "]" : ""}
      <span class="dim">${esc(t("src_" + e.source))}${e.note ? " · " + esc(e.note_text || e.note) : ""}</span></li>`).join("")}</ol>`;
  // 转警 119 (issue 17): the forward's outcome in one clear line (its newest entry on the timeline)
  const fw = [...d.timeline].reverse().find(e => e.source === "forward" && e.kind !== "attempt");
  const fwLine = fw ? `<p class="forward119" id="forward-119" data-kind="${esc(fw.kind)}"><span class="tag ${fw.kind === "receipted" ? "state" : fw.kind === "failed" ? "ls" : "drill"}">119</span> ${esc(forwardText(fw))}</p>` : "";
  const people = d.responders.map(r => `<option value="${esc(r.id)}">${esc(r.name)} · ${esc(r.rung)}</option>`).join("");
  const open = isOpen(a);
  const acts = open ? `<div class="actions">
      ${can("acknowledge") ? `<button class="primary" data-action="acknowledge">${esc(t("a_ack"))}</button>` : ""}
      ${can("verify") ? `<button data-action="verify">${esc(t("a_verify"))}</button>` : ""}
    </div>
    ${can("acknowledge") || can("dispatch") ? `<div class="actions"><select id="responder"><option value="">${esc(t("pick_responder"))}</option>${people}</select>
      ${can("acknowledge_for_others") ? `<button data-action="acknowledge-for">${esc(t("a_ack_for"))}</button>` : ""}
      ${can("dispatch") ? `<button data-action="dispatch">${esc(t("a_dispatch"))}</button>` : ""}</div>` : ""}
    ${can("close") ? `<div class="actions"><input id="note" placeholder="${esc(t("note"))}" maxlength="500">
      <button data-action="close-real">${esc(t("a_close_real"))}</button><button class="danger" data-action="close-false">${esc(t("a_close_false"))}</button></div>` : ""}
    ${can("silence") && a.device_id ? `<div class="actions"><input id="silence-minutes" type="number" min="5" value="120" style="flex:0 0 90px"> ${esc(t("minutes"))}
      <button data-action="silence">${esc(t("a_silence"))}</button></div>` : ""}
    <div class="msg" id="action-msg"></div>` : `<div class="msg" id="action-msg"></div>`;
  // The panel is a fixed skeleton per alarm (and language) whose parts are redrawn only when their content changed:
  // a live refresh (a receipt, a ladder step) then never replaces the buttons under the officer's pointer (a click
  // landing while its button is swapped is lost), and the sections other scripts mount (call-back, comments, work
  // order) stay where they are.
  const parts = {
    "d-title": `${esc(a.title)} ${a.drill ? `<span class="tag drill">${esc(t("drill"))}</span>` : ""}`,
    "d-head": `<div>${sevLabel(a.severity)} ${stateLabel(a.state)} ${a.life_safety ? `<span class="tag ls">${esc(t("life_safety"))}</span>` : ""}</div>
    ${fwLine}
    <dl class="kv">
      <dt>${esc(t("d_place"))}</dt><dd>${esc([p.community, p.grid_name, p.building_name].filter(Boolean).join(" · "))}</dd>
      <dt>${esc(t("d_unit"))}</dt><dd>${esc(p.unit ?? "—")} ${p.room ? "· " + esc(t("d_room")) + " " + esc(p.room) : ""}</dd>
      <dt>${esc(t("d_device"))}</dt><dd>${p.device ? esc(`${t("k_" + p.device.kind)} · ${p.device.location} · ${p.device.id}`) : esc(a.device_id || "—")}</dd>
      <dt>${esc(t("d_raised"))}</dt><dd>${fmtDateTime(a.raised_at_ms)} (<span class="age" data-since="${a.raised_at_ms}"></span>)</dd>
      <dt>${esc(t("d_id"))}</dt><dd class="dim">${esc(a.id)}</dd>
    </dl>${vul}`,
    "d-acts": acts,
    "d-deadlines": deadlines,
    "d-rung-status": rungStatus ? `<h3>${esc(t("rung_status"))}</h3>${rungStatus}` : "",
    "d-rungs": rungs ? `<h3>${esc(t("rungs"))}</h3>${rungs}` : "",
    "timeline": timeline.replace(/^<ol class="timeline" id="timeline">/, "").replace(/<\/ol>$/, ""),
  };
  const skeleton = a.id + "|" + LANG;
  if (el.dataset.skeleton !== skeleton || !el.querySelector("#d-acts")) {
    el.innerHTML = `
    <h2 id="d-title"></h2>
    <div id="d-head"></div>
    <h3>${esc(t("actions"))}</h3><div id="d-acts"></div>
    <h3>${esc(t("deadlines"))}</h3><div id="d-deadlines"></div>
    <div id="d-rung-status"></div>
    <div id="d-rungs"></div>
    <h3>${esc(t("readings"))}</h3><div class="chart" id="chart"><p class="dim">…</p></div>
    <h3>${esc(t("timeline"))}</h3><ol class="timeline" id="timeline"></ol>`;
    el.dataset.skeleton = skeleton;
    S.detailParts = {};
  }
  for (const [id, html] of Object.entries(parts)) {
    if (S.detailParts[id] === html) continue;
    const box = el.querySelector("#" + id);
    const keep = {};  // what the officer was typing survives a redraw of its part
    for (const k of ["note", "responder", "silence-minutes"]) { const x = box.querySelector("#" + k); if (x) keep[k] = x.value; }
    box.innerHTML = html;
    for (const [k, v] of Object.entries(keep)) { const x = box.querySelector("#" + k); if (x) x.value = v; }
    box.querySelectorAll("[data-action]").forEach(b => b.addEventListener("click", () => act(b.dataset.action, S.detail.alarm)));
    S.detailParts[id] = html;
  }
  el.dataset.rendered = a.id;
  tick();
  el.dispatchEvent(new CustomEvent("detail-refresh", { detail: { id: a.id } }));  // mounted sections reload their data
}
async function act(kind, a) {
  const note = ($("#note") && $("#note").value) || "";
  const who = $("#responder") ? $("#responder").value : "";
  const base = "/api/alarms/" + encodeURIComponent(a.id);
  const calls = {
    "acknowledge": [base + "/acknowledge", { note }],
    "acknowledge-for": [base + "/acknowledge", { on_behalf_of: who || null, note }],
    "verify": [base + "/verify", { note }],
    "dispatch": [base + "/dispatch", { responder_id: who, note }],
    "close-real": [base + "/close", { outcome: "real", note }],
    "close-false": [base + "/close", { outcome: "false_alarm", note }],
    "silence": ["/api/devices/" + encodeURIComponent(a.device_id || "") + "/silence", { minutes: Number(($("#silence-minutes") || {}).value || 120), note: note || "维护 maintenance" }],
  };
  const [path, body] = calls[kind];
  try {
    const r = await api(path, { method: "POST", body: JSON.stringify(body) });
    if (r.alarm) upsert(r.alarm);
    renderBoard();
    await openDetail(a.id);
    $("#action-msg").className = "msg"; $("#action-msg").textContent = t("done") + ": " + r.done.join(", ");
  } catch (e) { $("#action-msg").className = "msg err"; $("#action-msg").textContent = e.message; }
}
async function drawReadings(a) {
  const box = $("#chart");
  if (!box || !a.device_id) { if (box) box.innerHTML = `<p class="dim">${esc(t("no_readings"))}</p>`; return; }
  try {
    const latest = await api("/api/devices/" + encodeURIComponent(a.device_id) + "/latest");
    const metrics = latest.values.map(v => v.metric).filter(m => !m.startsWith("rssi")).slice(0, 2);
    if (!metrics.length) throw new Error(t("no_readings"));
    const from = a.raised_at_ms - 30 * 60000, to = Math.max(a.raised_at_ms + 30 * 60000, Math.min(now(), a.raised_at_ms + 6 * 3600000));
    const series = await Promise.all(metrics.map(m => api(`/api/devices/${encodeURIComponent(a.device_id)}/series?metric=${encodeURIComponent(m)}&from=${from}&to=${to}`)));
    if (S.detail && S.detail.alarm.id === a.id) box.innerHTML = series.map(s => svgChart(s, a.raised_at_ms)).join("");
  } catch (e) { if (box) box.innerHTML = `<p class="dim">${esc(t("no_readings"))}</p>`; }
}
function svgChart(s, markMs) {
  const W = 600, H = 170, L = 44, R = 8, T = 16, B = 22, pts = s.points;
  if (!pts.length) return `<p class="dim">${esc(s.metric)}: ${esc(t("no_readings"))}</p>`;
  const lo = Math.min(...pts.map(p => p.min)), hi = Math.max(...pts.map(p => p.max)), span = hi - lo || 1;
  const x = ms => L + (W - L - R) * (ms - s.from_ms) / (s.to_ms - s.from_ms), y = v => T + (H - T - B) * (1 - (v - lo) / span);
  const line = pts.map(p => `${x(p.ts_ms).toFixed(1)},${y(p.mean).toFixed(1)}`).join(" ");
  const mx = x(markMs);
  return `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" data-metric="${esc(s.metric)}">
    <text x="${L}" y="11">${esc(s.metric)}</text>
    <text x="2" y="${T + 4}">${hi.toFixed(1)}</text><text x="2" y="${H - B}">${lo.toFixed(1)}</text>
    <line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#2a3746"/>
    <text x="${L}" y="${H - 6}">${fmtTime(s.from_ms)}</text><text x="${W - R - 50}" y="${H - 6}">${fmtTime(s.to_ms)}</text>
    <line class="marker" x1="${mx}" y1="${T}" x2="${mx}" y2="${H - B}"/>
    <polyline class="line" points="${line}"/></svg>`;
}
function tick() {
  if (S.muteUntil && !muted()) updateAlert();  // the mute ran out: the sound comes back
  renderMute();
  document.querySelectorAll(".age[data-since]").forEach(e => { e.textContent = fmtDur(now() - Number(e.dataset.since)); });
  document.querySelectorAll(".countdown[data-due]").forEach(e => {
    const left = Number(e.dataset.due) - now();
    e.textContent = left >= 0 ? fmtDur(left) : t("late") + " " + fmtDur(-left);
    e.classList.toggle("late", left < 0);
  });
}

// -- map ------------------------------------------------------------------------------------------------------
async function loadMap() {
  const m = await api("/api/site/map");
  const svg = $("#map"), bs = m.buildings;
  if (!bs.length) { svg.innerHTML = ""; return; }
  const minX = Math.min(...bs.map(b => b.x)) - 20, minY = Math.min(...bs.map(b => b.y)) - 30;
  const maxX = Math.max(...bs.map(b => b.x + b.width)) + 20, maxY = Math.max(...bs.map(b => b.y + b.depth)) + 20;
  svg.setAttribute("viewBox", `${minX} ${minY} ${maxX - minX} ${maxY - minY}`);
  const flip = yy => maxY + minY - yy;  // site plan y is metres north: up on screen
  // grids are not rectangles on the ground: each building sits on a pad in its grid's hue, the grid's name above its first building
  const hue = Object.fromEntries(m.grids.map((g, i) => [g.id, (i * 47) % 360]));
  const pads = bs.map(b => `<rect class="pad" x="${b.x - 5}" y="${flip(b.y + b.depth) - 5}" width="${b.width + 10}" height="${b.depth + 10}"
      style="fill:hsla(${hue[b.grid]},45%,45%,.18);stroke:hsla(${hue[b.grid]},45%,60%,.6)"/>`).join("");
  const grids = m.grids.map(g => {
    const gb = bs.filter(b => b.grid === g.id); if (!gb.length) return "";
    const top = gb.reduce((a, b) => (b.y + b.depth > a.y + a.depth || (b.y + b.depth === a.y + a.depth && b.x < a.x) ? b : a));
    return `<text class="grid-label" x="${top.x - 4}" y="${flip(top.y + top.depth) - 8}" style="fill:hsl(${hue[g.id]},60%,72%)">${esc(g.name)}</text>`;
  }).join("");
  const blds = bs.map(b => `<g><rect class="bld ${esc(b.risk.level)} ${b.risk.drill ? "drill" : ""} ${S.selectedBuilding === b.id ? "selected" : ""}" data-building="${esc(b.id)}" data-level="${esc(b.risk.level)}"
      x="${b.x}" y="${flip(b.y + b.depth)}" width="${b.width}" height="${b.depth}"><title>${esc(b.name)}</title></rect>
      <text x="${b.x + 3}" y="${flip(b.y + b.depth) + 11}">${esc(b.name)}</text></g>`).join("");
  svg.innerHTML = pads + blds + grids;
  svg.querySelectorAll("rect.bld").forEach(r => r.addEventListener("click", () => openBuilding(r.dataset.building)));
  if (S.selectedBuilding) openBuilding(S.selectedBuilding, true);
}
async function openBuilding(id, quiet) {
  S.selectedBuilding = id;
  if (!quiet) document.querySelectorAll("#map rect.bld").forEach(r => r.classList.toggle("selected", r.dataset.building === id));
  const d = await api("/api/buildings/" + encodeURIComponent(id));
  const el = $("#building"); el.hidden = false; el.dataset.building = id;
  const counts = {};
  d.devices.forEach(x => { counts[x.status] = (counts[x.status] || 0) + 1; });
  const notOk = d.devices.filter(x => x.status !== "ok").slice(0, 60);
  el.innerHTML = `<h2>${esc(d.building.name)} <span class="tag state">${esc(d.building.grid_name || d.building.grid)}</span></h2>
    <p>${Object.entries(counts).map(([k, n]) => `<span class="devstatus-${esc(k)}">${esc(t("ds_" + k))} ${n}</span>`).join(" · ")}
    · ${esc(t("cameras"))} ${d.cameras.online}/${d.cameras.cameras}</p>
    <h3>${esc(t("b_alarms"))}</h3>
    <ul class="list" id="building-alarms">${d.alarms.map(a => `<li><a href="#" data-alarm-id="${esc(a.id)}">${sevLabel(a.severity)} ${esc(a.title)}</a>
      ${a.drill ? `<span class="tag drill">${esc(t("drill"))}</span>` : ""} ${stateLabel(a.state)} <span class="dim">${esc(placeText(a))}</span></li>`).join("") || `<li class="dim">${esc(t("b_none"))}</li>`}</ul>
    <h3>${esc(t("b_devices"))} (${d.devices.length})</h3>
    <ul class="list">${notOk.map(x => `<li class="devstatus-${esc(x.status)}">${esc(t("ds_" + x.status))} · ${esc(t("k_" + x.kind))} · ${esc(x.location)} ${x.unit ? esc(x.unit) + (LANG === "zh" ? "单元" : "u") : ""} <span class="dim">${esc(x.id)}</span></li>`).join("")}</ul>`;
  el.querySelectorAll("a[data-alarm-id]").forEach(x => x.addEventListener("click", ev => { ev.preventDefault(); show("board"); openDetail(x.dataset.alarmId); }));
}

// -- health ---------------------------------------------------------------------------------------------------
async function loadHealth() {
  const h = await api("/api/health/devices"), tt = h.totals;
  $("#health-totals").innerHTML = `<div>${esc(t("t_devices"))}<b>${tt.devices}</b></div><div>${esc(t("t_offline"))}<b>${tt.offline}</b></div>
    <div>${esc(t("t_low"))}<b>${tt.low_battery}</b></div>
    <div>${esc(t("t_rate"))}<b class="${tt.camera_rate !== null && tt.camera_rate < h.camera_target ? "below" : "ok"}">${tt.camera_rate === null ? "—" : (100 * tt.camera_rate).toFixed(1) + "%"}</b></div>
    <div>${esc(t("t_below"))}<b class="${tt.buildings_below_target ? "below" : "ok"}">${tt.buildings_below_target}</b></div>
    <div>${esc(t("t_unknown"))}<b class="${tt.unknown ? "below" : "ok"}" data-total="unknown">${tt.unknown ?? 0}</b></div>
    <div>${esc(t("t_uncommissioned"))}<b class="${tt.uncommissioned ? "waiting" : "ok"}" data-total="uncommissioned">${tt.uncommissioned ?? 0}</b></div>`;
  renderGateways(h.gateways || []);
  $("#health-buildings tbody").innerHTML = h.buildings.map(b => `<tr data-building="${esc(b.id)}"><td>${esc(b.name)}</td><td>${b.devices}</td><td>${b.offline}</td><td>${b.low_battery}</td>
    <td>${b.camera_online}/${b.camera_cameras}</td><td class="${b.camera_meets_target ? "ok" : "below"}">${b.camera_rate === null ? "—" : (100 * b.camera_rate).toFixed(1) + "%"}</td></tr>`).join("");
  const why = w => { const [k, ...rest] = String(w).split(" "); return (TEXTS[LANG]["why_" + k] ? t("why_" + k) : k) + (rest.length ? " " + rest.join(" ") : ""); };
  const li = x => `<li>${esc(t("k_" + x.kind))} · ${esc(x.building_name || x.building)} ${esc(x.location)} <span class="dim">${esc(x.id)} · ${esc(why(x.why))}</span></li>`;
  $("#health-offline").innerHTML = h.offline.map(li).join("") || `<li class="dim">${esc(t("b_none"))}</li>`;
  $("#health-low").innerHTML = h.low_battery.map(li).join("") || `<li class="dim">${esc(t("b_none"))}</li>`;
}

// Per gateway: devices offline (lost), unknown (a bridge or the gateway itself is down: cannot be heard, not lost) and
// not yet commissioned (never heard since they were added); drill alarms never count (the server leaves them out).
function renderGateways(gws) {
  let el = $("#health-gateways");
  if (!el) {
    el = document.createElement("section"); el.id = "health-gateways"; el.className = "gateways";
    $("#health-totals").after(el);
  }
  const chip = (k, n) => n ? `<span class="gwchip gw-${k}" data-count="${k}">${esc(t("gw_" + k))} <b>${n}</b></span>` : "";
  el.innerHTML = `<h3>${esc(t("gw_title"))}</h3><p class="dim gwhint">${esc(t("gw_hint"))}</p>` + (gws.length ? `<ul class="gwlist">${gws.map(g =>
    `<li data-gateway="${esc(g.id)}"><div class="gwname">${esc(t("gw_gateway"))} ${esc(g.name)}${g.building_name ? ` · ${esc(g.building_name)}` : ""}
      <span class="dim">${g.devices} ${esc(t("gw_devices"))}</span>${g.gateway_offline ? ` <span class="gwchip gw-down">${esc(t("gw_down"))}</span>` : ""}</div>
      <div class="gwcounts">${chip("offline", g.offline)}${chip("unknown", g.unknown)}${chip("uncommissioned", g.uncommissioned)}</div></li>`).join("")}</ul>`
    : `<p class="dim">${esc(t("gw_all_ok"))}</p>`);
}

// -- live feed ------------------------------------------------------------------------------------------------
function feedStatus(kind) {
  S.feedLive = kind === "on";
  const el = $("#feed-status"); el.className = "feed " + (kind === "on" ? "on" : "off"); el.dataset.state = kind;
  el.textContent = t(kind === "on" ? "feed_on" : kind === "retry" ? "feed_retry" : "feed_off");
}
let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (S.tab === "map") loadMap();
    if (S.tab === "health") loadHealth();
    if (S.selected && S.detail) openDetail(S.selected);
  }, 250);
}
function onFeedEvent(type, data) {
  if (type === "resync") { loadBoard(); refreshSoon(); return; }
  if (type === "alarm") {
    const a = data.data;
    // life safety (and what is already on screen) at once; the rest through the counts and groups, batched
    const small = !S.board || S.board.rest_total < S.board.limit;
    if (urgent(a) || S.alarms.has(a.id) || small) { upsert(a); renderBoard(); }
    loadBoardSoon(); refreshSoon(); return;
  }
  if (type === "forward") { forwardStrip(data.data || data); refreshSoon(); return; }
  if ((type === "assignment" || type === "comment") && typeof onCollabEvent === "function") { onCollabEvent(type, data.data || data); return; }  // collab.js (issue 17)
  if (type === "health" || type === "ladder" || type === "notice" || type === "receipt") refreshSoon();  // receipt: who got a notice (issue 18)
}
// 转警 119 (issue 17): the detail's line, and a red strip while a forward failed on every channel (it is retried)
Object.assign(TEXTS.zh, { src_forward: "转警119", fw_receipted: "已转警119（{time}，回执号 {receipt}）", fw_failed: "转警失败（{time}：{why}），正在重试",
  fw_not_forwarded: "未转警119：演练", fw_pending: "正在转警119…", fw_strip: "转警119失败，系统正在重试，请立即电话报警119：{place}" });
Object.assign(TEXTS.en, { src_forward: "119", fw_receipted: "Forwarded to 119 ({time}, receipt {receipt})", fw_failed: "Forward to 119 failed ({time}: {why}); retrying",
  fw_not_forwarded: "Not forwarded to 119: drill", fw_pending: "Forwarding to 119…", fw_strip: "Forward to 119 failed and is being retried: phone 119 now: {place}" });
function forwardText(e) {
  if (e.kind === "receipted") return t("fw_receipted", { time: fmtDateTime(e.at_ms), receipt: e.receipt || "" });
  if (e.kind === "failed") return t("fw_failed", { time: fmtDateTime(e.at_ms), why: e.note_text || e.note || "" });
  return t(e.kind === "not_forwarded" ? "fw_not_forwarded" : "fw_pending");
}
const FORWARD_FAILING = new Map();  // alarm id -> what failed (until its receipt)
function forwardStrip(f) {
  if (f.status === "failed") FORWARD_FAILING.set(f.alarm_id, f); else FORWARD_FAILING.delete(f.alarm_id);
  let strip = document.getElementById("forward-strip");
  if (!FORWARD_FAILING.size) { if (strip) strip.remove(); return; }
  if (!strip) {
    strip = document.createElement("div");
    strip.id = "forward-strip"; strip.className = "banner system"; strip.setAttribute("role", "alert");
    document.getElementById("system-status").before(strip);
  }
  strip.innerHTML = [...FORWARD_FAILING.values()].map(x => `<div data-alarm-id="${esc(x.alarm_id)}"><strong>${esc(t("fw_strip", { place: (S.alarms.get(x.alarm_id) || {}).title || x.alarm_id }))}</strong> <span>${esc(x.text || "")}</span></div>`).join("");
}
async function connectFeed() {
  let delay = 500;
  for (;;) {
    if (!S.token) return;
    S.feedAbort = new AbortController();
    try {
      const headers = { Authorization: "Bearer " + S.token, Accept: "text/event-stream" };
      if (S.lastEventId) headers["Last-Event-ID"] = S.lastEventId;
      const r = await fetch("/api/feed", { headers, signal: S.feedAbort.signal });
      if (!r.ok || !r.body) throw new Error("feed " + r.status);
      feedStatus("on"); delay = 500;
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          let type = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
            else if (line.startsWith("id: ")) id = line.slice(4);
          }
          if (id) S.lastEventId = id;
          if (data) { try { onFeedEvent(type, JSON.parse(data)); } catch (e) { console.error(e); } }
        }
      }
    } catch (e) { if (e.name === "AbortError") return; }
    feedStatus("retry");
    await new Promise(res => setTimeout(res, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

// -- wiring ---------------------------------------------------------------------------------------------------
$("#login").addEventListener("submit", login);
$("#logout").addEventListener("click", logout);
$("#lang").addEventListener("click", () => {
  LANG = LANG === "zh" ? "en" : "zh"; localStorage.setItem("sw-lang", LANG); applyStaticTexts();
  if (S.me) { renderWho(); renderBoard(); if (S.detail) renderDetail(); if (S.detail) openDetail(S.detail.alarm.id); if (S.tab !== "board") show(S.tab); feedStatus(S.feedLive ? "on" : "off"); }
});
$("#open-only").addEventListener("change", () => { S.offset = 0; loadBoard(); });
document.querySelectorAll("#tabs button").forEach(b => b.addEventListener("click", () => show(b.dataset.tab)));
$("#sound-enable").addEventListener("click", () => {
  unlockAudio();
  setTimeout(() => { if (!audioRunning()) { S.soundFailed = true; updateGate(); } }, 2000);
});
$("#sound-skip").addEventListener("click", () => { S.soundSkipped = true; updateGate(); });
$("#sound-off").addEventListener("click", () => { S.soundSkipped = false; updateGate(); });
$("#alert-mute").addEventListener("click", () => { unlockAudio(); mute().catch(e => { $("#alert-text").textContent += " · " + e.message; }); });
$("#unmute").addEventListener("click", () => { endMute(); updateAlert(); });
$("#mode-toggle").addEventListener("click", () => { S.view = S.view === "list" ? "auto" : "list"; S.offset = 0; loadBoard(); });
$("#page-prev").addEventListener("click", () => { S.offset = Math.max(0, S.offset - PAGE); loadBoard(); });
$("#page-next").addEventListener("click", () => { S.offset += PAGE; loadBoard(); });
$("#alert-ack").addEventListener("click", async () => {
  unlockAudio();
  const id = $("#alert-ack").dataset.alarmId, a = S.alarms.get(id);
  if (!a) return;
  show("board"); await openDetail(id); await act("acknowledge", a);
});
applyStaticTexts();
ensureAudio();  // suspended until a click where the browser wants one: the prompt then covers the board
if (S.audio) S.audio.resume().catch(() => {});
updateGate();
if (S.token) start().catch(() => logout());
