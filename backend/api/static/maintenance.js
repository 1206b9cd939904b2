// Maintenance windows (维护窗口) on the duty console: list, open, extend, end early; a strip that stays on screen
// while smoke detectors or SOS buttons are silenced. Loaded after console.js; uses its `S` (session), `api()`
// and i18n.js's `t()`. Everything it draws lives under #maintenance (the mount point in console.html) plus one
// button in the header. Times are the server's, in the site's time zone (`*_local`), never the browser's.
"use strict";
(() => {
  const M = { windows: [], limits: null, open: false, started: false, buildings: [], timer: null, devices: new Map() };
  const $m = sel => document.querySelector(sel);
  const esc = s => String(s == null ? "" : s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const may = () => S.me && S.me.capabilities.includes("silence");
  const KINDS = ["electrical", "camera", "water_leak", "other", "smoke", "sos"];
  const LIFE_SAFETY = new Set(["smoke", "sos"]);

  const style = document.createElement("style");
  style.textContent = `
#maintenance .mw-strip { background: var(--red, #d73a49); color: #fff; padding: 6px 12px; font-weight: 600; display: flex; gap: 12px; flex-wrap: wrap; align-items: center; }
#maintenance .mw-strip.mw-notice { background: #3a2f0b; color: #ffd866; font-weight: 500; }
#maintenance .mw-strip button { background: #fff; color: var(--red, #d73a49); border: 0; padding: 2px 10px; border-radius: 3px; cursor: pointer; }
#maintenance .mw-panel { position: fixed; top: 0; right: 0; bottom: 0; width: min(560px, 100vw); background: var(--panel, #16202c); color: var(--text, #e6edf3); z-index: 50; border-left: 1px solid var(--line, #2a3746);
  box-shadow: -4px 0 16px rgba(0,0,0,.25); overflow-y: auto; padding: 12px 14px; box-sizing: border-box; }
#maintenance .mw-panel h2 { margin: 0 0 8px; font-size: 18px; display: flex; justify-content: space-between; align-items: center; }
#maintenance form { display: grid; grid-template-columns: 7em 1fr; gap: 6px 8px; align-items: center; margin-bottom: 12px;
  border: 1px solid var(--line, #2a3746); padding: 8px; border-radius: 4px; }
#maintenance form input, #maintenance form select { width: 100%; box-sizing: border-box; padding: 4px; font: inherit; }
#maintenance form .full { grid-column: 1 / -1; }
#maintenance .mw-hint { color: var(--dim, #8b949e); font-size: 12px; }
#maintenance .mw-error { color: #ffa198; font-weight: 600; }
#maintenance .mw-row { border: 1px solid var(--line, #2a3746); border-radius: 4px; padding: 8px; margin-bottom: 8px; }
#maintenance .mw-row.ls { border-color: var(--red, #d73a49); border-width: 2px; }
#maintenance .mw-row.soon { background: #3a2f0b; }
#maintenance .mw-row.ended { opacity: .6; }
#maintenance .mw-row .what { font-weight: 600; }
#maintenance .mw-row .acts { display: flex; gap: 6px; flex-wrap: wrap; margin-top: 6px; align-items: center; }
#maintenance .mw-row .acts input { width: 6em; padding: 3px; }
#maintenance .mw-row .acts input.mw-why { width: 12em; flex: 1; }
#maintenance .badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; margin-left: 4px; background: #21303f; }
#maintenance .badge.ls { background: var(--red, #d73a49); color: #fff; }
#maintenance .badge.soon { background: var(--yellow, #d9a400); color: #111; }
@media (max-width: 480px) { #maintenance form { grid-template-columns: 1fr; } #maintenance .mw-panel { padding: 8px; } }
`;
  document.head.appendChild(style);

  function mount() { return $m("#maintenance"); }

  function toggleButton() {
    let b = $m("#mw-toggle");
    if (!b) {
      b = document.createElement("button");
      b.id = "mw-toggle";
      b.addEventListener("click", () => { M.open = !M.open; render(); if (M.open) refresh(); });
      const right = $m("header .right");
      right.insertBefore(b, right.firstChild);
    }
    const n = M.windows.filter(w => w.state !== "ended").length;
    b.textContent = t("mw_button") + (n ? ` (${n})` : "");
    b.hidden = !S.me;
    return b;
  }

  async function refresh() {
    if (!S.token || !S.me) return;
    try {
      const r = await api("/api/maintenance?include_ended=true");
      M.limits = r;
      M.windows = r.windows;
      render();
    } catch (e) { /* the board shows the connection state; try again at the next poll */ }
  }

  async function loadBuildings() {
    const r = await api("/api/site/map");
    M.buildings = r.buildings.map(b => ({ id: b.id, name: b.name }));
  }

  async function devicesOf(building) {
    if (!M.devices.has(building)) M.devices.set(building, (await api(`/api/buildings/${encodeURIComponent(building)}`)).devices);
    return M.devices.get(building);
  }

  function stripHtml() {
    const ls = M.windows.filter(w => w.state === "in_force" && w.life_safety_override);
    const now = M.limits ? M.limits.server_now_ms : 0, lead = M.limits ? M.limits.end_notice_minutes * 60000 : 0;
    // the duty room's notices (also sent on the live feed): ending within the lead, and ended in the last few minutes
    const soon = M.windows.filter(w => w.ending_soon), ended = M.windows.filter(w => w.state === "ended" && now - w.ended_ms < Math.max(lead, 300000));
    const notes = [...soon.map(w => t("mw_note_soon", { what: w.what, end: w.ends_local })), ...ended.map(w => t("mw_note_ended", { what: w.what }))];
    const out = notes.length ? `<div class="mw-strip mw-notice" id="mw-notice" role="status">${esc(notes.join("；"))}</div>` : "";
    if (!ls.length) return out;
    const items = ls.map(w => t("mw_ls_item", { what: w.what, end: w.ends_local })).join("；");
    return `<div class="mw-strip" id="mw-strip" role="status"><span class="mw-ls">${esc(t("mw_ls_strip", { items }))}</span>` +
      `<button type="button" id="mw-strip-open">${esc(t("mw_view"))}</button></div>` + out;
  }

  function rowHtml(w) {
    const cls = ["mw-row", w.life_safety_override ? "ls" : "", w.ending_soon ? "soon" : "", w.state === "ended" ? "ended" : ""].join(" ");
    const badges = [
      `<span class="badge">${esc(t("mw_state_" + w.state))}</span>`,
      w.life_safety_override ? `<span class="badge ls">${esc(t("mw_ls_badge"))}</span>` : "",
      w.ending_soon ? `<span class="badge soon">${esc(t("mw_soon"))}</span>` : "",
    ].join("");
    const when = w.state === "ended"
      ? t("mw_ended_at", { start: w.starts_local, end: w.ended_local || w.ends_local, by: w.ended_by || "" })
      : t("mw_span", { start: w.starts_local, end: w.ends_local, tz: w.time_zone });
    const live = w.life_safety_devices_left_live ? `<div class="mw-hint">${esc(t("mw_left_live", { n: w.life_safety_devices_left_live }))}</div>` : "";
    const override = w.override_reason ? `<div class="mw-hint">${esc(t("mw_override_is", { why: w.override_reason }))}</div>` : "";
    const acts = w.state !== "ended" && may() ? `<div class="acts">
        <input type="number" class="mw-extend-min" min="1" value="30" aria-label="${esc(t("mw_extend_minutes"))}">
        <button type="button" class="mw-extend">${esc(t("mw_extend"))}</button>
        <input class="mw-why" placeholder="${esc(t("mw_why"))}" aria-label="${esc(t("mw_why"))}">
        <button type="button" class="mw-end">${esc(t("mw_end"))}</button></div>` : "";
    return `<div class="${cls}" data-id="${esc(w.id)}"><div class="what">${esc(w.what)} ${badges}</div>
      <div>${esc(when)}</div><div class="mw-hint">${esc(t("mw_by", { who: w.author, why: w.reason }))}</div>${override}${live}${acts}</div>`;
  }

  function formHtml() {
    if (!may()) return "";
    const opts = M.buildings.map(b => `<option value="${esc(b.id)}">${esc(b.name)} (${esc(b.id)})</option>`).join("");
    const kinds = KINDS.map(k => `<option value="${k}">${esc(t("k_" + k))}</option>`).join("");
    const lsMax = M.limits ? M.limits.life_safety_max_minutes : 120;
    return `<form id="mw-form" autocomplete="off">
      <label for="mw-building">${esc(t("mw_building"))}</label><select id="mw-building" required>${opts}</select>
      <label for="mw-scope">${esc(t("mw_scope"))}</label><select id="mw-scope">
        <option value="building">${esc(t("mw_scope_building"))}</option><option value="device">${esc(t("mw_scope_device"))}</option>
        <option value="kind">${esc(t("mw_scope_kind"))}</option></select>
      <label for="mw-device" class="mw-for-device">${esc(t("mw_device"))}</label><select id="mw-device" class="mw-for-device"></select>
      <label for="mw-kind" class="mw-for-kind">${esc(t("mw_kind"))}</label><select id="mw-kind" class="mw-for-kind">${kinds}</select>
      <label for="mw-minutes">${esc(t("mw_minutes"))}</label><input id="mw-minutes" type="number" min="1" value="60" required>
      <label for="mw-reason">${esc(t("mw_reason"))}</label><input id="mw-reason" required minlength="2" maxlength="500" placeholder="${esc(t("mw_reason_hint"))}">
      <label class="full"><input type="checkbox" id="mw-override" style="width:auto"> ${esc(t("mw_override", { n: lsMax }))}</label>
      <label for="mw-override-reason" class="mw-for-override">${esc(t("mw_override_reason"))}</label>
      <input id="mw-override-reason" class="mw-for-override" maxlength="500">
      <div class="full mw-hint">${esc(t("mw_ls_rule", { n: lsMax }))}</div>
      <button type="submit" id="mw-create" class="full">${esc(t("mw_create"))}</button>
      <div id="mw-error" class="full mw-error" role="alert"></div>
    </form>`;
  }

  function render() {
    const root = mount();
    if (!root) return;
    toggleButton();
    if (!S.me) { root.innerHTML = ""; return; }
    const keep = M.open && $m("#mw-form") ? formState() : null;
    const rows = new Map([...document.querySelectorAll("#maintenance .mw-row")].map(r => [r.dataset.id,
      [r.querySelector(".mw-extend-min"), r.querySelector(".mw-why")].map(e => (e ? e.value : null))]));
    const active = M.windows.filter(w => w.state !== "ended"), ended = M.windows.filter(w => w.state === "ended").slice(0, 10);
    root.innerHTML = stripHtml() + (M.open ? `<aside class="mw-panel" id="mw-panel" aria-label="${esc(t("mw_title"))}">
      <h2>${esc(t("mw_title"))} <button type="button" id="mw-close">${esc(t("mw_close"))}</button></h2>
      ${formHtml()}
      <h3>${esc(t("mw_active"))}</h3><div id="mw-list">${active.map(rowHtml).join("") || `<p class="mw-hint">${esc(t("mw_none"))}</p>`}</div>
      ${ended.length ? `<h3>${esc(t("mw_recent"))}</h3><div id="mw-ended">${ended.map(rowHtml).join("")}</div>` : ""}
    </aside>` : "");
    if (M.open) wire(keep);
    document.querySelectorAll("#maintenance .mw-row").forEach(r => {  // a poll redraws the list: keep what was being typed
      const was = rows.get(r.dataset.id), ext = r.querySelector(".mw-extend-min"), why = r.querySelector(".mw-why");
      if (was && ext && was[0] != null) ext.value = was[0];
      if (was && why && was[1] != null) why.value = was[1];
    });
    const so = $m("#mw-strip-open");
    if (so) so.addEventListener("click", () => { M.open = true; render(); });
  }

  function formState() {
    const ids = ["mw-building", "mw-scope", "mw-device", "mw-kind", "mw-minutes", "mw-reason", "mw-override-reason"];
    const out = {};
    for (const id of ids) { const e = $m("#" + id); if (e) out[id] = e.value; }
    out.override = $m("#mw-override") ? $m("#mw-override").checked : false;
    out.error = $m("#mw-error") ? $m("#mw-error").textContent : "";
    return out;
  }

  async function scopeChanged() {
    const scope = $m("#mw-scope").value;
    document.querySelectorAll("#maintenance .mw-for-device").forEach(e => { e.hidden = scope !== "device"; });
    document.querySelectorAll("#maintenance .mw-for-kind").forEach(e => { e.hidden = scope !== "kind"; });
    if (scope === "device") {
      const sel = $m("#mw-device"), want = sel.dataset.want || sel.value;
      const devs = await devicesOf($m("#mw-building").value);
      sel.innerHTML = devs.map(d => `<option value="${esc(d.id)}">${esc(t("k_" + d.kind))} · ${esc(d.location || "")} ${esc(d.id)}</option>`).join("");
      if (want && devs.some(d => d.id === want)) sel.value = want;
    }
  }

  function overrideChanged() {
    const on = $m("#mw-override").checked;
    document.querySelectorAll("#maintenance .mw-for-override").forEach(e => { e.hidden = !on; });
  }

  function wire(keep) {
    $m("#mw-close").addEventListener("click", () => { M.open = false; render(); });
    const form = $m("#mw-form");
    if (form) {
      if (keep) {
        for (const [id, v] of Object.entries(keep)) { const e = $m("#" + id); if (e && id !== "override" && id !== "error") e.value = v; }
        if (keep["mw-device"]) $m("#mw-device").dataset.want = keep["mw-device"];
        $m("#mw-override").checked = keep.override;
        $m("#mw-error").textContent = keep.error;
      }
      $m("#mw-scope").addEventListener("change", scopeChanged);
      $m("#mw-building").addEventListener("change", () => { $m("#mw-device").dataset.want = ""; scopeChanged(); });
      $m("#mw-override").addEventListener("change", overrideChanged);
      scopeChanged(); overrideChanged();
      form.addEventListener("submit", create);
    }
    document.querySelectorAll("#maintenance .mw-row").forEach(row => {
      const id = row.dataset.id;
      const ext = row.querySelector(".mw-extend"), end = row.querySelector(".mw-end");
      if (ext) ext.addEventListener("click", () => act(row, `/api/maintenance/${encodeURIComponent(id)}/extend`,
        { minutes: Number(row.querySelector(".mw-extend-min").value), reason: row.querySelector(".mw-why").value || t("mw_extend_default") }));
      if (end) end.addEventListener("click", () => act(row, `/api/maintenance/${encodeURIComponent(id)}/end`,
        { reason: row.querySelector(".mw-why").value || t("mw_end_default") }));
    });
  }

  async function send(path, body) {
    const headers = { "Content-Type": "application/json", Authorization: "Bearer " + S.token };
    if (LANG === "en") headers["Accept-Language"] = "en";
    const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.detail || String(r.status));
    return data;
  }

  async function create(ev) {
    ev.preventDefault();
    const scope = $m("#mw-scope").value, body = { scope, minutes: Number($m("#mw-minutes").value), reason: $m("#mw-reason").value };
    if (scope === "device") body.device_id = $m("#mw-device").value;
    if (scope === "kind") body.device_kind = $m("#mw-kind").value;
    if ($m("#mw-override").checked) body.life_safety_override = { reason: $m("#mw-override-reason").value };
    try {
      await send(`/api/buildings/${encodeURIComponent($m("#mw-building").value)}/maintenance`, body);
      $m("#mw-reason").value = ""; $m("#mw-error").textContent = "";
      await refresh();
    } catch (e) { $m("#mw-error").textContent = e.message; }
  }

  async function act(row, path, body) {
    try { await send(path, body); await refresh(); } catch (e) {
      let err = row.querySelector(".mw-error");
      if (!err) { err = document.createElement("div"); err.className = "mw-error"; err.setAttribute("role", "alert"); row.appendChild(err); }
      err.textContent = e.message;
    }
  }

  async function boot() {
    if (M.started || typeof S === "undefined" || !S.me || !S.token) return;
    M.started = true;
    try { await loadBuildings(); } catch (e) { M.buildings = []; }
    await refresh();
    M.timer = setInterval(refresh, 15000);
  }

  setInterval(() => {
    if (typeof S === "undefined") return;
    if (S.me && S.token && !M.started) boot();
    if ((!S.me || !S.token) && M.started) { M.started = false; clearInterval(M.timer); M.windows = []; M.open = false; render(); }
  }, 500);
  document.getElementById("lang").addEventListener("click", () => setTimeout(render, 0));
})();
