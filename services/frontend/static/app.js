// The alert page: live alerts over EventSource, model card (served vs newest), watches, weekly Dice,
// schedules, training, predict. Every panel says so when it has nothing to show.
// Same origin as the API: nginx proxies /v1/ in a cluster; the control service serves this page under `make up`.
"use strict";

const $ = (id) => document.getElementById(id);
// Every API call carries the token (read or write): no /v1 endpoint answers without one.
const api = (path, options = {}) => fetch(path, { ...options, headers: authHeaders(options.headers || {}) });

// ---- token: from #token=... once (make up prints that link), then kept for this tab ----------
(function takeTokenFromHash() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("polyp-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  $("token").value = sessionStorage.getItem("polyp-token") || "";
  $("token").addEventListener("change", (e) => sessionStorage.setItem("polyp-token", e.target.value.trim()));
})();

function authHeaders(extra = {}) {
  const token = sessionStorage.getItem("polyp-token");
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function detail(response) {
  try { const body = await response.json(); return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); }
  catch { return response.statusText; }
}

// Fill a list, or say why it is empty.
function fillList(list, items, emptyText) {
  if (items.length) { list.replaceChildren(...items); return; }
  const empty = document.createElement("li");
  empty.className = "empty";
  empty.textContent = emptyText;
  list.replaceChildren(empty);
}

// ---- alerts ------------------------------------------------------------------------------------
let lastAlertId = null;
const seen = new Set();

function showAlert(alert) {
  // An alert delivered twice (at least once: a crash between publishing and clearing the outbox) keeps its key.
  const key = alert.key || alert.id;
  lastAlertId = alert.id;
  if (seen.has(key)) return;
  seen.add(key);
  const item = document.createElement("li");
  item.className = alert.state === "resolved" ? "resolved" : alert.severity;
  item.dataset.type = alert.type;
  item.dataset.id = alert.id;
  if (alert.details && alert.details.watch_id) item.dataset.watchId = alert.details.watch_id;
  const time = document.createElement("time");
  time.textContent = new Date(alert.at * 1000).toLocaleString();
  const text = document.createElement("span");
  text.textContent = `${alert.state === "resolved" ? "resolved: " : ""}${alert.type} — ${alert.message}`;
  item.append(time, text);
  $("alerts").querySelectorAll(".empty").forEach((empty) => empty.remove());
  $("alerts").prepend(item);
}

function offline(text) { $("connection").textContent = text; $("connection").className = "pill offline"; }

async function connect() {
  // An EventSource cannot send the token: trade it for a one-minute ticket, never the token itself in a URL.
  // Every (re)connection takes a new ticket and resumes after the last alert seen.
  const response = await api("/v1/alerts/ticket", { method: "POST" }).catch(() => null);
  if (!response || !response.ok) {
    offline(response && response.status === 401 ? "no access: enter a token" : "reconnecting");
    setTimeout(connect, 3000);
    return;
  }
  const { ticket } = await response.json();
  const after = lastAlertId ? `&after=${encodeURIComponent(lastAlertId)}` : "";
  const source = new EventSource(`/v1/alerts/stream?ticket=${encodeURIComponent(ticket)}${after}`);
  source.addEventListener("open", () => { $("connection").textContent = "live"; $("connection").className = "pill online"; });
  source.addEventListener("error", () => { source.close(); offline("reconnecting"); setTimeout(connect, 2000); });
  source.addEventListener("alert", (event) => {
    showAlert(JSON.parse(event.data));
    refreshModel(); refreshRuns(); refreshWatches();
  });
}

async function loadAlerts() {
  const response = await api("/v1/alerts?limit=50");
  if (response.ok) {
    const alerts = await response.json();
    if (!alerts.length) fillList($("alerts"), [], "no alerts yet");
    alerts.forEach(showAlert);
  }
  connect();
}

// ---- model card and chart -------------------------------------------------------------------------
function row(list, term, value) {
  const dt = document.createElement("dt"); dt.textContent = term;
  const dd = document.createElement("dd"); dd.textContent = value;
  list.append(dt, dd);
}

// The served version (alias champion: it passed the gate) next to the newest registered one, which may
// have failed the gate: the two differ exactly when the newest is not what users get.
async function showVersion(list, path, emptyText) {
  const response = await api(path);
  list.replaceChildren();
  if (response.status === 404) { row(list, "status", emptyText); return null; }
  if (!response.ok) { row(list, "status", await detail(response)); return null; }
  const model = await response.json();
  const ageHours = (Date.now() - Date.parse(model.trained_at)) / 3.6e6;
  row(list, "version", `${model.name} v${model.version}${model.aliases.length ? " (" + model.aliases.join(", ") + ")" : ""}`);
  row(list, "Dice", model.dice == null ? "–" : model.dice.toFixed(3));
  row(list, "IoU", model.iou == null ? "–" : model.iou.toFixed(3));
  row(list, "age", ageHours < 1 ? `${Math.round(ageHours * 60)} min` : `${ageHours.toFixed(1)} h`);
  row(list, "data", (model.dataset_fingerprint || "–").slice(0, 12));
  return model;
}

async function refreshModel() {
  const [served, newest] = await Promise.all([
    showVersion($("served"), "/v1/models/champion", "no version has passed the quality gate yet"),
    showVersion($("model"), "/v1/models/latest", "no model registered yet"),
  ]);
  if (newest) {
    row($("model"), "served", served && served.version === newest.version ? "yes" : "no: it did not pass the quality gate, or is not published yet");
  }
  refreshChart();
}

// ---- weekly Dice chart: hand-drawn SVG (axes, values, the quality floor) ------------------------------
const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  Object.entries(attributes).forEach(([k, v]) => element.setAttribute(k, v));
  if (text !== undefined) element.textContent = text;
  return element;
}

async function qualityFloor() {
  // The floor the served model is held to: the default quality watch (DICE_FLOOR, also the training gate).
  const response = await api("/v1/watches/model-quality-floor");
  if (!response.ok) return null;
  const watch = await response.json();
  return watch.check.floor ?? null;
}

async function refreshChart() {
  const [response, floor] = await Promise.all([api("/v1/models/weekly-dice"), qualityFloor()]);
  if (!response.ok) return;
  const weeks = await response.json();
  const svg = $("chart");
  const width = 640, height = 240, left = 44, right = 80, top = 12, bottom = 36;
  const plotWidth = width - left - right, plotHeight = height - top - bottom;
  const y = (dice) => top + plotHeight * (1 - dice);  // Dice 0..1, bottom to top
  const parts = [];
  [0, 0.25, 0.5, 0.75, 1].forEach((tick) => {  // y axis: ticks, labels, light grid
    parts.push(svgElement("line", { class: "grid", x1: left, x2: left + plotWidth, y1: y(tick), y2: y(tick) }));
    parts.push(svgElement("text", { class: "tick y", x: left - 6, y: y(tick) + 4, "text-anchor": "end" }, tick.toFixed(2)));
  });
  parts.push(svgElement("line", { class: "axis", x1: left, x2: left, y1: top, y2: top + plotHeight }));
  parts.push(svgElement("line", { class: "axis", x1: left, x2: left + plotWidth, y1: top + plotHeight, y2: top + plotHeight }));
  parts.push(svgElement("text", { class: "axis-title", x: 12, y: top + plotHeight / 2, transform: `rotate(-90 12 ${top + plotHeight / 2})`,
    "text-anchor": "middle" }, "Dice"));
  parts.push(svgElement("text", { class: "axis-title", x: left + plotWidth / 2, y: height - 4, "text-anchor": "middle" }, "week starting"));
  const step = weeks.length ? plotWidth / weeks.length : 0;
  weeks.forEach((week, i) => {
    const x = left + i * step, barWidth = Math.max(Math.min(step - 8, 60), 4);
    const bar = svgElement("rect", { class: "bar", x: x + (step - barWidth) / 2, y: y(week.average_dice), width: barWidth,
      height: plotHeight * week.average_dice, "data-week": week.week_start, "data-dice": week.average_dice });
    bar.append(svgElement("title", {}, `week of ${week.week_start}: ${week.average_dice.toFixed(3)} (${week.versions} versions)`));
    parts.push(bar);
    parts.push(svgElement("text", { class: "value", x: x + step / 2, y: y(week.average_dice) - 4, "text-anchor": "middle" },
      week.average_dice.toFixed(2)));
    parts.push(svgElement("text", { class: "tick x", x: x + step / 2, y: top + plotHeight + 14, "text-anchor": "middle" },
      week.week_start.slice(5)));
  });
  if (floor !== null) {
    parts.push(svgElement("line", { id: "floor-line", class: "floor", x1: left, x2: left + plotWidth, y1: y(floor), y2: y(floor),
      "data-floor": floor }));
    parts.push(svgElement("text", { class: "floor-label", x: left + plotWidth + 4, y: y(floor) + 4 }, `floor ${floor.toFixed(2)}`));
  }
  if (!weeks.length) {
    parts.push(svgElement("text", { id: "chart-empty", class: "empty", x: left + plotWidth / 2, y: top + plotHeight / 2,
      "text-anchor": "middle" }, "no versions registered yet"));
  }
  svg.replaceChildren(...parts);
}

// ---- watches ----------------------------------------------------------------------------------------
function watchCheck(check) {
  if (check.kind === "freshness") return `at most ${check.max_age_hours} h old`;
  if (check.kind === "quality") {
    return [check.floor != null ? `${check.metric} ≥ ${check.floor}` : null,
            check.ceiling != null ? `${check.metric} ≤ ${check.ceiling}` : null].filter(Boolean).join(" and ");
  }
  return `alerts at ${check.count} or more failed runs in ${check.window_hours} h`;
}

function watchItem(watch) {
  const item = document.createElement("li");
  item.dataset.watchId = watch.id;
  const status = watch.paused ? "paused" : watch.state.status;
  item.className = `watch watch-${status}`;
  const badge = document.createElement("span");
  badge.className = "watch-status";
  badge.textContent = status;
  const text = document.createElement("span");
  const since = watch.state.since ? ` since ${new Date(watch.state.since * 1000).toLocaleString()}` : "";
  text.textContent = ` ${watch.description || watch.id}: ${watchCheck(watch.check)}` +
    (watch.check.kind === "run_failures" ? "" : ` (${watch.target})`) + since +
    (watch.state.message ? ` — ${watch.state.message}` : "");
  const toggle = document.createElement("button");
  toggle.className = "watch-toggle";
  toggle.textContent = watch.paused ? "Resume" : "Pause";
  toggle.addEventListener("click", async () => {
    const response = await api(`/v1/watches/${encodeURIComponent(watch.id)}/${watch.paused ? "resume" : "pause"}`, { method: "POST" });
    if (!response.ok) $("watch-result").textContent = `not changed: ${await detail(response)}`;
    refreshWatches();
  });
  item.append(badge, text, toggle);
  return item;
}

async function refreshWatches() {
  const response = await api("/v1/watches");
  if (!response.ok) return;
  fillList($("watches"), (await response.json()).map(watchItem), "no watches");
}

const WATCH_CHECKS = {  // the form's one threshold, as each kind's check
  freshness: (value) => ({ kind: "freshness", max_age_hours: value }),
  quality: (value) => ({ kind: "quality", floor: value }),
  run_failures: (value) => ({ kind: "run_failures", count: Math.round(value), window_hours: 24 }),
};

$("watch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const spec = {
    description: $("watch-description").value.trim(),
    check: WATCH_CHECKS[$("watch-kind").value](Number($("watch-threshold").value)),
    interval_s: Number($("watch-interval").value),
    severity: $("watch-severity").value,
  };
  const response = await api("/v1/watches", {
    method: "POST", headers: authHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(spec),
  });
  $("watch-result").textContent = response.ok ? `watch ${(await response.json()).id} created` : `not created: ${await detail(response)}`;
  refreshWatches();
});

// ---- training and schedules ----------------------------------------------------------------------
async function refreshRuns() {
  const response = await api("/v1/runs");
  if (!response.ok) return;
  fillList($("runs"), (await response.json()).slice(0, 8).map((run) => {
    const item = document.createElement("li");
    item.className = `status-${run.status}`;
    item.dataset.runId = run.id;
    const version = run.result && run.result.version ? ` → v${run.result.version}` : "";
    item.textContent = `${run.id} ${run.status}${version}`;
    return item;
  }), "no runs yet");
}

async function refreshSchedules() {
  const response = await api("/v1/schedules");
  if (!response.ok) return;
  const schedules = await response.json();
  fillList($("schedules"), schedules.map((s) => {
    const item = document.createElement("li");
    item.textContent = `${s.name}: ${s.cron || "every " + s.interval_seconds + " s"} (${s.timezone})` +
      (s.paused ? " — paused" : s.next_run_at ? ` — next ${new Date(s.next_run_at).toLocaleString()}` : "");
    return item;
  }), "no schedules");
}

$("trigger").addEventListener("click", async () => {
  const result = $("trigger-result");
  result.textContent = "submitting…";
  const response = await api("/v1/runs", {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() }),
    body: JSON.stringify({ epochs: Number($("epochs").value) }),
  });
  result.textContent = response.ok ? `run ${(await response.json()).id} submitted` : `not started: ${await detail(response)}`;
  refreshRuns();
});

// ---- predict ----------------------------------------------------------------------------------------
$("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  $("predict-result").textContent = "segmenting…";
  const response = await api("/v1/predict", { method: "POST", body: form });
  if (!response.ok) { $("predict-result").textContent = `error ${response.status}: ${await detail(response)}`; return; }
  const prediction = await response.json();
  $("predict-result").textContent = `model v${prediction.version}: polyp area ${(prediction.area_fraction * 100).toFixed(1)}%, ` +
    `${prediction.boxes.length} region(s), ${Math.round(prediction.latency_ms)} ms`;
  const [image, mask] = await Promise.all([createImageBitmap(file), loadImage(`data:image/png;base64,${prediction.mask_png_base64}`)]);
  const canvas = $("overlay");
  canvas.width = image.width; canvas.height = image.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  // Tint the mask green: draw it into an offscreen canvas, keep its white pixels, colour them.
  const tint = new OffscreenCanvas(image.width, image.height).getContext("2d");
  tint.drawImage(mask, 0, 0);
  const pixels = tint.getImageData(0, 0, image.width, image.height);
  for (let i = 0; i < pixels.data.length; i += 4) {
    const on = pixels.data[i] > 127;
    pixels.data[i] = 0; pixels.data[i + 1] = 255; pixels.data[i + 2] = 0; pixels.data[i + 3] = on ? 110 : 0;
  }
  tint.putImageData(pixels, 0, 0);
  ctx.drawImage(tint.canvas, 0, 0);
  ctx.strokeStyle = "#facc15"; ctx.lineWidth = Math.max(2, image.width / 200);
  prediction.boxes.forEach((b) => ctx.strokeRect(b.x, b.y, b.width, b.height));
});

function loadImage(src) {
  return new Promise((resolve, reject) => { const img = new Image(); img.onload = () => resolve(img); img.onerror = reject; img.src = src; });
}

loadAlerts(); refreshModel(); refreshRuns(); refreshSchedules(); refreshWatches();
setInterval(() => { refreshModel(); refreshRuns(); refreshSchedules(); refreshWatches(); }, 15000);
