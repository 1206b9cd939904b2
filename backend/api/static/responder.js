// The responder's phone view (issue 18): my open tasks, newest first, and the field moves. Chinese by default,
// English on the toggle (the console's "sw-lang" choice). The session is an HttpOnly cookie set when the one-tap
// link opened this page; every request sends it by itself. Times are the site's (Beijing) time, from the server.
"use strict";
(() => {
  const TEXTS = {
    zh: {
      title: "守望 · 我的任务", lang: "English", refresh: "刷新", duty_call: "致电值班室", loading: "正在载入任务…",
      none: "目前没有需要您处理的任务。", updated: "更新于 {t}（北京时间）", me: "{name}（{role}）", raised: "报警时间 {t}",
      created: "派单时间 {t}，期限 {due}", place: "位置", nav: "导航前往（地图）", plan: "小区平面图", resident: "重点关爱人员",
      lives_alone: "独居", mobility: "行动：{m}", notes: "备注：{n}", key_holder: "钥匙保管人：{k}", hidden: "此户有重点关爱信息（您的角色无权查看）",
      calls: "电话", moves: "现场操作", comment: "说明（可不填）", photo: "照片（可不传）", pick: "拍照或选择照片", call: "拨打", sent: "已提交：{m}", failed: "未能提交：{e}",
      net: "网络不通，请稍后重试或致电值班室", drill: "演练", alarm: "报警", workorder: "整改工单", alarm_no: "编号 {id}",
      m_mobility: { bedridden: "卧床", wheelchair: "轮椅", walking_aid: "助行器" },
    },
    en: {
      title: "Shouwang · my tasks", lang: "中文", refresh: "Refresh", duty_call: "Call the duty room", loading: "Loading tasks…",
      none: "No tasks for you right now.", updated: "Updated {t} (Beijing time)", me: "{name} ({role})", raised: "Raised {t}",
      created: "Assigned {t}, due {due}", place: "Place", nav: "Navigate (map)", plan: "Site plan", resident: "Vulnerable resident",
      lives_alone: "lives alone", mobility: "mobility: {m}", notes: "notes: {n}", key_holder: "key holder: {k}",
      hidden: "This household has care notes (your role may not read them)", calls: "Calls", moves: "Field moves", comment: "Comment (optional)",
      photo: "Photo (optional)", pick: "Take or choose a photo", call: "Call", sent: "Sent: {m}", failed: "Not sent: {e}", net: "No connection; try again or call the duty room",
      drill: "drill", alarm: "alarm", workorder: "work order", alarm_no: "id {id}", m_mobility: {},
    },
  };
  const SEVERITY_EN = { critical: "critical", major: "major", minor: "minor", info: "info" };
  const STATE_EN = { raised: "raised", notified: "notified", acknowledged: "acknowledged", en_route: "en route", on_scene: "on scene",
    handled: "handled", assigned: "assigned", in_progress: "in progress", done: "done, awaiting re-inspection" };
  const callLabel = (label) => (LANG !== "en" ? label : label === "值班室" ? "duty room" : label.replace(/^钥匙保管人 /, "key holder "));
  const planText = (nav) => {
    const p = nav.plan, b = p && p.buildings.find((x) => x.id === p.target);
    if (!b) return nav.text;
    return LANG === "en" ? `Site plan: ${b.name} is ${Math.round(b.x)} m east, ${Math.round(b.y)} m north on the community's plan` : nav.text;
  };
  const MOVES_EN = { acknowledge: "Acknowledge", depart: "Depart", arrive: "On scene", finish: "Handled", start: "Start", decline: "Decline" };
  let LANG = localStorage.getItem("sw-lang") === "en" ? "en" : "zh";
  let zone = "Asia/Shanghai";
  const $ = (id) => document.getElementById(id);
  const t = (key, vars) => String(TEXTS[LANG][key] ?? key).replace(/\{(\w+)\}/g, (_, k) => (vars && vars[k] != null ? vars[k] : ""));
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) if (kid != null) e.append(kid instanceof Node ? kid : String(kid));
    return e;
  };
  const moveLabel = (m) => (LANG === "en" ? MOVES_EN[m.move] || m.move : m.label);
  const clock = (ms) => new Intl.DateTimeFormat("zh-CN", { timeZone: zone, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }).format(new Date(ms));

  function say(text, ok) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + (ok ? "ok" : "err");
  }

  function plan(nav) {
    const p = nav.plan;
    if (!p || !p.buildings.length) return null;
    const xs = p.buildings.flatMap((b) => [b.x, b.x + b.w]), ys = p.buildings.flatMap((b) => [b.y, b.y + b.d]);
    const x0 = Math.min(...xs) - 10, x1 = Math.max(...xs) + 10, y0 = Math.min(...ys) - 10, y1 = Math.max(...ys) + 10;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "plan");
    svg.setAttribute("viewBox", `0 0 ${x1 - x0} ${y1 - y0}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", nav.text);
    for (const b of p.buildings) {  // north up: the plan's y grows north, the screen's grows down
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", b.x - x0); r.setAttribute("y", y1 - b.y - b.d); r.setAttribute("width", b.w); r.setAttribute("height", b.d);
      if (b.id === p.target) r.setAttribute("class", "target");
      svg.append(r);
      if (b.id === p.target) {
        const label = document.createElementNS(ns, "text");
        label.setAttribute("x", b.x - x0); label.setAttribute("y", Math.max(9, y1 - b.y - b.d - 2));
        label.textContent = b.name;
        svg.append(label);
      }
    }
    return svg;
  }

  function card(task) {
    const kind = task.kind;
    const c = el("section", { class: `card task ${kind} ${task.severity}`, "data-task-id": task.id, "data-kind": kind });
    c.append(el("div", {},
      task.drill ? el("span", { class: "tag drill", text: t("drill") }) : null,
      el("span", { class: `tag sev-${task.severity}`, text: LANG === "en" ? SEVERITY_EN[task.severity] || task.severity : task.severity_zh }),
      el("span", { class: "tag", text: t(kind) }),
      el("span", { class: "tag state", "data-state": task.state, text: LANG === "en" ? STATE_EN[task.state] || task.state : task.state_zh })));
    c.append(el("h2", { text: task.title }));
    c.append(el("p", { class: "muted when", text: kind === "alarm" ? t("raised", { t: task.at_local }) : t("created", { t: task.at_local, due: task.due_local }) }));
    if (task.description) c.append(el("p", { text: task.description }));
    c.append(el("p", { class: "place", text: task.place.text || task.place.building_id || "" }));
    const nav = task.navigation;
    if (nav.geo) c.append(el("div", { class: "row" }, el("a", { class: "nav", href: nav.geo, text: t("nav") })));
    c.append(el("p", { class: "muted plan-text", text: planText(nav) }));
    const svg = plan(nav);
    if (svg) c.append(svg);
    if (task.resident) {
      const r = task.resident;
      if (r.hidden) c.append(el("div", { class: "resident hidden", text: t("hidden") }));
      else {
        const mob = r.mobility ? (TEXTS[LANG].m_mobility[r.mobility] || r.mobility) : null;
        c.append(el("div", { class: "resident" }, el("h3", { text: t("resident") }),
          el("p", { text: [r.lives_alone ? t("lives_alone") : null, mob ? t("mobility", { m: mob }) : null].filter(Boolean).join("，") }),
          r.notes ? el("p", { class: "notes", text: t("notes", { n: r.notes }) }) : null,
          r.key_holder ? el("p", { class: "key-holder", text: t("key_holder", { k: `${r.key_holder.name}${r.key_holder.role ? "（" + r.key_holder.role + "）" : ""}` }) }) : null));
      }
    }
    if (task.calls.length) {
      c.append(el("h3", { text: t("calls") }));
      c.append(el("div", { class: "row calls" }, task.calls.map((x) => el("a", { class: "call", href: `tel:${x.tel}`, text: `${t("call")} ${callLabel(x.label)}` }))));
    }
    c.append(el("h3", { text: t("moves") }));
    const note = el("textarea", { name: "note", maxlength: "500", rows: "2", "aria-label": t("comment") });
    const photo = el("input", { type: "file", name: "photo", accept: "image/jpeg,image/png,image/webp", capture: "environment", "aria-label": t("photo") });
    const moves = el("div", { class: "moves" });
    for (const m of task.moves) {
      const b = el("button", { type: "button", class: "move" + (m.done ? " done" : ""), "data-move": m.move, disabled: !m.open },
        (m.done ? "✓ " : "") + moveLabel(m));
      b.addEventListener("click", () => send(task, m, note, photo, b));
      moves.append(b);
    }
    const picked = el("span", { class: "picked", text: t("pick") });
    photo.addEventListener("change", () => { picked.textContent = photo.files && photo.files[0] ? `✓ ${photo.files[0].name}` : t("pick"); });
    c.append(moves, el("label", { text: t("comment") }, note), el("label", { text: t("photo") }),
      el("label", { class: "photo-pick" }, picked, photo));
    return c;
  }

  async function send(task, m, note, photo, button) {
    const form = new FormData();
    form.append("move", m.move);
    form.append("note", note.value);
    if (photo.files && photo.files[0]) form.append("photo", photo.files[0]);
    const url = task.kind === "alarm" ? `/m/api/alarms/${encodeURIComponent(task.id)}/moves` : `/m/api/workorders/${encodeURIComponent(task.id)}/moves`;
    button.disabled = true;
    let r;
    try {
      r = await fetch(url, { method: "POST", body: form, headers: { "X-Shouwang-Responder": "1", "Accept-Language": LANG === "en" ? "en" : "zh-CN" } });
    } catch (e) {
      say(t("net"), false);
      button.disabled = false;
      return;
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      say(t("failed", { e: body.detail || r.status }), false);
      button.disabled = false;
      return;
    }
    if (body.photo_error) say(t("sent", { m: moveLabel(m) }) + " · " + body.photo_error, false);  // the move stands; the photo did not
    else say(t("sent", { m: moveLabel(m) }), true);
    const old = document.querySelector(`[data-task-id="${CSS.escape(task.id)}"]`);
    if (old && body.task) old.replaceWith(card(body.task));
  }

  function busy() {  // a person typing a comment or holding a chosen photo: do not redraw under them
    return [...document.querySelectorAll("#tasks textarea")].some((x) => x.value) || [...document.querySelectorAll("#tasks input[type=file]")].some((x) => x.files.length);
  }

  async function load(force) {
    if (!force && busy()) return;
    let r;
    try {
      r = await fetch("/m/api/tasks", { headers: { "Accept-Language": LANG === "en" ? "en" : "zh-CN" } });
    } catch (e) {
      say(t("net"), false);
      return;
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      say(body.detail || String(r.status), false);
      return;
    }
    zone = body.time_zone || zone;
    const linked = $("linked");
    if (linked) linked.hidden = true;  // the link's own alarm is in the list with everything else
    if (location.pathname.startsWith("/r/")) history.replaceState(null, "", "/m/");  // a reload keeps the session, not the link
    $("me").textContent = t("me", { name: body.me.name, role: LANG === "en" ? body.me.role.replace(/_/g, " ") : body.me.role_zh });
    const call = $("duty-call");
    if (body.duty_phone) { call.href = `tel:${body.duty_phone}`; call.textContent = `${t("duty_call")} ${body.duty_phone}`; call.hidden = false; }
    const list = $("tasks");
    list.replaceChildren(...(body.tasks.length ? body.tasks.map(card) : [el("p", { class: "empty", text: t("none") })]));
    $("updated").textContent = t("updated", { t: clock(body.server_now_ms) });
  }

  function texts() {
    document.documentElement.lang = LANG === "en" ? "en" : "zh-CN";
    document.title = t("title");
    $("title").textContent = t("title");
    $("lang").textContent = t("lang");
    $("refresh").textContent = t("refresh");
  }

  document.addEventListener("DOMContentLoaded", () => {
    texts();
    $("lang").addEventListener("click", () => { LANG = LANG === "en" ? "zh" : "en"; localStorage.setItem("sw-lang", LANG); texts(); load(true); });
    $("refresh").addEventListener("click", () => load(true));
    $("tasks").append(el("p", { class: "empty", text: t("loading") }));
    load(true);
    setInterval(() => load(false), 15000);
  });
})();
