// Working an alarm together (协同处置, issue 17) in the alarm's detail pane: its assignee (a picker to assign or
// re-assign), free comments with photos, and the archive button (归档) of a closed or false alarm. Loaded after
// console.js; uses its `S`, `api()`, `t()`, `fmtDateTime()`, `openDetail()`, `renderBoard()` and i18n.js's `LANG`.
// Everything it draws lives in one <section id="collab"> it puts before the detail's timeline each time console.js
// redraws the pane (a MutationObserver, as workorders.js does). The live feed's `assignment` and `comment` events
// come here from console.js (`onCollabEvent`): the board's assignee follows at once, and an open detail reloads.
// What the officer was typing (text and chosen photos) survives those reloads. Times are in the site's zone
// (console.js's fmtDateTime); photos are fetched with the session's token and shown as data: URLs (the console's CSP
// allows no blob: images).
"use strict";
Object.assign(TEXTS.zh, {
  assignee: "负责人", src_assignment: "指派", src_comment: "评论", c_title: "协同处置", c_assignee: "当前负责人", c_nobody: "未指派",
  c_pick: "选择负责人（本辖区响应人员与值班人员）", c_assign: "指派", c_reassign: "改派", c_comments: "评论", c_none: "暂无评论",
  c_placeholder: "写评论：现场情况、已做的处置、需要谁配合…", c_photo: "添加照片", c_no_photo: "未选择照片", c_photos_chosen: "已选 {n} 张照片",
  c_send: "发表评论", c_sent: "评论已发表", c_assigned: "已指派给 {name}", c_archive: "归档", c_archived: "已归档：记录保留，可在“历史”中查询",
  c_auto: "关闭后 {days} 天无新动态将自动归档", c_too_long: "评论过长：最多 {n} 字", c_empty: "请先写评论内容",
});
Object.assign(TEXTS.en, {
  assignee: "Assignee", src_assignment: "assignment", src_comment: "comment", c_title: "Working together", c_assignee: "Assignee", c_nobody: "Not assigned",
  c_pick: "Pick the assignee (responders and officers of this territory)", c_assign: "Assign", c_reassign: "Re-assign", c_comments: "Comments",
  c_none: "No comments yet", c_placeholder: "Write a comment: what you found, what was done, who is needed…", c_photo: "Add photos",
  c_no_photo: "No photo chosen", c_photos_chosen: "{n} photo(s) chosen", c_send: "Post comment", c_sent: "Comment posted", c_assigned: "Assigned to {name}",
  c_archive: "Archive", c_archived: "Archived: the record is kept; find it in History", c_auto: "Archived by itself after {days} quiet days once closed",
  c_too_long: "Too long: at most {n} characters", c_empty: "Write the comment first",
});
const COLLAB = { alarmId: null, data: null, drafts: new Map(), files: new Map(), msg: "", err: false };

(() => {
  const style = document.createElement("style");
  style.textContent = `
#collab { border: 1px solid var(--line, #2a3746); border-radius: 4px; padding: 8px; margin: 10px 0; }
#collab h3 { margin: 0 0 6px; }
#collab .c-row { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 6px 0; }
#collab .c-row > select, #collab textarea { flex: 1 1 200px; min-width: 0; box-sizing: border-box; font: inherit; }
#collab textarea { width: 100%; min-height: 64px; }
#collab ol.c-comments { list-style: none; padding: 0; margin: 6px 0; }
#collab ol.c-comments li { border-left: 3px solid #3fb950; padding: 4px 8px; margin-bottom: 6px; background: rgba(255,255,255,.03); overflow-wrap: anywhere; }
#collab ol.c-comments .c-text { white-space: pre-wrap; margin-top: 2px; }
#collab .c-photos { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 4px; }
#collab .c-photos img { width: 96px; height: 72px; object-fit: cover; border-radius: 3px; background: #0b1219; }
#collab .c-pick { display: inline-block; background: #21303f; border: 1px solid var(--line, #2a3746); border-radius: 4px; padding: 6px 10px; cursor: pointer; }
#collab .c-pick input { position: absolute; width: 1px; height: 1px; opacity: 0; }
#collab .c-who b { color: #7ee787; }
.tag.assignee { background: #1f4f2f; color: #d2f8dc; }
.timeline li.comment, .timeline li.assignment { border-left-color: #3fb950; }
@media (max-width: 480px) { #collab .c-row > button { flex: 1 1 auto; } }
`;
  document.head.appendChild(style);
})();

function collabHeaders() {
  return { Authorization: "Bearer " + S.token, "Accept-Language": LANG === "en" ? "en" : "zh-CN" };
}

function collabMount() {
  const d = document.getElementById("detail");
  if (!d || d.hidden || !S.detail || !d.dataset.alarmId || document.getElementById("collab")) return;
  const sec = document.createElement("section");
  sec.id = "collab";
  sec.className = "collab";
  const tl = document.getElementById("timeline");
  const before = tl && tl.previousElementSibling && tl.previousElementSibling.tagName === "H3" ? tl.previousElementSibling : tl;
  if (before) d.insertBefore(sec, before); else d.appendChild(sec);
  const id = d.dataset.alarmId;
  if (COLLAB.alarmId !== id) { COLLAB.alarmId = id; COLLAB.data = null; COLLAB.msg = ""; }
  collabRender();
  collabLoad(id);
}

async function collabLoad(id) {
  try {
    const data = await api("/api/alarms/" + encodeURIComponent(id) + "/collab");
    if (COLLAB.alarmId !== id) return;
    COLLAB.data = data;
  } catch (e) { COLLAB.msg = e.message; COLLAB.err = true; }
  collabRender();
}

function collabRender() {
  const sec = document.getElementById("collab"), c = COLLAB.data, id = COLLAB.alarmId;
  if (!sec) return;
  if (!c || c.alarm_id !== id) { sec.dataset.drawn = "0"; sec.innerHTML = `<h3>${esc(t("c_title"))}</h3><p class="dim">…</p>`; return; }
  const who = c.assignee ? `${c.assignee.assignee_name}（${LANG === "en" ? c.assignee.assignee_role.replace(/_/g, " ") : c.assignee.assignee_role_zh}）` : t("c_nobody");
  const archived = c.state === "archived";
  const people = c.candidates.map(p => `<option value="${esc(p.id)}">${esc(p.name)} · ${esc(LANG === "en" ? p.role.replace(/_/g, " ") : p.role_zh)}</option>`).join("");
  const assign = c.candidates.length && !archived ? `<div class="c-row"><select id="collab-person" aria-label="${esc(t("c_pick"))}"><option value="">${esc(t("c_pick"))}</option>${people}</select>
      <button type="button" id="collab-assign">${esc(t(c.assignee ? "c_reassign" : "c_assign"))}</button></div>` : "";
  const comments = c.comments.length ? `<ol class="c-comments" id="collab-comments">${c.comments.map(x => `<li data-comment-id="${esc(x.id)}">
      <span class="dim">${esc(fmtDateTime(x.at_ms))}</span> <b>${esc(x.author_name || x.author)}</b><div class="c-text">${esc(x.text)}</div>
      ${x.photos.length ? `<div class="c-photos">${x.photos.map(p => `<img alt="${esc(t("c_photo"))}" data-src="${esc(p.url)}" data-sha256="${esc(p.sha256)}">`).join("")}</div>` : ""}</li>`).join("")}</ol>`
    : `<p class="dim" id="collab-comments">${esc(t("c_none"))}</p>`;
  const files = COLLAB.files.get(id) || [];
  const write = can("acknowledge") && !archived ? `<div class="c-new">
      <textarea id="collab-text" maxlength="${c.limits.comment_max_chars}" placeholder="${esc(t("c_placeholder"))}"></textarea>
      <div class="c-row"><label class="c-pick">${esc(t("c_photo"))}<input type="file" id="collab-file" accept="image/jpeg,image/png,image/webp" multiple></label>
      <span class="dim" id="collab-files">${esc(files.length ? t("c_photos_chosen", { n: files.length }) : t("c_no_photo"))}</span>
      <button type="button" class="primary" id="collab-send">${esc(t("c_send"))}</button></div></div>` : "";
  const arch = archived ? `<p class="dim" id="collab-archived">${esc(t("c_archived"))}</p>`
    : c.can_archive ? `<div class="c-row"><button type="button" id="collab-archive">${esc(t("c_archive"))}</button>
      ${c.archive_after_days ? `<span class="dim">${esc(t("c_auto", { days: c.archive_after_days }))}</span>` : ""}</div>` : "";
  const html = `<h3>${esc(t("c_title"))}</h3>
    <div class="c-who" id="collab-assignee">${esc(t("c_assignee"))}：<b>${esc(who)}</b></div>
    ${assign}${arch}
    <h3>${esc(t("c_comments"))}</h3>${comments}${write}
    <div class="msg ${COLLAB.err ? "err" : ""}" id="collab-msg" role="status">${esc(COLLAB.msg)}</div>`;
  if (sec.dataset.drawn === "1" && COLLAB.html === html) return;  // unchanged: the buttons under the pointer stay
  COLLAB.html = html;
  sec.dataset.drawn = "1";
  sec.innerHTML = html;
  const text = document.getElementById("collab-text");
  if (text) {
    text.value = COLLAB.drafts.get(id) || "";
    text.addEventListener("input", () => COLLAB.drafts.set(id, text.value));
  }
  const file = document.getElementById("collab-file");
  if (file) file.addEventListener("change", () => {
    COLLAB.files.set(id, [...file.files]);
    document.getElementById("collab-files").textContent = file.files.length ? t("c_photos_chosen", { n: file.files.length }) : t("c_no_photo");
  });
  const on = (elId, fn) => { const b = document.getElementById(elId); if (b) b.addEventListener("click", fn); };
  on("collab-assign", collabAssign);
  on("collab-send", collabSend);
  on("collab-archive", collabArchive);
  sec.querySelectorAll("img[data-src]").forEach(collabPhoto);
}

async function collabPhoto(img) {
  try {
    const r = await fetch(img.dataset.src, { headers: collabHeaders() });
    if (!r.ok) return;
    const blob = await r.blob();
    img.src = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  } catch (e) { /* the comment still stands */ }
}

function collabSay(msg, err) { COLLAB.msg = msg; COLLAB.err = !!err; const m = document.getElementById("collab-msg"); if (m) { m.textContent = msg; m.className = "msg" + (err ? " err" : ""); } }

async function collabAssign() {
  const id = COLLAB.alarmId, sel = document.getElementById("collab-person");
  if (!sel || !sel.value) { collabSay(t("c_pick"), true); return; }
  try {
    const r = await api("/api/alarms/" + encodeURIComponent(id) + "/assign", { method: "POST", body: JSON.stringify({ assignee_id: sel.value }) });
    const a = S.alarms.get(id);
    if (a) { a.assignee_id = r.assignment.assignee_id; a.assignee_name = r.assignment.assignee_name; renderBoard(); }
    COLLAB.msg = t("c_assigned", { name: r.assignment.assignee_name }); COLLAB.err = false;
    await openDetail(id);
  } catch (e) { collabSay(e.message, true); }
}

async function collabSend() {
  const id = COLLAB.alarmId, c = COLLAB.data, text = (COLLAB.drafts.get(id) || "").trim();
  if (!text) { collabSay(t("c_empty"), true); return; }
  if (c && text.length > c.limits.comment_max_chars) { collabSay(t("c_too_long", { n: c.limits.comment_max_chars }), true); return; }
  const form = new FormData();
  form.append("text", text);
  for (const f of COLLAB.files.get(id) || []) form.append("photos", f);
  try {
    const r = await fetch("/api/alarms/" + encodeURIComponent(id) + "/comments", { method: "POST", body: form, headers: collabHeaders() });
    const body = await r.json().catch(() => null);
    if (!r.ok) throw new Error((body && body.detail) || r.statusText);
    COLLAB.drafts.delete(id); COLLAB.files.delete(id);
    COLLAB.msg = t("c_sent"); COLLAB.err = false;
    await openDetail(id);
  } catch (e) { collabSay(e.message, true); }
}

async function collabArchive() {
  const id = COLLAB.alarmId;
  try {
    const r = await api("/api/alarms/" + encodeURIComponent(id) + "/archive", { method: "POST", body: JSON.stringify({ note: "" }) });
    if (r.alarm) upsert(r.alarm);
    renderBoard();
    COLLAB.msg = r.done.join(", "); COLLAB.err = false;
    await openDetail(id);
  } catch (e) { collabSay(e.message, true); }
}

// the live feed (console.js hands these over): the board's assignee at once; an open detail reloads (timeline too)
function onCollabEvent(type, data) {
  const a = S.alarms.get(data.alarm_id);
  if (type === "assignment" && a) { a.assignee_id = data.assignee_id; a.assignee_name = data.assignee_name; renderBoard(); }
  if (S.selected === data.alarm_id) refreshSoon();
}

(() => {
  const d = document.getElementById("detail");
  if (!d) return;
  new MutationObserver(collabMount).observe(d, { childList: true });
  // console.js redraws only what changed and keeps this section: a live refresh of the alarm reloads its data here
  d.addEventListener("detail-refresh", ev => { if (document.getElementById("collab") && COLLAB.alarmId === ev.detail.id) collabLoad(ev.detail.id); });
})();
