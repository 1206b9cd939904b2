// History (告警历史): every alarm kept, filtered, a page at a time (the server's keyset cursor), CSV / XLSX exports of
// the filtered list, and one alarm's 处置记录单 (printable page, XLSX). Plain JS on top of console.js (S, $, esc, api,
// LANG): it adds its own view and styles, shows it when its tab (#tabs [data-tab="history"]) is chosen.
// Times come from the server already in the site's time zone (raised_local): the browser's zone never matters.
"use strict";
(() => {
  const H = { cursors: [null], page: 0, data: null, places: null, types: null, typeWords: {} };
  const TX = {
    zh: {
      tab: "历史记录", title: "告警历史", from: "开始日期", to: "结束日期", community: "社区", grid: "网格", building: "楼栋", type: "类型",
      severity: "级别", state: "状态", drill: "演练", false_alarm: "误报", q: "搜索（楼栋、设备编号、内容）", all: "全部", search: "查询",
      reset: "重置", csv: "导出 CSV", xlsx: "导出 Excel", real_only: "仅真实告警", drill_only: "仅演练", yes: "是", no: "否",
      raised: "报警时间", what: "告警", place: "位置", actions: "记录单", record: "记录单", record_xlsx: "Excel", prev: "上一页", next: "下一页",
      total: "共 {n} 条", page: "第 {p} 页", empty: "没有符合条件的告警", loading: "查询中…", tz: "时间为{tz}时间", exporting: "正在导出…",
      sev_critical: "紧急", sev_major: "重要", sev_minor: "一般", sev_info: "提示",
      st_raised: "报警", st_notified: "已通知", st_acknowledged: "已确认", st_en_route: "已出发", st_on_scene: "已到场", st_handled: "处置完成",
      st_closed: "复核关闭", st_archived: "归档", st_false_alarm: "误报", st_suppressed: "已抑制", st_silenced: "维护静默", st_awaiting_verification: "待复核",
    },
    en: {
      tab: "History", title: "Alarm history", from: "From", to: "To", community: "Community", grid: "Grid", building: "Building", type: "Type",
      severity: "Severity", state: "State", drill: "Drill", false_alarm: "False alarm", q: "Search (building, device id, text)", all: "All",
      search: "Search", reset: "Reset", csv: "Export CSV", xlsx: "Export Excel", real_only: "Real only", drill_only: "Drills only", yes: "Yes",
      no: "No", raised: "Raised", what: "Alarm", place: "Place", actions: "Record", record: "Record", record_xlsx: "Excel", prev: "Previous",
      next: "Next", total: "{n} alarms", page: "page {p}", empty: "No alarms match", loading: "Searching…", tz: "times in {tz}", exporting: "Exporting…",
      sev_critical: "Critical", sev_major: "Major", sev_minor: "Minor", sev_info: "Info",
      st_raised: "Raised", st_notified: "Notified", st_acknowledged: "Acknowledged", st_en_route: "En route", st_on_scene: "On scene",
      st_handled: "Handled", st_closed: "Closed", st_archived: "Archived", st_false_alarm: "False alarm", st_suppressed: "Suppressed",
      st_silenced: "Silenced", st_awaiting_verification: "Awaiting verification",
    },
  };
  const tx = (k, p) => { let s = (TX[LANG] || TX.zh)[k] ?? k; for (const [a, b] of Object.entries(p || {})) s = s.replace("{" + a + "}", b); return s; };
  const STATES = ["raised", "notified", "acknowledged", "en_route", "on_scene", "handled", "awaiting_verification", "closed", "false_alarm",
                  "archived", "suppressed", "silenced"];

  const style = document.createElement("style");
  style.textContent = `
#view-history .filters { display: flex; flex-wrap: wrap; gap: 8px 10px; align-items: flex-end; margin-bottom: 10px; }
#view-history .filters label { display: flex; flex-direction: column; gap: 3px; font-size: 12px; color: var(--dim); }
#view-history .filters input[type=search] { min-width: 200px; }
#view-history .bar { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 8px 0; color: var(--dim); }
#view-history .bar .grow { flex: 1; }
#view-history .scroll { overflow-x: auto; }
#view-history table td.nowrap, #view-history .nowrap { white-space: nowrap; }
#view-history td.when { white-space: nowrap; }
#view-history .err { color: #ff7b72; }
#view-history a.rec { color: #79b8ff; cursor: pointer; margin-right: 8px; }
@media (max-width: 700px) {
  #view-history .filters label { flex: 1 1 45%; } #view-history .filters input, #view-history .filters select { width: 100%; }
  #view-history .filters input[type=search] { min-width: 0; }
  #view-history th.opt, #view-history td.opt { display: none; }
  #view-history td.when { white-space: normal; min-width: 6.5em; }
  #view-history th, #view-history td { padding: 6px 4px; }
  #view-history td.nowrap { white-space: normal; } #view-history a.rec { display: block; margin: 0 0 6px; }
}`;
  document.head.appendChild(style);

  const view = document.createElement("section");
  view.id = "view-history";
  view.className = "view";
  view.hidden = true;
  $("main").appendChild(view);

  function opt(v, label, sel) { return `<option value="${esc(v)}"${sel ? " selected" : ""}>${esc(label)}</option>`; }
  function form() {
    const f = H.form || {};
    const P = H.places || { communities: [], grids: [], buildings: [] };
    const grids = P.grids.filter(g => !f.community || g.community === f.community);
    const blds = P.buildings.filter(b => !f.grid || b.grid === f.grid).filter(b => !f.community || grids.some(g => g.id === b.grid));
    return `<form class="filters" id="h-form">
      <label>${esc(tx("from"))}<input type="date" name="from" value="${esc(f.from || "")}"></label>
      <label>${esc(tx("to"))}<input type="date" name="to" value="${esc(f.to || "")}"></label>
      <label>${esc(tx("community"))}<select name="community">${opt("", tx("all"))}${P.communities.map(c => opt(c.id, c.name, f.community === c.id)).join("")}</select></label>
      <label>${esc(tx("grid"))}<select name="grid">${opt("", tx("all"))}${grids.map(g => opt(g.id, g.name, f.grid === g.id)).join("")}</select></label>
      <label>${esc(tx("building"))}<select name="building">${opt("", tx("all"))}${blds.map(b => opt(b.id, b.name, f.building === b.id)).join("")}</select></label>
      <label>${esc(tx("type"))}<select name="type">${opt("", tx("all"))}${(H.types || []).map(k => opt(k, H.typeWords[k] || k, f.type === k)).join("")}</select></label>
      <label>${esc(tx("severity"))}<select name="severity">${opt("", tx("all"))}${["critical", "major", "minor", "info"].map(k => opt(k, tx("sev_" + k), f.severity === k)).join("")}</select></label>
      <label>${esc(tx("state"))}<select name="state">${opt("", tx("all"))}${STATES.map(k => opt(k, tx("st_" + k), f.state === k)).join("")}</select></label>
      <label>${esc(tx("drill"))}<select name="drill">${opt("", tx("all"))}${opt("false", tx("real_only"), f.drill === "false")}${opt("true", tx("drill_only"), f.drill === "true")}</select></label>
      <label>${esc(tx("false_alarm"))}<select name="false_alarm">${opt("", tx("all"))}${opt("true", tx("yes"), f.false_alarm === "true")}${opt("false", tx("no"), f.false_alarm === "false")}</select></label>
      <label>${esc(tx("q"))}<input type="search" name="q" maxlength="100" value="${esc(f.q || "")}"></label>
      <button type="submit" class="primary" id="h-search">${esc(tx("search"))}</button>
      <button type="button" id="h-reset">${esc(tx("reset"))}</button>
    </form>
    <div class="bar"><span id="h-count"></span><span class="grow"></span>
      <button type="button" id="h-csv">${esc(tx("csv"))}</button><button type="button" id="h-xlsx">${esc(tx("xlsx"))}</button></div>
    <div id="h-msg" class="err" role="alert"></div>
    <div class="scroll"><table id="h-table"><thead><tr>
      <th>${esc(tx("raised"))}</th><th>${esc(tx("type"))}</th><th>${esc(tx("severity"))}</th><th>${esc(tx("state"))}</th><th>${esc(tx("place"))}</th>
      <th class="opt">${esc(tx("what"))}</th><th>${esc(tx("actions"))}</th></tr></thead><tbody id="h-rows"></tbody></table></div>
    <p id="h-empty" hidden>${esc(tx("empty"))}</p>
    <div class="pager bar"><button type="button" id="h-prev">‹ ${esc(tx("prev"))}</button><span id="h-page"></span><button type="button" id="h-next">${esc(tx("next"))} ›</button></div>`;
  }

  function params() {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(H.form || {})) if (v) p.set(k, v);
    return p;
  }
  function readForm() {
    const fd = new FormData($("#h-form"));
    H.form = {};
    for (const [k, v] of fd.entries()) if (String(v).trim()) H.form[k] = String(v).trim();
  }
  function render() {
    view.innerHTML = form();
    $("#h-form").addEventListener("submit", ev => { ev.preventDefault(); readForm(); H.cursors = [null]; H.page = 0; load(); });
    $("#h-form").addEventListener("change", ev => {
      if (["community", "grid"].includes(ev.target.name)) { readForm(); if (ev.target.name === "community") { delete H.form.grid; delete H.form.building; } else { delete H.form.building; } render(); rows(); }
    });
    $("#h-reset").addEventListener("click", () => { H.form = {}; H.cursors = [null]; H.page = 0; render(); load(); });
    $("#h-csv").addEventListener("click", () => download("/api/history.csv?" + params(), "csv"));
    $("#h-xlsx").addEventListener("click", () => download("/api/history.xlsx?" + params(), "xlsx"));
    $("#h-prev").addEventListener("click", () => { if (H.page > 0) { H.page--; load(); } });
    $("#h-next").addEventListener("click", () => { if (H.cursors[H.page + 1]) { H.page++; load(); } });
  }
  function rows() {
    const d = H.data;
    if (!d) return;
    $("#h-rows").innerHTML = d.alarms.map(a => `<tr data-alarm-id="${esc(a.id)}" class="sev-${esc(a.severity)} ${a.drill ? "is-drill" : ""} ${a.is_open ? "" : "closed"}">
      <td class="when">${esc(a.raised_local.slice(0, 10))} <span class="nowrap">${esc(a.raised_local.slice(11))}</span></td>
      <td>${esc(a.type_text)}${a.drill ? `<span class="tag drill">${esc(tx("drill"))}</span>` : ""}${a.false_alarm ? `<span class="tag state">${esc(tx("st_false_alarm"))}</span>` : ""}</td>
      <td><span class="sev ${esc(a.severity)}">${esc(a.severity_text)}</span></td><td>${esc(a.state_text)}</td>
      <td>${esc([a.building_name, a.unit ? a.unit + (LANG === "zh" ? "单元" : "u") : "", a.room].filter(Boolean).join(" "))}</td>
      <td class="opt">${esc(a.title)}</td>
      <td class="nowrap"><a class="rec" data-record="${esc(a.id)}">${esc(tx("record"))}</a><a class="rec" data-record-xlsx="${esc(a.id)}">${esc(tx("record_xlsx"))}</a></td></tr>`).join("");
    $("#h-empty").hidden = d.alarms.length > 0;
    if (d.total !== null && d.total !== undefined) H.total = d.total;
    $("#h-count").textContent = tx("total", { n: (H.total ?? 0).toLocaleString() }) + " · " + tx("tz", { tz: d.time_zone === "Asia/Shanghai" ? (LANG === "zh" ? "北京" : "Beijing time") : d.time_zone });
    $("#h-page").textContent = tx("page", { p: H.page + 1 });
    $("#h-prev").disabled = H.page === 0;
    $("#h-next").disabled = !d.next_cursor;
  }
  async function load() {
    const p = params();
    const after = H.cursors[H.page];
    if (after) p.set("after", after);
    p.set("limit", "50");
    $("#h-msg").textContent = "";
    try {
      const d = await api("/api/history?" + p);
      H.data = d;
      H.cursors[H.page + 1] = d.next_cursor;
      if (d.places) H.places = d.places;
      if (d.types) { H.types = d.types; H.typeWords = d.type_words || {}; }
      if (!H.renderedWith || H.renderedWith !== LANG || d.places) { const keep = H.form; render(); H.form = keep; H.renderedWith = LANG; }
      rows();
    } catch (e) { $("#h-msg").textContent = e.message; }
  }
  async function fetchFile(url) {
    const r = await fetch(url, { headers: { Authorization: "Bearer " + S.token, "Accept-Language": LANG === "en" ? "en" : "zh-CN" } });
    if (!r.ok) { let m = r.statusText; try { m = (await r.json()).detail || m; } catch (e) { /* not JSON */ } throw new Error(m); }
    const cd = r.headers.get("content-disposition") || "";
    const m = /filename\*=UTF-8''([^;]+)/.exec(cd);
    return { blob: await r.blob(), name: m ? decodeURIComponent(m[1]) : "export" };
  }
  async function download(url) {
    $("#h-msg").textContent = tx("exporting");
    try {
      const { blob, name } = await fetchFile(url);
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob); a.download = name;
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      $("#h-msg").textContent = "";
    } catch (e) { $("#h-msg").textContent = e.message; }
  }
  async function onRecord(ev) {
    const el = ev.target.closest("[data-record],[data-record-xlsx]");
    if (!el) return;
    if (el.dataset.recordXlsx) { download(`/api/history/${encodeURIComponent(el.dataset.recordXlsx)}/record.xlsx`); return; }
    const w = window.open("", "_blank");  // opened on the click itself, so no popup blocker stops it
    try {
      const { blob } = await fetchFile(`/api/history/${encodeURIComponent(el.dataset.record)}/record`);
      const url = URL.createObjectURL(new Blob([blob], { type: "text/html" }));
      if (w) w.location = url; else window.location = url;
    } catch (e) { if (w) w.close(); $("#h-msg").textContent = e.message; }
  }

  view.addEventListener("click", onRecord);
  function showHistory(on) {
    view.hidden = !on;
    if (on && !H.data) { H.form = {}; render(); load(); }
  }
  const tab = document.querySelector('#tabs [data-tab="history"]');
  if (tab) tab.textContent = tx("tab");
  document.querySelectorAll("#tabs button").forEach(b => b.addEventListener("click", () => showHistory(b.dataset.tab === "history")));
  $("#lang").addEventListener("click", () => { if (tab) tab.textContent = tx("tab"); if (!view.hidden) { const f = H.form; render(); H.form = f; H.data = null; load(); } });
  $("#logout").addEventListener("click", () => { view.hidden = true; Object.assign(H, { cursors: [null], page: 0, data: null, places: null, form: {} }); });
})();
