// Texts of the duty console: Chinese by default, English on the toggle. t(key) falls back to the key.
"use strict";
const TEXTS = {
  zh: {
    title: "守望 · 值班台", username: "用户名", password: "密码", login: "登录", login_title: "值班员登录", logout: "退出", lang: "English",
    bad_login: "用户名或密码错误", tab_board: "告警", tab_map: "社区地图", tab_health: "设备健康",
    feed_on: "实时", feed_off: "未连接", feed_retry: "重连中…",
    open_only: "仅未关闭", severity: "级别", what: "告警", place: "位置", state: "状态", age: "时长", count: "次数", empty: "暂无告警",
    n_alarms: "共 {n} 条（未关闭生命安全告警 {ls} 条）", n_open: "未关闭 共 {n} 条（生命安全 {ls} 条）", drill: "演练", life_safety: "生命安全",
    sound_enable: "点击启用警报声", sound_enable_why: "浏览器在您点击之前不允许播放声音；未启用时生命安全告警不会发声。",
    mute: "静音 5 分钟", unmute: "恢复声音", muted_for: "警报声已静音（{who}），{left} 后自动恢复；新的生命安全告警会立即恢复声音",
    title_alarm: "【警报】{what}", notify_title: "守望：生命安全告警未确认",
    show_list: "逐条查看", show_groups: "按类型分组", page_of: "第 {from}–{to} 条，共 {n} 条（生命安全告警始终在最上方）",
    group_open: "未关闭", group_more: "显示 {shown} 条，共 {n} 条",
    rung_status: "各梯队状态", ack_meaning: "值班台的确认只代表值班员已收到：下列仍在等待自己应答的梯队会按时重复通知，到时未应答即升级。",
    ack_covers: "值班台的确认已停止各梯队的重复通知；到场、处置时限仍按下列时间升级。",
    r_rung: "梯队", r_status: "状态", r_repeat: "下次重复通知", r_climb: "超时升级", r_not_yet: "未通知", r_not_yet_at: "将被通知",
    r_waits: "等待本梯队应答", r_done: "已应答",
    drill_banner: "演练进行中：当前有 {n} 条演练告警（已标记“演练”，不计入真实统计）",
    alert_banner: "新的生命安全告警未确认：{what}", ack_alert: "确认 (停止警报)",
    sev_critical: "紧急", sev_major: "重要", sev_minor: "一般", sev_info: "提示",
    st_raised: "报警", st_notified: "已通知", st_acknowledged: "已确认", st_en_route: "已出发", st_on_scene: "已到场", st_handled: "处置完成",
    st_closed: "复核关闭", st_archived: "归档", st_false_alarm: "误报", st_suppressed: "已抑制", st_silenced: "维护静默",
    st_awaiting_verification: "待复核",
    d_place: "位置", d_community: "社区", d_grid: "网格", d_building: "楼栋", d_unit: "单元", d_room: "户", d_device: "设备", d_raised: "报警时间",
    d_seen: "最近一次", d_id: "编号", vulnerable: "重点关爱人员", lives_alone: "独居", mobility: "行动", key_holder: "钥匙", family: "家属",
    neighbours: "邻居", vulnerable_hidden: "此户有重点关爱信息（您的角色无权查看）",
    deadlines: "时限倒计时", no_deadlines: "无待到期时限", rungs: "已通知梯队", no_ladder: "本告警没有升级记录", timeline: "处置时间线",
    readings: "告警前后读数", no_readings: "暂无读数", actions: "处置",
    a_ack: "确认", a_ack_for: "代为确认", a_verify: "核实属实", a_dispatch: "派遣", a_close_real: "关闭（属实）", a_close_false: "关闭（误报）",
    a_silence: "设备维护静默", note: "备注（关闭时必填）", minutes: "分钟", pick_responder: "选择人员", done: "已完成",
    late: "已超时", dk_deadline: "时限", dk_verify: "核实窗口", dk_repeat: "重复通知",
    fs_acknowledged: "确认", fs_en_route: "出发", fs_on_scene: "到场", fs_handled: "处置",
    src_lifecycle: "状态", src_console: "值班台", src_ladder: "升级",
    legend_red: "生命安全告警", legend_yellow: "预警 / 设备离线", legend_green: "正常", legend_drill: "演练",
    b_alarms: "未关闭告警", b_devices: "设备", b_none: "无", camera_rates: "摄像头在线率 (目标 98%)", building: "楼栋", devices: "设备",
    offline: "离线", low_battery: "低电量", cameras: "摄像头", rate: "在线率", offline_devices: "离线设备", low_batteries: "低电量设备",
    t_devices: "设备总数", t_offline: "离线", t_low: "低电量", t_rate: "摄像头在线率", t_below: "未达标楼栋",
    ds_ok: "正常", ds_offline: "离线", ds_alarm: "报警", ds_low_battery: "低电量", ds_fault: "故障",
    k_smoke: "烟感", k_electrical: "电气", k_camera: "摄像头", k_sos: "一键呼救", k_water_leak: "水浸", k_other: "其他",
  },
  en: {
    title: "Shouwang · Duty console", username: "Username", password: "Password", login: "Log in", login_title: "Duty officer login", logout: "Log out",
    lang: "中文", bad_login: "Wrong username or password", tab_board: "Alarms", tab_map: "Community map", tab_health: "Device health",
    feed_on: "Live", feed_off: "Offline", feed_retry: "Reconnecting…",
    open_only: "Open only", severity: "Severity", what: "Alarm", place: "Place", state: "State", age: "Age", count: "Count", empty: "No alarms",
    n_alarms: "{n} alarms ({ls} open life-safety)", n_open: "{n} open ({ls} life-safety)", drill: "DRILL", life_safety: "life safety",
    sound_enable: "Click to enable the alarm sound", sound_enable_why: "The browser plays no sound before a click on this page; until then life-safety alarms are silent.",
    mute: "Mute 5 min", unmute: "Sound on", muted_for: "Alarm sound muted by {who}; back on in {left}, or at once on a new life-safety alarm",
    title_alarm: "[ALARM] {what}", notify_title: "Shouwang: life-safety alarm not acknowledged",
    show_list: "One by one", show_groups: "Group by type", page_of: "{from}–{to} of {n} (life-safety alarms always on top)",
    group_open: "open", group_more: "showing {shown} of {n}",
    rung_status: "Rungs", ack_meaning: "An acknowledgement on the console says the duty officer has it: rungs still waiting for their own answer keep being re-paged and climb when their time runs out.",
    ack_covers: "The console's acknowledgement stopped the rungs' repeats; on-scene and handling deadlines still climb at the times below.",
    r_rung: "Rung", r_status: "Status", r_repeat: "Next re-page", r_climb: "Climbs", r_not_yet: "not paged", r_not_yet_at: "will be paged",
    r_waits: "waiting for its own answer", r_done: "answered",
    drill_banner: "DRILL IN PROGRESS: {n} drill alarm(s) open (marked DRILL, never counted with real alarms)",
    alert_banner: "New life-safety alarm not acknowledged: {what}", ack_alert: "Acknowledge (stop the alert)",
    sev_critical: "Critical", sev_major: "Major", sev_minor: "Minor", sev_info: "Info",
    st_raised: "Raised", st_notified: "Notified", st_acknowledged: "Acknowledged", st_en_route: "En route", st_on_scene: "On scene",
    st_handled: "Handled", st_closed: "Closed", st_archived: "Archived", st_false_alarm: "False alarm", st_suppressed: "Suppressed",
    st_silenced: "Silenced", st_awaiting_verification: "Awaiting verification",
    d_place: "Place", d_community: "Community", d_grid: "Grid", d_building: "Building", d_unit: "Unit", d_room: "Household", d_device: "Device",
    d_raised: "Raised at", d_seen: "Last seen", d_id: "Id", vulnerable: "Vulnerable resident", lives_alone: "Lives alone", mobility: "Mobility",
    key_holder: "Key holder", family: "Family", neighbours: "Neighbours", vulnerable_hidden: "This household has care notes (your role may not see them)",
    deadlines: "Deadlines", no_deadlines: "No pending deadlines", rungs: "Rungs notified", no_ladder: "No escalation for this alarm",
    timeline: "Timeline", readings: "Readings around the alarm", no_readings: "No readings", actions: "Actions",
    a_ack: "Acknowledge", a_ack_for: "Acknowledge on behalf", a_verify: "Verify (real)", a_dispatch: "Dispatch", a_close_real: "Close (real)",
    a_close_false: "Close (false alarm)", a_silence: "Silence device", note: "Note (required to close)", minutes: "minutes",
    pick_responder: "Pick a person", done: "Done", late: "LATE", dk_deadline: "deadline", dk_verify: "verify window", dk_repeat: "repeat",
    fs_acknowledged: "acknowledge", fs_en_route: "en route", fs_on_scene: "on scene", fs_handled: "handled",
    src_lifecycle: "state", src_console: "console", src_ladder: "ladder",
    legend_red: "Life-safety alarm", legend_yellow: "Warnings / devices offline", legend_green: "Clear", legend_drill: "Drill",
    b_alarms: "Open alarms", b_devices: "Devices", b_none: "None", camera_rates: "Camera online rate (target 98 %)", building: "Building",
    devices: "Devices", offline: "Offline", low_battery: "Low battery", cameras: "Cameras", rate: "Online rate", offline_devices: "Offline devices",
    low_batteries: "Low batteries", t_devices: "Devices", t_offline: "Offline", t_low: "Low battery", t_rate: "Camera online rate",
    t_below: "Buildings below target", ds_ok: "ok", ds_offline: "offline", ds_alarm: "alarm", ds_low_battery: "low battery", ds_fault: "fault",
    k_smoke: "smoke", k_electrical: "electrical", k_camera: "camera", k_sos: "SOS", k_water_leak: "water leak", k_other: "other",
  },
};
let LANG = localStorage.getItem("sw-lang") || "zh";
function t(key, vars) {
  let s = (TEXTS[LANG] && TEXTS[LANG][key]) || TEXTS.zh[key] || key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace("{" + k + "}", v);
  return s;
}
function applyStaticTexts() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  document.querySelectorAll("[data-i18n]").forEach(e => { e.textContent = t(e.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach(e => { e.placeholder = t(e.dataset.i18nPlaceholder); });
  document.getElementById("lang").textContent = t("lang");
}
// Maintenance windows (backend/api/static/maintenance.js)
Object.assign(TEXTS.zh, {
  mw_button: "维护窗口", mw_title: "维护窗口", mw_close: "关闭", mw_active: "生效中 / 待开始", mw_recent: "最近结束", mw_none: "当前没有维护窗口",
  mw_state_in_force: "生效中", mw_state_pending: "待开始", mw_state_ended: "已结束", mw_ls_badge: "生命安全设备静默", mw_soon: "即将结束",
  mw_span: "{start} 至 {end}（{tz}）", mw_ended_at: "{start} 开始，{end} 结束 {by}", mw_by: "{who}：{why}",
  mw_left_live: "本楼 {n} 个烟感 / 一键呼救不在窗口内，照常报警", mw_override_is: "生命安全例外理由：{why}",
  mw_extend_minutes: "延长分钟数", mw_extend: "延长", mw_why: "理由", mw_end: "提前结束", mw_extend_default: "工作未完成", mw_end_default: "维护完成",
  mw_building: "楼栋", mw_scope: "范围", mw_scope_building: "整栋楼", mw_scope_device: "单个设备", mw_scope_kind: "楼内某类设备",
  mw_device: "设备", mw_kind: "设备类型", mw_minutes: "时长（分钟）", mw_reason: "理由", mw_reason_hint: "工单号、施工人员、内容",
  mw_override: "生命安全例外：静默烟感 / 一键呼救（最长 {n} 分钟）", mw_override_reason: "例外理由",
  mw_ls_rule: "烟感和一键呼救默认不被静默；确需静默须勾选例外并填写理由，最长 {n} 分钟，期间值班台始终显示。窗口结束时重新检查范围内设备，仍在报警的立即告警并通知。",
  mw_note_soon: "维护窗口即将结束（{end}）：{what}，届时仍在报警的设备将立即告警", mw_note_ended: "维护窗口已结束：{what}，范围内设备已重新检查",
  mw_create: "开启维护窗口", mw_ls_strip: "注意：生命安全设备静默中 —— {items}", mw_ls_item: "{what} 至 {end}", mw_view: "查看",
});
Object.assign(TEXTS.en, {
  mw_button: "Maintenance", mw_title: "Maintenance windows", mw_close: "Close", mw_active: "In force / coming", mw_recent: "Recently ended",
  mw_none: "No maintenance window", mw_state_in_force: "in force", mw_state_pending: "coming", mw_state_ended: "ended",
  mw_ls_badge: "life-safety devices silenced", mw_soon: "ending soon", mw_span: "{start} to {end} ({tz})", mw_ended_at: "{start} to {end} {by}",
  mw_by: "{who}: {why}", mw_left_live: "{n} smoke detector(s) / SOS button(s) in this building stay live", mw_override_is: "Life-safety override: {why}",
  mw_extend_minutes: "minutes to add", mw_extend: "Extend", mw_why: "Reason", mw_end: "End now", mw_extend_default: "work not finished",
  mw_end_default: "maintenance done", mw_building: "Building", mw_scope: "Scope", mw_scope_building: "Whole building", mw_scope_device: "One device",
  mw_scope_kind: "One device kind", mw_device: "Device", mw_kind: "Device kind", mw_minutes: "Minutes", mw_reason: "Reason",
  mw_reason_hint: "work order, technician, what is done", mw_override: "Life-safety override: silence smoke detectors / SOS buttons (at most {n} min)",
  mw_override_reason: "Override reason",
  mw_ls_rule: "Smoke detectors and SOS buttons are never silenced unless the override is ticked with a reason, for at most {n} minutes, shown on the console meanwhile. When a window ends, its devices are re-checked: alarms still present go live and page at once.",
  mw_note_soon: "Maintenance window ends at {end}: {what}; devices still in alarm then alarm at once",
  mw_note_ended: "Maintenance window ended: {what}; its devices were re-checked",
  mw_create: "Open maintenance window", mw_ls_strip: "Attention: life-safety devices silenced — {items}", mw_ls_item: "{what} until {end}", mw_view: "View",
});
