// The alert page: live alerts over EventSource, model card, weekly Dice, schedules, training, predict.
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

// ---- alerts ------------------------------------------------------------------------------------
let lastAlertId = null;
const seen = new Set();

function showAlert(alert) {
  if (seen.has(alert.id)) return;
  seen.add(alert.id);
  lastAlertId = alert.id;
  const item = document.createElement("li");
  item.className = alert.state === "resolved" ? "resolved" : alert.severity;
  item.dataset.type = alert.type;
  item.dataset.id = alert.id;
  const time = document.createElement("time");
  time.textContent = new Date(alert.at * 1000).toLocaleString();
  const text = document.createElement("span");
  text.textContent = `${alert.state === "resolved" ? "resolved: " : ""}${alert.type} — ${alert.message}`;
  item.append(time, text);
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
    refreshModel(); refreshRuns();
  });
}

async function loadAlerts() {
  const response = await api("/v1/alerts?limit=50");
  if (response.ok) (await response.json()).forEach(showAlert);
  connect();
}

// ---- model card and chart -------------------------------------------------------------------------
function row(list, term, value) {
  const dt = document.createElement("dt"); dt.textContent = term;
  const dd = document.createElement("dd"); dd.textContent = value;
  list.append(dt, dd);
}

async function refreshModel() {
  const list = $("model");
  const response = await api("/v1/models/latest");
  list.replaceChildren();
  if (response.status === 404) { row(list, "status", "no model registered yet"); return; }
  if (!response.ok) { row(list, "status", await detail(response)); return; }
  const model = await response.json();
  const ageHours = (Date.now() - Date.parse(model.trained_at)) / 3.6e6;
  row(list, "version", `${model.name} v${model.version}${model.aliases.length ? " (" + model.aliases.join(", ") + ")" : ""}`);
  row(list, "Dice", model.dice == null ? "–" : model.dice.toFixed(3));
  row(list, "IoU", model.iou == null ? "–" : model.iou.toFixed(3));
  row(list, "age", ageHours < 1 ? `${Math.round(ageHours * 60)} min` : `${ageHours.toFixed(1)} h`);
  row(list, "data", (model.dataset_fingerprint || "–").slice(0, 12));
  refreshChart();
}

async function refreshChart() {
  const response = await api("/v1/models/weekly-dice");
  if (!response.ok) return;
  const weeks = await response.json();
  const svg = $("chart");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const width = 600, height = 200, pad = 30, step = weeks.length ? (width - 2 * pad) / weeks.length : 0;
  weeks.forEach((week, i) => {
    const h = (height - 2 * pad) * week.average_dice;
    const bar = document.createElementNS(ns, "rect");
    Object.entries({ x: pad + i * step + 2, y: height - pad - h, width: Math.max(step - 4, 2), height: h, fill: "#2563eb" })
      .forEach(([k, v]) => bar.setAttribute(k, v));
    const title = document.createElementNS(ns, "title");
    title.textContent = `week of ${week.week_start}: ${week.average_dice.toFixed(3)} (${week.versions} versions)`;
    bar.append(title);
    const label = document.createElementNS(ns, "text");
    Object.entries({ x: pad + i * step + 2, y: height - 10, "font-size": 10 }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = week.week_start.slice(5);
    svg.append(bar, label);
  });
}

// ---- training and schedules ----------------------------------------------------------------------
async function refreshRuns() {
  const response = await api("/v1/runs");
  if (!response.ok) return;
  $("runs").replaceChildren(...(await response.json()).slice(0, 8).map((run) => {
    const item = document.createElement("li");
    item.className = `status-${run.status}`;
    item.dataset.runId = run.id;
    const version = run.result && run.result.version ? ` → v${run.result.version}` : "";
    item.textContent = `${run.id} ${run.status}${version}`;
    return item;
  }));
}

async function refreshSchedules() {
  const response = await api("/v1/schedules");
  if (!response.ok) return;
  const schedules = await response.json();
  $("schedules").replaceChildren(...schedules.map((s) => {
    const item = document.createElement("li");
    item.textContent = `${s.name}: ${s.cron || "every " + s.interval_seconds + " s"} (${s.timezone})` +
      (s.paused ? " — paused" : s.next_run_at ? ` — next ${new Date(s.next_run_at).toLocaleString()}` : "");
    return item;
  }));
  if (!schedules.length) $("schedules").textContent = "none";
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

loadAlerts(); refreshModel(); refreshRuns(); refreshSchedules();
setInterval(() => { refreshModel(); refreshRuns(); refreshSchedules(); }, 15000);
