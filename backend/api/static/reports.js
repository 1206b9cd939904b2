// Monthly report (统计报表) of one community for the street office: summary cards against the targets, charts drawn
// here as inline SVG (nothing from the internet), the tables behind them, and the XLSX download. Plain JS on top of
// console.js (S, $, esc, api, can, LANG); shown when its tab (#tabs [data-tab="reports"]) is chosen, offered only to
// roles that may read site-wide figures (view_system). Times: the server's utc_offset_min, never the browser's zone.
"use strict";
(() => {
  const R = { data: null, communities: [], month: null, community: null, offset: 480 };
  const TX = {
    zh: {
      tab: "统计报表", community: "社区", month: "月份", show: "查看", xlsx: "下载 Excel", loading: "统计中…", period: "统计区间 {a} 至 {b}（{tz}）",
      real: "真实告警", false_alarm: "误报", drills: "消防演练", camera: "摄像头完好率", telecare: "一键呼救 60 秒内应答", fire_scene: "微型消防站到场 p90",
      target: "目标 {t}", ok: "达标", not_ok: "未达标", by_type: "按类型与处置结果", response: "各梯队响应时间（秒）", ack: "确认", scene: "到场",
      p50: "中位数 p50", p90: "p90", fa_devices: "误报设备", fa_rule: "标记规则：当月误报不少于 {n} 次且占该设备告警 {r} 以上", device: "设备",
      building: "楼栋", alarms: "告警", rate: "误报率", flagged: "超标", drill_sessions: "演练记录", start: "开始", fire: "含火警", types: "类型",
      health: "设备健康", comm_lost: "通信中断设备", down: "中断时长", still: "仍未恢复", patrol: "巡检", patrol_line: "巡检心跳缺失告警 {a} 次，缺失 {m} 次，最长 {l}",
      none: "无", yes: "是", no: "否", minutes: "{n} 分钟", hours: "{n} 小时", cams: "摄像头 {n} 台，停机共 {h}", paged: "呼叫", unanswered: "未应答",
      gw_off: "网关离线 {g} 次，停电 {p} 次", required: "要求每月 {n} 次",
    },
    en: {
      tab: "Reports", community: "Community", month: "Month", show: "Show", xlsx: "Download Excel", loading: "Counting…", period: "From {a} to {b} ({tz})",
      real: "Real alarms", false_alarm: "False alarms", drills: "Fire drills", camera: "Camera working rate", telecare: "SOS answered within 60 s",
      fire_scene: "Micro fire station on scene p90", target: "target {t}", ok: "met", not_ok: "not met", by_type: "By type and outcome",
      response: "Response per rung (s)", ack: "acknowledge", scene: "on scene", p50: "p50", p90: "p90", fa_devices: "False alarms per device",
      fa_rule: "Flagged: at least {n} false alarms making {r} or more of the device's alarms", device: "Device", building: "Building", alarms: "Alarms",
      rate: "Rate", flagged: "Flagged", drill_sessions: "Drills", start: "Start", fire: "Fire", types: "Types", health: "Device health",
      comm_lost: "Communication lost", down: "Down", still: "Still down", patrol: "Patrol", patrol_line: "{a} patrol-missed alarms, {m} misses, longest {l}",
      none: "None", yes: "yes", no: "no", minutes: "{n} min", hours: "{n} h", cams: "{n} cameras, down {h} in all", paged: "Paged",
      unanswered: "Unanswered", gw_off: "gateway offline {g}×, power outage {p}×", required: "{n} a month required",
    },
  };
  const tx = (k, p) => { let s = (TX[LANG] || TX.zh)[k] ?? k; for (const [a, b] of Object.entries(p || {})) s = s.replace("{" + a + "}", b); return s; };
  const pct = v => v === null || v === undefined ? "—" : (v * 100).toFixed(2) + "%";
  const sec = v => v === null || v === undefined ? "—" : Math.round(v) + (LANG === "zh" ? " 秒" : " s");
  const dur = s => s >= 3600 ? tx("hours", { n: (s / 3600).toFixed(1) }) : tx("minutes", { n: Math.round(s / 60) });
  const local = ms => new Date(ms + R.offset * 60000).toISOString().slice(0, 16).replace("T", " ");
  const OUT_COLORS = { closed: "#2ea043", false_alarm: "#d9a400", resolved: "#388bfd", open: "#d73a49", other: "#8b949e" };

  const style = document.createElement("style");
  style.textContent = `
#view-reports .controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-end; margin-bottom: 10px; }
#view-reports .controls label { display: flex; flex-direction: column; gap: 3px; font-size: 12px; color: var(--dim); }
#view-reports .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 10px; margin: 10px 0; }
#view-reports .card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
#view-reports .card .v { font-size: 22px; font-weight: bold; margin: 4px 0; }
#view-reports .card .t { color: var(--dim); font-size: 12px; }
#view-reports .card.bad { border-color: var(--red); } #view-reports .card.good { border-color: var(--green); }
#view-reports .card .ok { color: #7ee787; } #view-reports .card .no { color: #ff7b72; }
#view-reports h3 { margin: 16px 0 6px; font-size: 15px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
#view-reports svg { width: 100%; height: auto; max-width: 760px; display: block; }
#view-reports svg text { fill: var(--text); font-size: 12px; }
#view-reports .legend span { display: inline-flex; align-items: center; gap: 4px; margin-right: 10px; font-size: 12px; color: var(--dim); }
#view-reports .legend i { width: 10px; height: 10px; display: inline-block; }
#view-reports .scroll { overflow-x: auto; }
#view-reports tr.flag td { background: #3a1518; }
#view-reports .err { color: #ff7b72; }
#view-reports .dim { color: var(--dim); }`;
  document.head.appendChild(style);
  const view = document.createElement("section");
  view.id = "view-reports";
  view.className = "view";
  view.hidden = true;
  $("main").appendChild(view);

  // charts are drawn at the page's width (text stays 12 px on a 360 px phone, not shrunk with a wide drawing)
  const chartWidth = () => Math.min(720, Math.max(300, (view.clientWidth || 720) - 4));
  const zoneName = z => z === "Asia/Shanghai" ? (LANG === "zh" ? "北京时间" : "Beijing time") : z;
  const bname = id => (R.data && R.data.words.buildings && R.data.words.buildings[id]) || id || "";
  function card(label, value, target, ok) {
    const cls = ok === undefined ? "" : ok ? "good" : "bad";
    const verdict = ok === undefined ? "" : `<span class="${ok ? "ok" : "no"}">${esc(ok ? tx("ok") : tx("not_ok"))}</span>`;
    return `<div class="card ${cls}"><div class="t">${esc(label)}</div><div class="v">${esc(value)}</div><div class="t">${esc(target || "")} ${verdict}</div></div>`;
  }
  function typeChart(rows, words) {
    if (!rows.length) return `<p class="dim">${esc(tx("none"))}</p>`;
    const W = chartWidth(), L = W < 500 ? 96 : 150, bar = 22, gap = 8, H = rows.length * (bar + gap) + 10;
    const max = Math.max(...rows.map(r => r.total));
    const keys = Object.keys(OUT_COLORS);
    const body = rows.map((r, i) => {
      let x = L;
      const y = 5 + i * (bar + gap);
      const segs = keys.filter(k => r[k]).map(k => {
        const w = (W - L - 50) * r[k] / max;
        const s = `<rect x="${x}" y="${y}" width="${w}" height="${bar}" fill="${OUT_COLORS[k]}"><title>${esc(words.outcomes[k])}: ${r[k]}</title></rect>`;
        x += w;
        return s;
      }).join("");
      return `<text x="${L - 6}" y="${y + 15}" text-anchor="end">${esc(words.types[r.alarm_type] || r.alarm_type)}</text>${segs}<text x="${x + 6}" y="${y + 15}">${r.total}</text>`;
    }).join("");
    const legend = keys.map(k => `<span><i style="background:${OUT_COLORS[k]}"></i>${esc(words.outcomes[k])}</span>`).join("");
    return `<div class="legend">${legend}</div><svg id="chart-types" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(tx("by_type"))}">${body}</svg>`;
  }
  function responseChart(rows) {
    const items = rows.flatMap(r => [["ack", r, r.acknowledge], ["scene", r, r.on_scene]]).filter(([, , s]) => s.n > 0);
    if (!items.length) return `<p class="dim">${esc(tx("none"))}</p>`;
    const W = chartWidth(), L = W < 500 ? 130 : 190, bar = 10, gap = 14, H = items.length * (2 * bar + gap) + 20;
    const max = Math.max(...items.map(([, , s]) => Math.max(s.p90_s || 0, s.target_s || 0))) * 1.1;
    const sx = v => L + (W - L - 60) * v / max;
    const body = items.map(([k, r, s], i) => {
      const y = 5 + i * (2 * bar + gap);
      const target = s.target_s ? `<line x1="${sx(s.target_s)}" x2="${sx(s.target_s)}" y1="${y - 3}" y2="${y + 2 * bar + 3}" stroke="#ff7b72" stroke-width="2" stroke-dasharray="4 2"><title>${esc(tx("target", { t: sec(s.target_s) }))}</title></line>` : "";
      return `<text x="${L - 6}" y="${y + bar + 4}" text-anchor="end">${esc(r.label)} · ${esc(tx(k))}</text>
        <rect x="${L}" y="${y}" width="${sx(s.p50_s) - L}" height="${bar}" fill="#388bfd"><title>p50 ${sec(s.p50_s)}</title></rect>
        <rect x="${L}" y="${y + bar}" width="${sx(s.p90_s) - L}" height="${bar}" fill="#a371f7"><title>p90 ${sec(s.p90_s)}</title></rect>
        <text x="${sx(s.p90_s) + 6}" y="${y + bar + 4}">${esc(sec(s.p50_s))} / ${esc(sec(s.p90_s))}</text>${target}`;
    }).join("");
    const legend = `<span><i style="background:#388bfd"></i>${esc(tx("p50"))}</span><span><i style="background:#a371f7"></i>${esc(tx("p90"))}</span><span><i style="background:#ff7b72"></i>${esc(tx("target", { t: "" }))}</span>`;
    return `<div class="legend">${legend}</div><svg id="chart-response" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(tx("response"))}">${body}</svg>`;
  }
  function cameraChart(h) {
    if (h.camera_rate === null) return "";
    const W = chartWidth(), L = 10, H = 46, lo = 0.9, sx = v => L + (W - 2 * L) * Math.max(0, (v - lo) / (1 - lo));
    return `<svg id="chart-camera" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(tx("camera"))}">
      <rect x="${L}" y="8" width="${W - 2 * L}" height="18" fill="#21303f"/>
      <rect x="${L}" y="8" width="${sx(h.camera_rate) - L}" height="18" fill="${h.meets_target ? "#2ea043" : "#d73a49"}"/>
      <line x1="${sx(h.camera_target)}" x2="${sx(h.camera_target)}" y1="2" y2="32" stroke="#e6edf3" stroke-width="2"/>
      <text x="${sx(h.camera_target) - 4}" y="44" text-anchor="end">${esc(tx("target", { t: pct(h.camera_target) }))}</text>
      <text x="${L}" y="44">90%</text><text x="${W - L}" y="44" text-anchor="end">100%</text></svg>`;
  }
  function render() {
    const d = R.data;
    const comms = R.communities.map(c => `<option value="${esc(c.id)}"${c.id === R.community ? " selected" : ""}>${esc(c.name)}</option>`).join("");
    let html = `<form class="controls" id="r-form"><label>${esc(tx("community"))}<select name="community" id="r-community">${comms}</select></label>
      <label>${esc(tx("month"))}<input type="month" name="month" id="r-month" value="${esc(R.month || "")}" max="${esc(R.thisMonth || "")}"></label>
      <button type="submit" class="primary">${esc(tx("show"))}</button><button type="button" id="r-xlsx">${esc(tx("xlsx"))}</button></form>
      <div id="r-msg" class="err" role="alert"></div>`;
    if (d) {
      const r = d.report, t = r.totals, h = r.health, tc = r.telecare, fs = r.response.find(x => x.rung === "fire_station");
      html += `<h2 id="r-title">${esc(r.community_name)} · ${esc(r.month)}</h2>
        <p class="dim">${esc(tx("period", { a: local(r.start_ms), b: local(r.measured_until_ms), tz: zoneName(d.time_zone) }))}</p>
        <div class="cards">
          ${card(tx("real"), t.real, "")}
          ${card(tx("false_alarm"), t.false_alarm, t.real ? pct(t.false_alarm / t.real) : "")}
          ${card(tx("drills"), `${r.drills.fire_drills} / ${r.drills.required}`, tx("required", { n: r.drills.required }), r.drills.meets_target)}
          ${card(tx("camera"), pct(h.camera_rate), tx("target", { t: pct(h.camera_target) }), h.camera_rate === null ? undefined : h.meets_target)}
          ${card(tx("telecare"), pct(tc.targets[0].share), tx("target", { t: pct(tc.targets[0].target) }), tc.sos_alarms ? tc.targets[0].meets_target : undefined)}
          ${card(tx("fire_scene"), fs ? sec(fs.on_scene.p90_s) : "—", tx("target", { t: sec(180) }), fs && fs.on_scene.n ? fs.on_scene.meets_target : undefined)}
        </div>
        <h3>${esc(tx("by_type"))}</h3>${typeChart(r.by_type, d.words)}
        <h3>${esc(tx("response"))}</h3>${responseChart(r.response)}
        <div class="scroll"><table id="r-response"><thead><tr><th></th><th>${esc(tx("paged"))}</th><th>${esc(tx("ack"))} p50/p90</th><th>${esc(tx("scene"))} p50/p90</th><th>${esc(tx("unanswered"))}</th></tr></thead><tbody>
          ${r.response.map(x => `<tr><td>${esc(x.label)}</td><td>${x.paged}</td><td>${esc(sec(x.acknowledge.p50_s))} / ${esc(sec(x.acknowledge.p90_s))}</td><td>${esc(sec(x.on_scene.p50_s))} / ${esc(sec(x.on_scene.p90_s))}${x.on_scene.target_s ? ` <span class="dim">(${esc(tx("target", { t: sec(x.on_scene.target_s) }))})</span>` : ""}</td><td>${x.unanswered}</td></tr>`).join("")}
        </tbody></table></div>
        <h3>${esc(tx("fa_devices"))}</h3><p class="dim">${esc(tx("fa_rule", { n: r.false_alarm_rule.min_false_alarms, r: pct(r.false_alarm_rule.min_rate) }))}</p>
        <div class="scroll"><table id="r-false"><thead><tr><th>${esc(tx("device"))}</th><th>${esc(tx("building"))}</th><th>${esc(tx("alarms"))}</th><th>${esc(tx("false_alarm"))}</th><th>${esc(tx("rate"))}</th><th>${esc(tx("flagged"))}</th></tr></thead><tbody>
          ${r.false_alarm_devices.map(x => `<tr class="${x.flagged ? "flag" : ""}"><td>${esc(x.device_id)}</td><td>${esc(bname(x.building_id))}</td><td>${x.alarms}</td><td>${x.false_alarms}</td><td>${pct(x.rate)}</td><td>${esc(x.flagged ? tx("yes") : tx("no"))}</td></tr>`).join("") || `<tr><td colspan="6" class="dim">${esc(tx("none"))}</td></tr>`}
        </tbody></table></div>
        <h3>${esc(tx("drill_sessions"))}</h3>
        <div class="scroll"><table id="r-drills"><thead><tr><th>${esc(tx("start"))}</th><th>${esc(tx("alarms"))}</th><th>${esc(tx("fire"))}</th><th>${esc(tx("types"))}</th></tr></thead><tbody>
          ${r.drills.sessions.map(x => `<tr><td>${esc(local(x.start_ms))}</td><td>${x.alarms}</td><td>${esc(x.fire ? tx("yes") : tx("no"))}</td><td>${esc(x.types.map(k => d.words.types[k] || k).join("、"))}</td></tr>`).join("") || `<tr><td colspan="4" class="dim">${esc(tx("none"))}</td></tr>`}
        </tbody></table></div>
        <h3>${esc(tx("health"))}</h3><p>${esc(tx("cams", { n: h.cameras, h: dur(h.camera_down_s) }))} · ${esc(tx("gw_off", { g: h.gateway_offline, p: h.power_outage }))}</p>${cameraChart(h)}
        <div class="scroll"><table id="r-lost"><thead><tr><th>${esc(tx("comm_lost"))}</th><th>${esc(tx("building"))}</th><th>${esc(tx("alarms"))}</th><th>${esc(tx("down"))}</th><th>${esc(tx("still"))}</th></tr></thead><tbody>
          ${h.comm_lost.slice(0, 50).map(x => `<tr><td>${esc(x.device_id)}</td><td>${esc(bname(x.building_id))}</td><td>${x.alarms}</td><td>${esc(dur(x.down_s))}</td><td>${esc(x.still_open ? tx("yes") : tx("no"))}</td></tr>`).join("") || `<tr><td colspan="5" class="dim">${esc(tx("none"))}</td></tr>`}
        </tbody></table></div>
        <h3>${esc(tx("patrol"))}</h3><p id="r-patrol">${esc(tx("patrol_line", { a: r.patrol.alarms, m: r.patrol.misses, l: dur(r.patrol.longest_s) }))}</p>`;
    }
    view.innerHTML = html;
    $("#r-form").addEventListener("submit", ev => { ev.preventDefault(); R.community = $("#r-community").value; R.month = $("#r-month").value; load(); });
    $("#r-xlsx").addEventListener("click", download);
  }
  async function load() {
    try {
      const p = new URLSearchParams();
      if (R.month) p.set("month", R.month);
      R.data = await api(`/api/reports/communities/${encodeURIComponent(R.community)}/monthly?${p}`);
      R.offset = R.data.utc_offset_min;
      R.month = R.data.report.month;
      render();
    } catch (e) { render(); $("#r-msg").textContent = e.message; }
  }
  async function download() {
    try {
      const p = new URLSearchParams();
      if (R.month) p.set("month", R.month);
      const r = await fetch(`/api/reports/communities/${encodeURIComponent(R.community)}/monthly.xlsx?${p}`,
                            { headers: { Authorization: "Bearer " + S.token, "Accept-Language": LANG === "en" ? "en" : "zh-CN" } });
      if (!r.ok) { let m = r.statusText; try { m = (await r.json()).detail || m; } catch (e) { /* not JSON */ } throw new Error(m); }
      const m = /filename\*=UTF-8''([^;]+)/.exec(r.headers.get("content-disposition") || "");
      const a = document.createElement("a");
      a.href = URL.createObjectURL(await r.blob()); a.download = m ? decodeURIComponent(m[1]) : "report.xlsx";
      document.body.appendChild(a); a.click(); a.remove();
    } catch (e) { $("#r-msg").textContent = e.message; }
  }
  async function open() {
    if (R.communities.length === 0) {
      try {
        const c = await api("/api/reports/communities");
        R.communities = c.communities; R.thisMonth = c.this_month;
        R.community = R.community || (c.communities[0] && c.communities[0].id);
      } catch (e) { render(); $("#r-msg").textContent = e.message; return; }
    }
    if (R.community) load(); else render();
  }

  const tab = document.querySelector('#tabs [data-tab="reports"]');
  if (tab) {
    tab.textContent = tx("tab");
    tab.hidden = true;  // offered only to a login that may read site-wide figures (checked again after each login)
    setInterval(() => { tab.hidden = !can("view_system"); }, 300);
  }
  document.querySelectorAll("#tabs button").forEach(b => b.addEventListener("click", () => {
    view.hidden = b.dataset.tab !== "reports";
    if (!view.hidden) open();
  }));
  $("#lang").addEventListener("click", () => { if (tab) tab.textContent = tx("tab"); if (!view.hidden) render(); });
  let resized = null;
  window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(() => { if (!view.hidden && R.data) render(); }, 150); });
  $("#logout").addEventListener("click", () => { view.hidden = true; Object.assign(R, { data: null, communities: [], community: null, month: null }); });
})();
