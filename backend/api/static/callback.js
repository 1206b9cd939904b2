// The SOS call-back (回访, issue 18) in an SOS alarm's detail pane: the resident's phone as a tel: link (and the
// family's), the four outcomes (接通·平安 / 接通·需要帮助 / 无人接听 / 误按), and a countdown to the call-back's deadline,
// its time in the site's zone (console.js's fmtTime: Beijing time by default). Loaded after console.js; uses its `S`,
// `api()`, `t()`, `esc()`, `fmtTime()`, `fmtDateTime()`, `can()`, `openDetail()`, `tick()` and i18n.js's `LANG`.
// Everything it draws lives in one <section id="callback-box"> it puts before the detail's actions each time
// console.js redraws the pane (a MutationObserver, as collab.js does). The outcome goes to
// POST /api/alarms/{id}/callback (backend/api/console_callbacks.py); a refusal shows the server's Chinese sentence.
"use strict";
Object.assign(TEXTS.zh, {
  cb_title: "回访（一键呼救）", cb_hint: "请立即回拨住户电话，并记录回访结果", cb_resident: "住户电话", cb_no_phone: "住户电话未登记，请联系家属",
  cb_family: "家属", cb_deadline: "回访时限", cb_expired: "已超时：已升级通知家属和上一级", cb_outcome: "回访结果", cb_by: "{who} · {time}",
  cb_note: "备注：老人说了什么（误按须写明原因）", cb_climbed: "已升级：家属和上一级已收到通知", cb_closed: "报警已关闭",
  cb_answered_fine: "接通·平安", cb_needs_help: "接通·需要帮助", cb_no_answer: "无人接听", cb_false_press: "误按", cb_recorded: "已记录回访结果：{what}",
  cb_waiting: "等待回访结果", cb_no_close: "（关闭报警需关闭权限）", cb_dial: "拨打",
});
Object.assign(TEXTS.en, {
  cb_title: "SOS call-back", cb_hint: "Call the resident back now and record what came of it", cb_resident: "Resident's phone",
  cb_no_phone: "No phone on record for the household: call the family", cb_family: "Family", cb_deadline: "Call-back deadline",
  cb_expired: "Deadline passed: the family and the next rung were paged", cb_outcome: "Outcome", cb_by: "{who} · {time}",
  cb_note: "Note: what the resident said (a false press needs its reason)", cb_climbed: "Escalated: the family and the next rung were paged",
  cb_closed: "The alarm is closed", cb_answered_fine: "Answered · fine", cb_needs_help: "Answered · needs help", cb_no_answer: "No answer",
  cb_false_press: "False press", cb_recorded: "Call-back outcome recorded: {what}", cb_waiting: "Waiting for the call-back's outcome",
  cb_no_close: "(closing the alarm needs the close capability)", cb_dial: "Call",
});
const CB = { alarmId: null, data: null, msg: "", err: false, note: "" };

(() => {
  const style = document.createElement("style");
  style.textContent = `
#callback-box { border: 2px solid #d29922; border-radius: 4px; padding: 8px; margin: 10px 0; background: rgba(210,153,34,.08); }
#callback-box h3 { margin: 0 0 6px; }
#callback-box .cb-row { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 6px 0; }
#callback-box a.tel { font-size: 1.2em; font-weight: bold; color: #58a6ff; }
#callback-box .cb-deadline .countdown { font-size: 1.3em; font-weight: bold; }
#callback-box .cb-outcomes button { flex: 1 1 120px; }
#callback-box input { flex: 1 1 240px; min-width: 0; font: inherit; }
#callback-box .cb-done { font-weight: bold; }
@media (max-width: 480px) { #callback-box .cb-outcomes button { flex: 1 1 45%; } }
`;
  document.head.appendChild(style);
})();

function cbMount() {
  const d = document.getElementById("detail");
  if (!d || d.hidden || !S.detail || !d.dataset.alarmId || S.detail.alarm.alarm_type !== "sos" || document.getElementById("callback-box")) return;
  const sec = document.createElement("section");
  sec.id = "callback-box";
  const first = d.querySelector("h3");  // before the actions: the call-back comes first
  if (first) d.insertBefore(sec, first); else d.appendChild(sec);
  const id = d.dataset.alarmId;
  if (CB.alarmId !== id) { CB.alarmId = id; CB.data = null; CB.msg = ""; CB.err = false; CB.note = ""; }
  cbRender();
  cbLoad(id);
}

async function cbLoad(id) {
  try {
    const r = await api("/api/alarms/" + encodeURIComponent(id) + "/callback");
    if (CB.alarmId !== id) return;
    CB.data = r.callback;
  } catch (e) { if (CB.alarmId === id) { CB.data = null; CB.msg = e.message; CB.err = true; } }
  cbRender();
}

function cbRender() {
  const sec = document.getElementById("callback-box");
  if (!sec) return;
  const c = CB.data;
  const keep = sec.querySelector("#cb-note");
  if (keep) CB.note = keep.value;
  if (!c) { sec.dataset.drawn = "0"; sec.innerHTML = `<h3>${esc(t("cb_title"))}</h3><p class="${CB.err ? "msg err" : "dim"}" id="cb-msg">${esc(CB.msg || "…")}</p>`; return; }
  const phone = c.resident_phone ? `<a class="tel" id="cb-tel" href="tel:${esc(c.resident_phone)}">${esc(t("cb_dial"))} ${esc(c.resident_phone)}</a>` : `<span class="late">${esc(t("cb_no_phone"))}</span>`;
  const family = c.family.length ? `<div class="cb-row"><b>${esc(t("cb_family"))}</b> ${c.family.map(f =>
    `<a class="tel" href="tel:${esc(f.phone)}">${esc(f.name)}（${esc(f.relation)}）${esc(f.phone)}</a>`).join(" ")}</div>` : "";
  const deadline = c.deadline_ms ? `<div class="cb-row cb-deadline" id="cb-deadline"><b>${esc(t("cb_deadline"))}</b>
    <span class="countdown" data-due="${c.deadline_ms}"></span> <span class="dim">(${esc(fmtTime(c.deadline_ms))})</span></div>` : "";
  const expired = c.expired_ms ? `<p class="late" id="cb-expired">⚠ ${esc(t("cb_expired"))}</p>` : "";
  let body;
  if (c.outcome) {
    body = `<p class="cb-done" id="cb-outcome" data-outcome="${esc(c.outcome)}">${esc(t("cb_outcome"))}：${esc(t("cb_" + c.outcome))}
      <span class="dim">${esc(t("cb_by", { who: c.actor || "", time: fmtDateTime(c.outcome_ms) }))}${c.note ? " · " + esc(c.note) : ""}</span></p>
      ${c.climbed_ms ? `<p class="dim">${esc(t("cb_climbed"))}</p>` : ""}`;
  } else if (c.open && can("acknowledge")) {
    const closing = can("close");
    body = `<p class="dim">${esc(t("cb_hint"))}</p>
      <div class="cb-row"><input id="cb-note" maxlength="500" placeholder="${esc(t("cb_note"))}"></div>
      <div class="cb-row cb-outcomes">${c.outcomes.map(o => {
        const off = !closing && (o.outcome === "answered_fine" || o.outcome === "false_press");
        return `<button data-outcome="${esc(o.outcome)}" class="${o.outcome === "answered_fine" ? "primary" : o.outcome === "false_press" ? "" : "danger"}"${off ? " disabled" : ""}>${esc(t("cb_" + o.outcome))}</button>`;
      }).join("")}</div>${closing ? "" : `<p class="dim">${esc(t("cb_no_close"))}</p>`}`;
  } else {
    body = `<p class="dim">${esc(t(c.open ? "cb_waiting" : "cb_closed"))}</p>`;
  }
  const html = `<h3>${esc(t("cb_title"))}</h3>
    <div class="cb-row"><b>${esc(t("cb_resident"))}</b> ${phone} <span class="dim">${esc(c.place)}</span></div>${family}
    ${c.outcome ? "" : deadline}${expired}${body}
    <div class="${CB.err ? "msg err" : "msg"}" id="cb-msg">${esc(CB.msg)}</div>`;
  if (sec.dataset.drawn === "1" && CB.html === html) return;  // unchanged: the buttons under the pointer stay
  CB.html = html;
  sec.dataset.drawn = "1";
  sec.innerHTML = html;
  const note = sec.querySelector("#cb-note");
  if (note) note.value = CB.note;
  sec.querySelectorAll("button[data-outcome]").forEach(b => b.addEventListener("click", () => cbRecord(b.dataset.outcome)));
  if (typeof tick === "function") tick();
}

async function cbRecord(outcome) {
  const id = CB.alarmId;
  const note = (document.getElementById("cb-note") || {}).value || "";
  CB.note = note;
  try {
    const r = await api("/api/alarms/" + encodeURIComponent(id) + "/callback", { method: "POST", body: JSON.stringify({ outcome, note }) });
    CB.data = r.callback; CB.msg = t("cb_recorded", { what: t("cb_" + outcome) }); CB.err = false; CB.note = "";
    await openDetail(id);  // the alarm may have closed (answered-fine, false press) and the ladder climbed (no answer, needs help)
  } catch (e) { CB.msg = e.message; CB.err = true; }
  cbRender();
}

(() => {
  const d = document.getElementById("detail");
  if (!d) return;
  new MutationObserver(cbMount).observe(d, { childList: true });
  // console.js redraws only what changed and keeps this section: a live refresh of the alarm reloads the call-back
  d.addEventListener("detail-refresh", ev => { if (document.getElementById("callback-box") && CB.alarmId === ev.detail.id) cbLoad(ev.detail.id); });
})();
