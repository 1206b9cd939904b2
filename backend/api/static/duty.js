// Duty on the console (值班交接, issue 17): who is on duty now (a header indicator, red while fewer than the two
// officers GB 25506 asks for are logged in to a shift), a panel with four parts: 当班 (log in to / out of a shift),
// 排班 (who holds each rung's seat now, and overrides: leave, sickness, a swap, a one-off assignment, with a time
// range), 交接班 (write a handover; accept another officer's, with objections), 审计 (one audit list). Loaded after
// console.js; uses its `S` (session), `api()`, `LANG` and `S.utcOffset`. Everything it draws lives under #duty
// (the mount point in console.html), #duty-now (the indicator) and the nav link #duty-link. Times are the
// server's text in the site's time zone (`*_local`); the time a person types is read in the site's zone too.
"use strict";
(() => {
  const D = { open: false, started: false, part: "now", now: null, roster: null, overrides: [], draft: null, handovers: [], audit: [], timer: null };
  const $d = sel => document.querySelector(sel);
  const esc = s => String(s == null ? "" : s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const caps = () => (S.me && S.me.capabilities) || [];
  const watcher = () => S.me && (S.me.role === "admin" || S.me.role === "duty_officer");
  const planner = () => caps().includes("dispatch");
  const TX = {
    zh: { link: "值班交接", title: "值班与交接班", close: "关闭", now: "当班", roster: "排班", handover: "交接班", audit: "审计",
          on_duty: "在岗", nobody: "无人在岗", start: "开始值班（上岗）", end: "结束值班（下岗）", me_on: "您正在值班", me_off: "您未在值班",
          rostered: "排班表应在岗", seat: "岗位", holder: "当前在岗", via_holder: "当班", via_deputy: "代班", via_vacant: "空缺",
          kind: "类型", k_leave: "请假", k_sick: "病假", k_away: "不在岗", k_swap: "换班", k_assign: "临时指定", who: "人员", sub: "顶替人员",
          scope: "范围", from: "开始（北京时间）", hours: "时长（小时）", reason: "原因", add: "登记调整", cancel: "取消", cancel_why: "取消原因",
          overrides: "排班调整", none: "暂无", notes: "交班说明", write: "填写交班", accept: "接班", objections: "异议（可不填）",
          open_alarms: "未结警报", overdue: "超时未确认", windows: "维护窗口", silenced: "静默中", offline: "离线设备", work_orders: "逾期整改工单",
          pending: "待接班", accepted: "已接班", by: "交班人", accepted_by: "接班人", at: "时间", actor: "操作人", what: "内容",
          draft: "当前情况（交班时将记录）", short: "不足 2 人（GB 25506）", all: "全部", back_default: "提前返岗", filter: "只看" },
    en: { link: "Duty", title: "Duty and handover", close: "Close", now: "On duty", roster: "Roster", handover: "Handover", audit: "Audit",
          on_duty: "On duty", nobody: "nobody on duty", start: "Start my shift", end: "End my shift", me_on: "You are on shift", me_off: "You are not on shift",
          rostered: "Rostered", seat: "Seat", holder: "On duty now", via_holder: "holder", via_deputy: "deputy", via_vacant: "vacant",
          kind: "Kind", k_leave: "Leave", k_sick: "Sick", k_away: "Away", k_swap: "Swap", k_assign: "Assign", who: "Person", sub: "Stands in",
          scope: "Scope", from: "Start (site time)", hours: "Hours", reason: "Reason", add: "Add override", cancel: "Cancel", cancel_why: "Why cancel",
          overrides: "Overrides", none: "none", notes: "Notes", write: "Write handover", accept: "Accept", objections: "Objections (optional)",
          open_alarms: "Open alarms", overdue: "Overdue", windows: "Maintenance windows", silenced: "Silenced", offline: "Devices offline", work_orders: "Overdue work orders",
          pending: "pending", accepted: "accepted", by: "By", accepted_by: "Accepted by", at: "Time", actor: "Who", what: "What",
          draft: "As things stand (recorded when written)", short: "fewer than 2 (GB 25506)", all: "All", back_default: "back early", filter: "Only" },
  };
  const tx = k => (TX[LANG === "en" ? "en" : "zh"][k] || k);
  const warn = c => (LANG === "en" && c.warning_en) || c.warning;
  const en = () => LANG === "en";

  const style = document.createElement("style");
  style.textContent = `
#duty-now { display: inline-block; padding: 2px 8px; border-radius: 3px; background: #17361f; color: #7ee787; font-size: 13px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 40vw; }
#duty-now.short { background: var(--red, #d73a49); color: #fff; font-weight: 600; }
#duty-link { color: inherit; text-decoration: none; white-space: nowrap; padding: 4px 10px; border: 1px solid var(--line, #2a3746); border-radius: 3px; }
#duty .dt-panel { position: fixed; top: 0; right: 0; bottom: 0; width: min(640px, 100vw); background: var(--panel, #16202c); color: var(--text, #e6edf3);
  z-index: 60; border-left: 1px solid var(--line, #2a3746); overflow-y: auto; padding: 10px 12px; box-sizing: border-box; }
#duty h2 { margin: 0 0 8px; font-size: 18px; display: flex; justify-content: space-between; align-items: center; gap: 8px; }
#duty .dt-parts { display: flex; gap: 4px; flex-wrap: wrap; margin-bottom: 8px; }
#duty .dt-parts button.active { background: var(--accent, #1f6feb); color: #fff; }
#duty .dt-warn { background: var(--red, #d73a49); color: #fff; padding: 6px 8px; border-radius: 3px; margin: 6px 0; font-weight: 600; }
#duty .dt-row { border: 1px solid var(--line, #2a3746); border-radius: 4px; padding: 6px 8px; margin-bottom: 6px; }
#duty .dt-row.deputy { border-color: var(--yellow, #d9a400); }
#duty .dt-row.vacant { border-color: var(--red, #d73a49); }
#duty .dt-row .acts { display: flex; gap: 6px; flex-wrap: wrap; margin-top: 4px; }
#duty .dt-row .acts input { flex: 1; min-width: 8em; padding: 3px; }
#duty form { display: grid; grid-template-columns: 8em 1fr; gap: 6px 8px; align-items: center; margin: 8px 0; border: 1px solid var(--line, #2a3746); padding: 8px; border-radius: 4px; }
#duty form input, #duty form select, #duty form textarea { width: 100%; box-sizing: border-box; padding: 4px; font: inherit; }
#duty form .full { grid-column: 1 / -1; }
#duty .dt-error { color: #ffa198; font-weight: 600; }
#duty .tag { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; background: #21303f; margin-left: 4px; }
#duty .tag.deputy { background: var(--yellow, #d9a400); color: #111; }
#duty .tag.vacant, #duty .tag.pending { background: var(--red, #d73a49); color: #fff; }
#duty .dim { color: var(--dim, #8b949e); font-size: 12px; }
#duty ul { margin: 4px 0 8px 1.2em; padding: 0; }
#duty table { width: 100%; border-collapse: collapse; font-size: 13px; }
#duty td, #duty th { border-bottom: 1px solid var(--line, #2a3746); padding: 3px 4px; text-align: left; vertical-align: top; }
@media (max-width: 480px) { #duty form { grid-template-columns: 1fr; } #duty .dt-panel { padding: 6px; } #duty-now { max-width: 100%; } }
`;
  document.head.appendChild(style);

  async function send(path, body) {
    const headers = { "Content-Type": "application/json", Authorization: "Bearer " + S.token };
    if (LANG === "en") headers["Accept-Language"] = "en";
    const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body || {}) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.detail || String(r.status));
    return data;
  }

  // a datetime-local value typed in the site's zone -> epoch ms
  function siteMs(value) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value || "");
    if (!m) return null;
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) - (S.utcOffset || 480) * 60000;
  }
  function siteValue(ms) { return new Date(ms + (S.utcOffset || 480) * 60000).toISOString().slice(0, 16); }

  // -- the header indicator and the nav link --------------------------------------------------------------------
  function indicator() {
    const el = $d("#duty-now");
    if (!el) return;
    el.hidden = !S.me || !D.now;
    if (!D.now) return;
    const cs = D.now.communities;
    const names = cs.flatMap(c => c.officers.map(o => o.display_name || o.username));
    const short = cs.some(c => !c.ok);
    el.classList.toggle("short", short);
    const lacking = cs.find(c => !c.ok);
    el.textContent = `${tx("on_duty")} ${names.length}${names.length ? "：" + names.join("、") : ""}` + (lacking ? ` · ${tx("short")}` : "");
    el.title = lacking ? warn(lacking) : el.textContent;
    const link = $d("#duty-link");
    if (link) { link.textContent = tx("link"); link.hidden = !S.me; }
  }

  // -- loading -------------------------------------------------------------------------------------------------------
  async function refreshNow() {
    try { D.now = await api("/api/duty/now"); } catch (e) { D.now = null; }
    indicator();
  }
  async function load() {
    await refreshNow();
    try {
      if (D.part === "roster") {
        D.roster = await api("/api/duty/roster");
        D.overrides = (await api("/api/duty/roster/overrides")).overrides;
      } else if (D.part === "handover" && watcher()) {
        D.draft = await api("/api/duty/handover/draft");
        D.handovers = (await api("/api/duty/handovers")).handovers;
      } else if (D.part === "audit" && watcher()) {
        const area = D.auditArea ? `&area=${encodeURIComponent(D.auditArea)}` : "";
        D.audit = (await api("/api/duty/audit?limit=200" + area)).entries;
      }
    } catch (e) { D.loadError = e.message; }
    render();
  }

  // -- drawing --------------------------------------------------------------------------------------------------------
  function partNow() {
    if (!D.now) return "";
    const rows = D.now.communities.map(c => `
      <div class="dt-row" data-community="${esc(c.community)}">
        <b>${esc(c.name)}</b> <span class="tag${c.ok ? "" : " vacant"}">${c.count}/${c.required}</span>
        ${c.warning ? `<div class="dt-warn" role="alert">${esc(warn(c))}</div>` : ""}
        <div>${tx("on_duty")}：${c.officers.length ? c.officers.map(o => `${esc(o.display_name || o.username)} <span class="dim">${esc(o.since_local)}</span>`).join("、") : tx("nobody")}</div>
        <div class="dim">${tx("rostered")}：${c.rostered.map(p => esc(p.name)).join("、") || tx("none")}</div>
      </div>`).join("");
    const mine = watcher() ? `<div class="acts"><span>${D.now.me ? tx("me_on") : tx("me_off")}</span>
        <button id="dt-shift" data-act="${D.now.me ? "end" : "start"}">${D.now.me ? tx("end") : tx("start")}</button></div>` : "";
    return rows + mine + `<div id="dt-error" class="dt-error" role="alert"></div>`;
  }

  function peopleOptions(selected) {
    const ps = (D.roster && D.roster.people) || [];
    return `<option value=""></option>` + ps.map(p => `<option value="${esc(p.id)}"${p.id === selected ? " selected" : ""}>${esc(p.name)}（${esc(p.id)}）</option>`).join("");
  }

  function partRoster() {
    if (!D.roster) return "";
    const seats = D.roster.seats.filter(s => !D.seatFilter || s.seat === D.seatFilter);
    const seatNames = [...new Map(D.roster.seats.map(s => [s.seat, s.seat_zh])).entries()];
    const form = planner() ? `
      <form id="dt-form">
        <label for="dt-kind">${tx("kind")}</label>
        <select id="dt-kind">${["leave", "sick", "away", "swap", "assign"].map(k => `<option value="${k}">${tx("k_" + k)}</option>`).join("")}</select>
        <label for="dt-responder" class="dt-off">${tx("who")}</label><select id="dt-responder" class="dt-off">${peopleOptions()}</select>
        <label for="dt-substitute">${tx("sub")}</label><select id="dt-substitute">${peopleOptions()}</select>
        <label for="dt-scope" class="dt-assign">${tx("scope")}</label>
        <select id="dt-scope" class="dt-assign">${D.roster.seats.filter(s => s.seat !== "volunteer").map(s => `<option value="${esc(s.seat)}|${esc(s.scope)}">${esc(s.seat_zh)} · ${esc(s.scope_name)}</option>`).join("")}</select>
        <label for="dt-start">${tx("from")}</label><input id="dt-start" type="datetime-local" value="${siteValue(now())}">
        <label for="dt-hours">${tx("hours")}</label><input id="dt-hours" type="number" min="0.25" step="0.25" value="8">
        <label for="dt-reason">${tx("reason")}</label><input id="dt-reason" maxlength="500">
        <button id="dt-add" class="full" type="submit">${tx("add")}</button>
        <div id="dt-error" class="dt-error full" role="alert"></div>
      </form>` : "";
    const ovs = D.overrides.length ? D.overrides.map(o => `
      <div class="dt-row" data-id="${esc(o.id)}"><span class="tag">${esc(en() ? tx("k_" + o.kind) : o.kind_zh)}</span> <span class="tag">${esc(en() ? o.state : o.state_zh)}</span>
        <div>${esc(o.text)}</div><div class="dim">${esc(o.author)} · ${esc(o.start_local)} – ${esc(o.end_local)}</div>
        ${planner() && o.state !== "cancelled" ? `<div class="acts"><input class="dt-why" placeholder="${tx("cancel_why")}"><button class="dt-cancel">${tx("cancel")}</button></div>` : ""}
      </div>`).join("") : `<p class="dim">${tx("none")}</p>`;
    const filter = `<label>${tx("filter")} <select id="dt-seat-filter"><option value="">${tx("all")}</option>${seatNames.map(([v, n]) => `<option value="${esc(v)}"${v === D.seatFilter ? " selected" : ""}>${esc(n)}</option>`).join("")}</select></label>`;
    const rows = seats.map(s => `
      <div class="dt-row ${esc(s.via)}" data-seat="${esc(s.seat)}" data-scope="${esc(s.scope)}">
        <b>${esc(s.seat_zh)} · ${esc(s.scope_name)}</b> <span class="tag ${esc(s.via)}">${tx("via_" + s.via)}</span>
        <div class="holders">${s.on_duty.map(p => esc(p.name)).join("、") || tx("nobody")}</div>
        ${s.via !== "holder" && s.rostered.length ? `<div class="dim">${tx("rostered")}：${s.rostered.map(p => esc(p.name)).join("、")}</div>` : ""}
      </div>`).join("");
    return form + `<h3>${tx("overrides")}</h3><div id="dt-overrides">${ovs}</div><h3>${tx("holder")}</h3>${filter}<div id="dt-seats">${rows}</div>`;
  }

  function list(title, items, line) {
    return `<h4>${esc(title)}（${items.length}）</h4>` + (items.length ? `<ul>${items.map(x => `<li>${line(x)}</li>`).join("")}</ul>` : "");
  }
  function snapshotHtml(s) {
    const a = x => `${esc(x.title)}${x.building && !String(x.title).includes(x.building) ? " · " + esc(x.building) : ""} <span class="dim">${esc(x.raised_local)}</span>`;
    return list(tx("open_alarms"), s.open_alarms, a) + list(tx("overdue"), s.overdue, x => `${a(x)} · ${esc((x.rungs || []).join("、"))}`)
      + list(tx("windows"), s.windows, x => `${esc(x.building)} · ${esc(x.what)} → ${esc(x.ends_local)}（${esc(x.reason)}）`)
      + list(tx("silenced"), s.silenced, x => `${a(x)} → ${esc(x.until_local || "")}`) + list(tx("offline"), s.offline, a)
      + (s.work_orders_available ? list(tx("work_orders"), s.work_orders || [], x => `${esc(x.title)} · ${esc(x.building || "")} · ${esc(x.assignee || "")} → ${esc(x.due_local)}`) : "");
  }

  function partHandover() {
    if (!watcher()) return "";
    const draft = D.draft ? `<h3>${tx("draft")}</h3>${snapshotHtml(D.draft.snapshot)}` : "";
    const form = `<form id="dt-hform"><label for="dt-notes" class="full">${tx("notes")}</label>
      <textarea id="dt-notes" class="full" rows="3" maxlength="4000"></textarea>
      <button id="dt-write" class="full" type="submit">${tx("write")}</button><div id="dt-error" class="dt-error full" role="alert"></div></form>`;
    const hs = D.handovers.map(h => `
      <div class="dt-row handover" data-id="${esc(h.id)}">
        <b>${esc(h.community_name)}</b> <span class="tag ${h.state}">${esc(en() ? tx(h.state) : h.state_zh)}</span>
        <div class="dim">${tx("by")}：${esc(h.author)} · ${esc(h.written_local)}${h.accepted_by ? ` · ${tx("accepted_by")}：${esc(h.accepted_by)} · ${esc(h.accepted_local)}` : ""}</div>
        ${h.notes ? `<div class="notes">${esc(h.notes)}</div>` : ""}
        ${h.objections ? `<div class="objections">${tx("objections")}：${esc(h.objections)}</div>` : ""}
        <details><summary>${tx("open_alarms")} ${h.snapshot.open_alarms.length} · ${tx("overdue")} ${h.snapshot.overdue.length} · ${tx("windows")} ${h.snapshot.windows.length} · ${tx("offline")} ${h.snapshot.offline.length}</summary>${snapshotHtml(h.snapshot)}</details>
        ${h.state === "pending" ? `<div class="acts"><input class="dt-objections" placeholder="${tx("objections")}"><button class="dt-accept">${tx("accept")}</button></div>` : ""}
      </div>`).join("");
    return draft + form + hs;
  }

  function partAudit() {
    if (!watcher()) return "";
    const areas = ["roster", "shift", "handover", "admin", "login", "maintenance", "silence"];
    const zh = { roster: "排班", shift: "值班", handover: "交接班", admin: "账号管理", login: "登录", maintenance: "维护窗口", silence: "静默" };
    const pick = `<label>${tx("filter")} <select id="dt-area"><option value="">${tx("all")}</option>${areas.map(a => `<option value="${a}"${a === D.auditArea ? " selected" : ""}>${LANG === "en" ? a : zh[a]}</option>`).join("")}</select></label>`;
    const rows = D.audit.map(e => `<tr data-area="${esc(e.area)}"><td>${esc(e.at_local)}</td><td>${esc(e.area_zh)}</td><td>${esc(e.actor)}</td>
      <td>${esc(e.action_zh)}<div class="dim">${esc(e.detail)}</div></td></tr>`).join("");
    return pick + `<table id="dt-audit"><thead><tr><th>${tx("at")}</th><th></th><th>${tx("actor")}</th><th>${tx("what")}</th></tr></thead><tbody>${rows}</tbody></table>`;
  }

  function render() {
    indicator();
    const mount = $d("#duty");
    if (!mount) return;
    if (!D.open || !S.me) { mount.innerHTML = ""; return; }
    const parts = ["now", "roster", ...(watcher() ? ["handover", "audit"] : [])];
    const body = { now: partNow, roster: partRoster, handover: partHandover, audit: partAudit }[D.part]();
    mount.innerHTML = `<div id="dt-panel" class="dt-panel" role="dialog" aria-labelledby="dt-title">
      <h2><span id="dt-title">${tx("title")}</span><button id="dt-close">${tx("close")}</button></h2>
      <div class="dt-parts">${parts.map(p => `<button data-part="${p}" class="${p === D.part ? "active" : ""}">${tx(p)}</button>`).join("")}</div>
      <div id="dt-body">${body}</div></div>`;
    wire();
  }

  function fail(e) { const el = $d("#dt-error"); if (el) el.textContent = e.message; }

  function wire() {
    $d("#dt-close").addEventListener("click", () => { D.open = false; render(); });
    document.querySelectorAll("#duty .dt-parts button").forEach(b => b.addEventListener("click", () => { D.part = b.dataset.part; render(); load(); }));
    const shift = $d("#dt-shift");
    if (shift) shift.addEventListener("click", async () => { try { await send(`/api/duty/shifts/${shift.dataset.act}`, {}); await load(); } catch (e) { fail(e); } });
    const form = $d("#dt-form");
    if (form) {
      const kind = $d("#dt-kind");
      const shape = () => {
        const assign = kind.value === "assign";
        form.querySelectorAll(".dt-assign").forEach(e => { e.hidden = !assign; });
        form.querySelectorAll(".dt-off").forEach(e => { e.hidden = assign; });
      };
      kind.addEventListener("change", shape); shape();
      form.addEventListener("submit", async ev => {
        ev.preventDefault();
        const start = siteMs($d("#dt-start").value), hours = Number($d("#dt-hours").value);
        const body = { kind: kind.value, reason: $d("#dt-reason").value, start_ms: start, end_ms: start == null ? null : Math.round(start + hours * 3600000) };
        if (kind.value === "assign") { const [seat, scope] = $d("#dt-scope").value.split("|"); body.seat = seat; body.scope = scope; }
        else body.responder = $d("#dt-responder").value || null;
        body.substitute = $d("#dt-substitute").value || null;
        try { await send("/api/duty/roster/overrides", body); await load(); } catch (e) { fail(e); }
      });
    }
    const sf = $d("#dt-seat-filter");
    if (sf) sf.addEventListener("change", () => { D.seatFilter = sf.value; render(); });
    document.querySelectorAll("#dt-overrides .dt-row").forEach(row => {
      const b = row.querySelector(".dt-cancel");
      if (b) b.addEventListener("click", async () => {
        try { await send(`/api/duty/roster/overrides/${encodeURIComponent(row.dataset.id)}/cancel`, { reason: row.querySelector(".dt-why").value || tx("back_default") }); await load(); }
        catch (e) { fail(e); }
      });
    });
    const hform = $d("#dt-hform");
    if (hform) hform.addEventListener("submit", async ev => {
      ev.preventDefault();
      try { await send("/api/duty/handovers", { notes: $d("#dt-notes").value }); await load(); } catch (e) { fail(e); }
    });
    document.querySelectorAll("#duty .handover").forEach(row => {
      const b = row.querySelector(".dt-accept");
      if (b) b.addEventListener("click", async () => {
        try { await send(`/api/duty/handovers/${encodeURIComponent(row.dataset.id)}/accept`, { objections: row.querySelector(".dt-objections").value }); await load(); }
        catch (e) { fail(e); }
      });
    });
    const area = $d("#dt-area");
    if (area) area.addEventListener("change", () => { D.auditArea = area.value; load(); });
  }

  function openPanel(ev) {
    if (ev) ev.preventDefault();
    if (!S.me || !S.token) return;
    D.open = true;
    render();
    load();
  }

  async function boot() {
    if (D.started || typeof S === "undefined" || !S.me || !S.token) return;
    D.started = true;
    await refreshNow();
    D.timer = setInterval(refreshNow, 15000);
  }

  setInterval(() => {
    if (typeof S === "undefined") return;
    if (S.me && S.token && !D.started) boot();
    if ((!S.me || !S.token) && D.started) { D.started = false; clearInterval(D.timer); D.now = null; D.open = false; render(); }
  }, 500);
  document.getElementById("lang").addEventListener("click", () => setTimeout(render, 0));
  const link = $d("#duty-link");
  if (link) link.addEventListener("click", openPanel);  // wired at once: a click before the first poll still opens the panel
})();
