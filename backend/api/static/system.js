// The system's own state on the duty console: a red strip while something the alarm path needs is down
// (the alarm store, the broker, ingest, the live feed, the rules leader or its queue). It reads /api/health, the
// same verdict as /readyz, every few seconds while someone is logged in, and says in the duty officer's language
// what is wrong and what it means for alarms (they wait in ingest's journal; nothing is lost). It has its own file
// and mount point (#system-status) so it needs nothing of the board's code but `t`, `S` and `TEXTS`.
(() => {
  Object.assign(TEXTS.zh, {
    sys_title: "系统故障",
    sys_database: "告警数据库无法连接：新告警暂存在接入日志中，恢复后自动写入，不会丢失",
    sys_ingest: "告警暂无法写入：新告警已安全暂存，恢复后自动处理",
    sys_alarm_disk: "告警数据未能落盘：最近告警已显示并处理，但服务器断电可能丢失；接入日志已保留待重放，请立即检查服务器磁盘",
    sys_broker_ingest: "接入服务与消息代理断开：设备消息暂存在各楼网关，恢复后补发",
    sys_broker_publisher: "通知发布与消息代理断开：手机推送和楼内声光可能延迟",
    sys_feed: "实时推送中断：告警列表可能不是最新，请刷新",
    sys_rules_leader: "规则主节点缺失：告警暂不处理，恢复后按序补处理",
    sys_uplink_queue: "上行队列积压：告警处理延迟",
    sys_other: "系统检查未通过：{name}",
    sys_since: "（{since} 起）",
  });
  Object.assign(TEXTS.en, {
    sys_title: "System fault",
    sys_database: "The alarm database cannot be reached: new alarms wait in ingest's journal and are written when it is back; nothing is lost",
    sys_ingest: "Alarms cannot be written now: new alarms are held safely and processed when the store is back",
    sys_alarm_disk: "Alarms are not reaching the disk: the latest are shown and handled, but a power cut could lose them; ingest's journal keeps them for replay; check the server's disk now",
    sys_broker_ingest: "Ingest lost the broker: device messages wait at the building gateways and are resent",
    sys_broker_publisher: "The notice publisher lost the broker: phone pushes and building sounders may be late",
    sys_feed: "The live feed stopped: the board may be stale, reload it",
    sys_rules_leader: "No rules leader: alarms wait and are processed in order when one is back",
    sys_uplink_queue: "The uplink queue is backing up: alarms are late",
    sys_other: "A system check failed: {name}",
    sys_since: " (since {since})",
  });
  const Y = { down: {}, since: null, timer: null };
  const KNOWN = ["database", "ingest", "alarm_disk", "broker_ingest", "broker_publisher", "feed", "rules_leader", "uplink_queue"];

  function render() {
    const mount = document.getElementById("system-status");
    if (!mount) return;
    const names = Object.keys(Y.down);
    if (!names.length) { mount.innerHTML = ""; return; }
    const since = Y.since ? t("sys_since", { since: siteClock(Y.since) }) : "";
    const items = names.map(n => {
      const text = KNOWN.includes(n) ? t("sys_" + n) : t("sys_other", { name: n });
      return `<li data-check="${esc(n)}" title="${esc(Y.down[n])}">${esc(text)}</li>`;
    }).join("");
    mount.innerHTML = `<div id="system-strip" class="banner system" role="alert"><strong>${esc(t("sys_title"))}${esc(since)}</strong><ul>${items}</ul></div>`;
  }

  async function poll() {
    if (typeof S === "undefined" || !S.token) { if (Object.keys(Y.down).length) { Y.down = {}; Y.since = null; render(); } return; }
    try {
      const r = await fetch("/api/health", { headers: { Accept: "application/json" }, cache: "no-store" });
      const body = await r.json();
      const down = {};
      for (const [name, v] of Object.entries(body.checks || {})) if (!v.ok) down[name] = v.detail || "";
      if (Object.keys(down).length && !Y.since) Y.since = Date.now();
      if (!Object.keys(down).length) Y.since = null;
      Y.down = down;
    } catch (e) {
      Y.down = { backend: "no answer" };  // the backend itself does not answer: the feed strip says so too
      if (!Y.since) Y.since = Date.now();
    }
    render();
  }

  function esc(s) { return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }
  // the console's own clock formatter (site time zone, console.js); Beijing time if it is not there
  function siteClock(ms) {
    return typeof fmtTime === "function" ? fmtTime(ms) : new Date(ms).toLocaleTimeString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
  }

  Y.timer = setInterval(poll, 3000);
  poll();
  document.getElementById("lang").addEventListener("click", () => setTimeout(render, 0));
})();
