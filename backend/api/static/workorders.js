// Hazard work orders (隐患整改) on the duty console: the list (state and overdue filters), opening one from an
// alarm (a button on the alarm's detail view) or standalone on a building, the moves the transition table allows
// now, photo upload and view, and every move's audit. Loaded after console.js; uses its `S` (session) and `api()`,
// and i18n.js's `LANG`. Its own texts live here (Chinese first). Everything it draws lives in #workorders (made
// here) plus one button in the header and one in the alarm's detail. Times are the server's, in the site's time
// zone (`*_local`), never the browser's. Photos are fetched with the session's token and shown as data: URLs
// (the console's CSP allows no blob: images).
"use strict";
(() => {
  const W = { open: false, orders: [], late: 0, detail: null, creating: null, error: "", buildings: [], filter: { state: "", overdue: false } };
  const $w = sel => document.querySelector(sel);
  const esc = s => String(s == null ? "" : s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const may = cap => !!(S.me && S.me.capabilities.includes(cap));
  const STATES = ["open", "assigned", "in_progress", "done", "reinspected", "closed", "cancelled"];
  const WORDS = {
    zh: {
      button: "整改工单", title: "隐患整改工单", close: "关闭", all: "全部状态", overdue_only: "仅逾期", none: "没有符合条件的工单",
      new: "新建工单", from_alarm: "转为整改工单", view_order: "查看整改工单（{state}）", drill: "演练", from_alarm_of: "由告警创建：{what}", building: "楼栋", desc: "隐患描述与整改要求",
      severity: "等级", by_alarm: "按告警等级", create: "创建工单", cancel_form: "取消", due: "整改期限", overdue: "已逾期",
      assignee: "责任人", nobody: "未派单", pick: "选择责任人", note: "备注 / 原因（退回、撤销必填）", photos: "现场照片", no_photos: "暂无照片",
      upload: "上传照片", caption: "照片说明", choose: "选择照片（JPEG / PNG / WebP）", no_file: "未选择文件", audit: "处理记录", escalated: "逾期已升级至 {to}（{at}）", back: "返回列表", created: "创建",
      place: "位置", alarm: "来源告警", standalone: "独立工单", tz: "（{tz} 时间）", uploaded: "照片已上传", moved: "已{what}",
      s_open: "待派单", s_assigned: "已派单", s_in_progress: "整改中", s_done: "整改完成待复查", s_reinspected: "复查合格", s_closed: "已销号", s_cancelled: "已撤销",
      v_critical: "紧急", v_major: "重要", v_minor: "一般", v_info: "提示",
    },
    en: {
      button: "Work orders", title: "Hazard work orders", close: "Close", all: "All states", overdue_only: "Overdue only", none: "No work orders",
      new: "New work order", from_alarm: "Make a work order", view_order: "Open its work order ({state})", drill: "Drill", from_alarm_of: "From the alarm: {what}", building: "Building", desc: "Hazard and what to fix",
      severity: "Severity", by_alarm: "As the alarm", create: "Create", cancel_form: "Cancel", due: "Due", overdue: "Overdue",
      assignee: "Assignee", nobody: "Not assigned", pick: "Pick the assignee", note: "Note / reason (needed to reject or cancel)", photos: "Photos",
      no_photos: "No photos yet", upload: "Upload photo", caption: "Caption", choose: "Choose a photo (JPEG / PNG / WebP)",
      no_file: "No file chosen", audit: "Record", escalated: "Overdue: escalated to {to} ({at})",
      back: "Back to the list", created: "Opened", place: "Place", alarm: "From alarm", standalone: "Standalone", tz: " ({tz} time)",
      uploaded: "Photo uploaded", moved: "Done: {what}",
      s_open: "Open", s_assigned: "Assigned", s_in_progress: "In progress", s_done: "Done, to re-inspect", s_reinspected: "Re-inspected", s_closed: "Closed",
      s_cancelled: "Cancelled", v_critical: "Critical", v_major: "Major", v_minor: "Minor", v_info: "Info",
    },
  };
  const w = (key, params) => {
    let s = (WORDS[typeof LANG !== "undefined" && LANG === "en" ? "en" : "zh"] || WORDS.zh)[key] || WORDS.zh[key] || key;
    for (const [k, v] of Object.entries(params || {})) s = s.replace("{" + k + "}", v);
    return s;
  };
  const headers = () => ({ Authorization: "Bearer " + S.token, "Accept-Language": typeof LANG !== "undefined" && LANG === "en" ? "en" : "zh-CN" });

  const style = document.createElement("style");
  style.textContent = `
#workorders .wo-panel { position: fixed; top: 0; right: 0; bottom: 0; width: min(640px, 100vw); background: var(--panel, #16202c); color: var(--text, #e6edf3);
  z-index: 60; border-left: 1px solid var(--line, #2a3746); box-shadow: -4px 0 16px rgba(0,0,0,.25); overflow-y: auto; padding: 12px 14px; box-sizing: border-box; }
#workorders h2 { margin: 0 0 8px; font-size: 18px; display: flex; justify-content: space-between; align-items: center; gap: 8px; }
#workorders h3 { font-size: 15px; margin: 12px 0 6px; }
#workorders .wo-bar { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; margin-bottom: 8px; }
#workorders .wo-row { border: 1px solid var(--line, #2a3746); border-radius: 4px; padding: 8px; margin-bottom: 8px; cursor: pointer; }
#workorders .wo-row.overdue { border-color: var(--red, #d73a49); border-width: 2px; }
#workorders .wo-row .what { font-weight: 600; }
#workorders .wo-dim { color: var(--dim, #8b949e); font-size: 12px; }
#workorders .badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; margin-left: 4px; background: #21303f; }
#workorders .badge.overdue { background: var(--red, #d73a49); color: #fff; }
#workorders .badge.critical { background: var(--red, #d73a49); color: #fff; }
#workorders .badge.major { background: var(--yellow, #d9a400); color: #111; }
#workorders .wo-error { color: #ffa198; font-weight: 600; min-height: 1.2em; }
#workorders .wo-ok { color: #7ee787; min-height: 1.2em; }
#workorders form, #workorders .wo-box { display: grid; grid-template-columns: 7em 1fr; gap: 6px 8px; align-items: center; margin-bottom: 10px;
  border: 1px solid var(--line, #2a3746); padding: 8px; border-radius: 4px; }
#workorders .full { grid-column: 1 / -1; }
#workorders textarea, #workorders input, #workorders select { width: 100%; box-sizing: border-box; font: inherit; }
#workorders .wo-moves { display: flex; gap: 6px; flex-wrap: wrap; }
#workorders .wo-photos { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 8px; }
#workorders .wo-photos figure { margin: 0; border: 1px solid var(--line, #2a3746); border-radius: 4px; padding: 4px; }
#workorders .wo-photos img { width: 100%; height: 110px; object-fit: cover; display: block; background: #0b1219; }
#workorders .wo-photos figcaption { font-size: 12px; color: var(--dim, #8b949e); }
#workorders ol.wo-audit { padding-left: 18px; margin: 0; }
#workorders ol.wo-audit li { margin-bottom: 4px; }
#workorders .wo-file { position: absolute; width: 1px; height: 1px; opacity: 0; }
#workorders .wo-pick { display: inline-block; background: #21303f; border: 1px solid var(--line, #2a3746); border-radius: 4px; padding: 6px 12px; cursor: pointer; }
#wo-from-alarm-bar { margin: 6px 0; }
@media (max-width: 480px) { #workorders form, #workorders .wo-box { grid-template-columns: 1fr; } #workorders .wo-panel { padding: 8px; } }
`;
  document.head.appendChild(style);

  function mount() {
    let m = $w("#workorders");
    if (!m) { m = document.createElement("div"); m.id = "workorders"; document.body.appendChild(m); }
    return m;
  }

  function toggleButton() {
    let b = $w("#wo-toggle");
    if (!b) {
      b = document.createElement("button");
      b.id = "wo-toggle";
      b.addEventListener("click", () => { W.open = !W.open; W.detail = null; W.creating = null; W.error = ""; render(); if (W.open) refresh(); });
      const right = $w("header .right");
      right.insertBefore(b, right.firstChild);
    }
    const late = W.late;
    b.textContent = w("button") + (late ? ` (${w("overdue")} ${late})` : "");
    b.hidden = !S.me || !may("acknowledge");
    return b;
  }

  async function refresh() {
    if (!S.token || !S.me || !may("acknowledge")) return;
    const q = new URLSearchParams();
    if (W.filter.state) q.set("state", W.filter.state);
    if (W.filter.overdue) q.set("overdue", "true");
    try { W.orders = (await api("/api/workorders" + (q.toString() ? "?" + q : ""))).orders; } catch (e) { W.error = e.message; }
    render();
  }

  async function openOrder(id) {
    try { W.detail = await api("/api/workorders/" + encodeURIComponent(id)); W.error = ""; } catch (e) { W.error = e.message; }
    W.creating = null;
    render();
  }

  function stateBadge(o) { return `<span class="badge">${esc(w("s_" + o.state))}</span>`; }
  function sevBadge(o) { return `<span class="badge ${esc(o.severity)}">${esc(w("v_" + o.severity))}</span>`; }
  function lateBadge(o) {
    return (o.overdue ? `<span class="badge overdue">${esc(w("overdue"))}</span>` : "") + (o.drill ? `<span class="badge">${esc(w("drill"))}</span>` : "");
  }

  function listHtml() {
    const rows = W.orders.map(o => `<div class="wo-row${o.overdue ? " overdue" : ""}" data-id="${esc(o.id)}">
        <div class="what">${esc(o.title)} ${stateBadge(o)}${sevBadge(o)}${lateBadge(o)}</div>
        <div class="wo-dim">${esc(o.building_name || "")} · ${esc(w("assignee"))}：${esc(o.assignee_name || w("nobody"))} · ${esc(w("due"))} ${esc(o.due_local)}</div>
      </div>`).join("");
    const opts = STATES.map(s => `<option value="${s}"${W.filter.state === s ? " selected" : ""}>${esc(w("s_" + s))}</option>`).join("");
    return `<div class="wo-bar"><select id="wo-state"><option value="">${esc(w("all"))}</option>${opts}</select>
        <label><input type="checkbox" id="wo-overdue-only"${W.filter.overdue ? " checked" : ""} style="width:auto"> ${esc(w("overdue_only"))}</label>
        ${may("dispatch") ? `<button type="button" id="wo-new">${esc(w("new"))}</button>` : ""}</div>
      <div id="wo-list">${rows || `<p class="wo-dim">${esc(w("none"))}</p>`}</div>`;
  }

  function createHtml() {
    const c = W.creating;
    const where = c.alarm_id
      ? `<div class="full">${esc(w("from_alarm_of", { what: c.title }))}</div>`
      : `<label for="wo-building">${esc(w("building"))}</label><select id="wo-building">${W.buildings.map(b => `<option value="${esc(b.id)}">${esc(b.name)}</option>`).join("")}</select>`;
    const sev = ["", "critical", "major", "minor"].map(s => `<option value="${s}">${esc(s ? w("v_" + s) : (c.alarm_id ? w("by_alarm") : w("v_minor")))}</option>`).join("");
    return `<form id="wo-create-form">${where}
        <label for="wo-desc">${esc(w("desc"))}</label><textarea id="wo-desc" rows="3" maxlength="2000" required></textarea>
        <label for="wo-severity">${esc(w("severity"))}</label><select id="wo-severity">${sev}</select>
        <div class="full wo-moves"><button type="submit" class="primary" id="wo-create">${esc(w("create"))}</button>
        <button type="button" id="wo-create-cancel">${esc(w("cancel_form"))}</button></div></form>`;
  }

  function detailHtml() {
    const d = W.detail, o = d.order;
    const assign = o.moves.some(m => m.move === "assign" || m.move === "reassign") && may("dispatch")
      ? `<label for="wo-assign-to">${esc(w("assignee"))}</label><select id="wo-assign-to"><option value="">${esc(w("pick"))}</option>${d.assignees.map(a =>
          `<option value="${esc(a.id)}">${esc(a.name)} · ${esc(a.id)}</option>`).join("")}</select>` : "";
    const moves = o.moves.map(m => `<button type="button" class="wo-move${m.move === "cancel" || m.move === "reject" ? " danger" : ""}" data-move="${esc(m.move)}">${esc(m.zh && (typeof LANG === "undefined" || LANG !== "en") ? m.zh : m.move)}</button>`).join("");
    const photos = d.photos.map(p => `<figure data-photo="${esc(p.id)}"><img alt="${esc(p.caption || p.id)}" data-src="${esc(p.url)}">
        <figcaption>${esc(p.caption || "")} · ${esc(p.stage_zh)} · ${esc(p.uploaded_local)} · ${esc(p.uploaded_by)}<br>SHA-256 ${esc(p.sha256.slice(0, 12))}…</figcaption></figure>`).join("");
    const canPhoto = !["closed", "cancelled"].includes(o.state);
    const audit = d.audit.map(a => `<li><b>${esc(a.at_local)}</b> ${esc(a.actor)} · ${esc(a.action_zh)} → ${esc(a.to_state_zh)}${a.note ? ` <span class="wo-dim">${esc(a.note)}</span>` : ""}</li>`).join("");
    return `<p><button type="button" id="wo-back">‹ ${esc(w("back"))}</button></p>
      <div id="wo-detail" data-id="${esc(o.id)}" data-state="${esc(o.state)}">
      <h3>${esc(o.title)} ${stateBadge(o)}${sevBadge(o)}${lateBadge(o)}</h3>
      <div class="wo-box">
        <span>${esc(w("place"))}</span><span>${esc(o.building_name || "—")}${o.device_id ? " · " + esc(o.device_id) : ""}</span>
        <span>${esc(w("alarm"))}</span><span>${esc(o.alarm_id || w("standalone"))}</span>
        <span>${esc(w("assignee"))}</span><span id="wo-assignee">${esc(o.assignee_name || w("nobody"))}</span>
        <span>${esc(w("created"))}</span><span>${esc(o.created_local)} · ${esc(o.created_by)}</span>
        <span>${esc(w("due"))}</span><span id="wo-due">${esc(o.due_local)}${esc(w("tz", { tz: o.time_zone }))} ${lateBadge(o)}</span>
        <span class="full">${esc(o.description)}</span>
        ${o.escalated_to ? `<span class="full wo-error">${esc(w("escalated", { to: o.escalated_to, at: o.escalated_local }))}</span>` : ""}
      </div>
      ${moves ? `<div class="wo-box">${assign}<label for="wo-note">${esc(w("note"))}</label><input id="wo-note" maxlength="1000">
        <div class="full wo-moves" id="wo-moves">${moves}</div></div>` : ""}
      <h3>${esc(w("photos"))}</h3>
      ${canPhoto && may("acknowledge") ? `<div class="wo-box"><input type="file" id="wo-file" class="wo-file" accept="image/jpeg,image/png,image/webp">
        <div class="full"><label for="wo-file" class="wo-pick">${esc(w("choose"))}</label> <span id="wo-file-name" class="wo-dim">${esc(w("no_file"))}</span></div>
        <label for="wo-caption">${esc(w("caption"))}</label><input id="wo-caption" maxlength="200">
        <div class="full"><button type="button" id="wo-upload">${esc(w("upload"))}</button></div></div>` : ""}
      <div class="wo-photos" id="wo-photos">${photos || `<p class="wo-dim">${esc(w("no_photos"))}</p>`}</div>
      <h3>${esc(w("audit"))}</h3><ol class="wo-audit" id="wo-audit">${audit}</ol></div>`;
  }

  function render() {
    toggleButton();
    const m = mount();
    if (!W.open || !S.me) { m.innerHTML = ""; return; }
    const body = W.creating ? createHtml() : W.detail ? detailHtml() : listHtml();
    m.innerHTML = `<div class="wo-panel" id="wo-panel" role="dialog" aria-label="${esc(w("title"))}">
      <h2><span>${esc(w("title"))}</span><button type="button" id="wo-close">${esc(w("close"))}</button></h2>
      <div class="wo-error" id="wo-error" role="alert">${esc(W.error)}</div><div class="wo-ok" id="wo-ok"></div>${body}</div>`;
    $w("#wo-close").addEventListener("click", () => { W.open = false; render(); });
    const st = $w("#wo-state");
    if (st) st.addEventListener("change", () => { W.filter.state = st.value; refresh(); });
    const od = $w("#wo-overdue-only");
    if (od) od.addEventListener("change", () => { W.filter.overdue = od.checked; refresh(); });
    const nb = $w("#wo-new");
    if (nb) nb.addEventListener("click", startStandalone);
    m.querySelectorAll(".wo-row").forEach(r => r.addEventListener("click", () => openOrder(r.dataset.id)));
    const back = $w("#wo-back");
    if (back) back.addEventListener("click", () => { W.detail = null; W.error = ""; refresh(); });
    const form = $w("#wo-create-form");
    if (form) form.addEventListener("submit", ev => { ev.preventDefault(); create(); });
    const cc = $w("#wo-create-cancel");
    if (cc) cc.addEventListener("click", () => { W.creating = null; W.error = ""; render(); });
    m.querySelectorAll(".wo-move").forEach(b => b.addEventListener("click", () => move(b.dataset.move)));
    const file = $w("#wo-file");
    if (file) file.addEventListener("change", () => { $w("#wo-file-name").textContent = file.files[0] ? file.files[0].name : w("no_file"); });
    const up = $w("#wo-upload");
    if (up) up.addEventListener("click", upload);
    m.querySelectorAll("img[data-src]").forEach(loadPhoto);
  }

  // the console's Content-Security-Policy allows images from 'self' and data: only, so a fetched photo becomes a data: URL
  async function loadPhoto(img) {
    try {
      const r = await fetch(img.dataset.src, { headers: headers() });
      if (!r.ok) return;
      const blob = await r.blob();
      img.src = await new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result);
        reader.onerror = () => reject(reader.error);
        reader.readAsDataURL(blob);
      });
    } catch (e) { /* the caption still names the photo */ }
  }

  async function startStandalone() {
    if (!W.buildings.length) {
      try { W.buildings = (await api("/api/site/map")).buildings.map(b => ({ id: b.id, name: b.name })); } catch (e) { W.error = e.message; }
    }
    W.creating = { alarm_id: null };
    W.detail = null;
    render();
  }

  async function create() {
    const c = W.creating, body = { description: $w("#wo-desc").value.trim() };
    if (c.alarm_id) body.alarm_id = c.alarm_id; else body.building_id = $w("#wo-building").value;
    if ($w("#wo-severity").value) body.severity = $w("#wo-severity").value;
    try {
      W.detail = await api("/api/workorders", { method: "POST", body: JSON.stringify(body) });
      W.creating = null; W.error = "";
    } catch (e) { W.error = e.message; }
    render();
  }

  async function move(kind) {
    const o = W.detail.order, body = { move: kind, note: ($w("#wo-note") && $w("#wo-note").value) || "" };
    if ((kind === "assign" || kind === "reassign") && $w("#wo-assign-to")) body.assignee_id = $w("#wo-assign-to").value || null;
    try {
      W.detail = await api(`/api/workorders/${encodeURIComponent(o.id)}/moves`, { method: "POST", body: JSON.stringify(body) });
      W.error = "";
      render();
      $w("#wo-ok").textContent = w("moved", { what: (o.moves.find(m => m.move === kind) || {}).zh || kind });
    } catch (e) { W.error = e.message; render(); }
  }

  async function upload() {
    const f = $w("#wo-file").files[0];
    if (!f) return;
    const form = new FormData();
    form.append("file", f);
    form.append("caption", $w("#wo-caption").value || "");
    const id = W.detail.order.id;
    try {
      const r = await fetch(`/api/workorders/${encodeURIComponent(id)}/photos`, { method: "POST", body: form, headers: headers() });
      const body = await r.json().catch(() => null);
      if (!r.ok) throw new Error((body && body.detail) || r.statusText);
      W.detail = await api("/api/workorders/" + encodeURIComponent(id));
      W.error = "";
      render();
      $w("#wo-ok").textContent = w("uploaded");
    } catch (e) { W.error = e.message; render(); }
  }

  // the alarm's detail view (console.js redraws it): a button that opens the panel with a form from that alarm
  function alarmButton() {
    const d = $w("#detail");
    if (!d || d.hidden || !d.dataset.alarmId || !may("dispatch") || !S.detail || $w("#wo-from-alarm")) return;
    const a = S.detail.alarm;
    const bar = document.createElement("div");
    bar.id = "wo-from-alarm-bar";
    bar.innerHTML = `<button type="button" id="wo-from-alarm">${esc(w("from_alarm"))}</button>`;
    const h2 = d.querySelector("h2");
    if (h2 && h2.nextSibling) d.insertBefore(bar, h2.nextSibling.nextSibling || null); else d.appendChild(bar);
    const button = bar.querySelector("button");
    button.addEventListener("click", () => {
      W.open = true; W.error = "";
      const existing = bar.existing;  // an order this alarm already has (not cancelled): the button opens it instead
      if (existing) { openOrder(existing.id); return; }
      W.detail = null; W.creating = { alarm_id: a.id, title: a.title };
      render();
    });
    alarmOrder(bar, a.id);
  }

  // what the button says follows the alarm's order (console.js keeps the bar across live refreshes of the alarm)
  function alarmOrder(bar, alarmId) {
    api("/api/workorders?alarm_id=" + encodeURIComponent(alarmId)).then(r => {
      const existing = r.orders.find(o => o.state !== "cancelled") || null;
      bar.existing = existing;
      bar.querySelector("button").textContent = existing ? w("view_order", { state: w("s_" + existing.state) }) : w("from_alarm");
    }).catch(() => {});
  }

  function start() {
    mount();
    const d = $w("#detail");
    if (d) {
      new MutationObserver(alarmButton).observe(d, { childList: true });
      d.addEventListener("detail-refresh", ev => { const bar = $w("#wo-from-alarm-bar"); if (bar) alarmOrder(bar, ev.detail.id); });
    }
    let was = null;
    setInterval(() => {  // login, logout and the language toggle are console.js's: follow them
      const key = (S.me ? S.me.username : "") + "|" + (typeof LANG !== "undefined" ? LANG : "zh");
      if (key !== was) { was = key; if (!S.me) { W.open = false; W.orders = []; W.late = 0; } render(); if (S.me) { refresh(); countLate(); } }
      alarmButton();
    }, 500);
    setInterval(() => { if (S.me && W.open && !W.detail && !W.creating) refresh(); }, 30000);
    setInterval(countLate, 60000);  // the header says how many orders are overdue, panel open or not
  }

  async function countLate() {
    if (!S.token || !S.me || !may("acknowledge")) return;
    try { W.late = (await api("/api/workorders?overdue=true")).orders.length; toggleButton(); } catch (e) { /* shown at the next try */ }
  }
  start();
})();
