// Dispatcher live map. Signs in with an API key (exchanged for an HttpOnly
// cookie: EventSource cannot send headers), draws every technician, job site
// and remaining tour with Leaflet (vendored, never from a CDN), and follows
// /api/v1/feed. The browser resumes a dropped stream with Last-Event-ID; when
// it gives up, we reconnect with ?lastEventId= and resynchronise. Everything
// works without map tiles. No inline styles or HTML strings with styles: the
// page's Content-Security-Policy forbids them.
"use strict";

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const ACTIVE = new Set(["en_route", "on_site", "paused", "resumed"]);
const CLOSED = new Set(["done", "cancelled", "failed"]);
// At the site: on_site, or paused/resumed after arriving (a break on the way is not).
const onSite = (j) => j.state === "on_site"
  || (["paused", "resumed"].includes(j.state) && (j.history || []).some((h) => h.status === "on_site"));
const ALERT_NAMES = {
  late_risk: "Late risk", overrun: "Overrun", stale_device: "Stale device",
  long_stop: "Long stop", left_site_open_job: "Left site, job open",
};

const techs = new Map();   // technician_id -> {t, marker, line, li}
const jobs = new Map();    // job_id -> {j, marker}
const owner = new Map();   // device_id -> technician_id
const alerts = new Map();  // key -> <li>
const filter = { tech: "", status: "" };
let cfg = null;
let map = null;
let layers = null;
let source = null;
let lastId = null;
let retryMs = 1000;
let fitted = false;
let hasView = false;
const pending = new Map(); // technician_id -> timer of a debounced jobs refresh

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text != null) node.textContent = text;
  return node;
}

function hhmm(ts) {
  return ts == null ? "—" : new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function ago(ts) {
  if (ts == null) return "no fix";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function nameOf(id) {
  const entry = techs.get(id);
  return entry ? entry.t.name || id : id || "—";
}

// --- HTTP ---------------------------------------------------------------

async function getJson(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (r.status === 401) { signedOut(); throw new Error("signed out"); }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// --- map ----------------------------------------------------------------

function initMap() {
  if (map) return true;
  if (!window.L) { $("#asset-error").hidden = false; return false; }
  // No view yet: loadAll() fits the fleet before anything is drawn, so the first tiles
  // fetched are the fleet's, not the whole world's at zoom 2.
  map = L.map("map", { zoomControl: true });
  L.control.scale().addTo(map);
  if (cfg.tile_url) {
    const tiles = L.tileLayer(cfg.tile_url, { attribution: cfg.attribution, maxZoom: cfg.max_zoom });
    let loaded = 0;
    tiles.on("tileerror", () => {
      if (loaded) return;
      $("#map-note").hidden = false;
      $("#map").classList.add("no-tiles");
    });
    tiles.on("tileload", () => {
      loaded += 1;
      $("#map-note").hidden = true;
      $("#map").classList.remove("no-tiles");
    });
    tiles.addTo(map);
  } else {
    $("#map").classList.add("no-tiles");
  }
  layers = { fences: L.layerGroup().addTo(map), tours: L.layerGroup().addTo(map),
    sites: L.layerGroup().addTo(map), techs: L.layerGroup().addTo(map) };
  return true;
}

function techIcon(label) {
  const root = el("div");
  const arrow = document.createElementNS(SVG, "svg");
  arrow.setAttribute("viewBox", "0 0 40 40");
  arrow.setAttribute("class", "arrow");
  const tip = document.createElementNS(SVG, "path");
  tip.setAttribute("d", "M20 0 L26 8 L14 8 Z");
  arrow.appendChild(tip);
  root.append(arrow, el("div", "dot"), el("div", "label", label));
  return L.divIcon({ html: root, className: "tech-marker", iconSize: [40, 40], iconAnchor: [20, 20] });
}

function siteIcon() {
  const root = el("div");
  root.append(el("div", "pin"), el("div", "num"), el("div", "eta"));
  return L.divIcon({ html: root, className: "site-marker", iconSize: [22, 22], iconAnchor: [11, 11] });
}

function setClass(node, prefix, value) {
  for (const c of [...node.classList]) if (c.startsWith(prefix)) node.classList.remove(c);
  if (value) node.classList.add(prefix + value);
}

// --- technicians ----------------------------------------------------------

function isStale(t) {
  const p = t.position;
  return Boolean(t.staleAlert) || (p != null && Date.now() / 1000 - p.ts > cfg.stale_after_s);
}

function upsertTech(t) {
  let entry = techs.get(t.technician_id);
  if (!entry) {
    entry = { t, marker: null, line: null, li: null };
    techs.set(t.technician_id, entry);
    const option = el("option", null, t.name || t.technician_id);
    option.value = t.technician_id;
    $("#filter-tech").appendChild(option);
  } else {
    entry.t = { ...entry.t, ...t };
  }
  for (const d of t.device_ids || []) owner.set(d, t.technician_id);
  drawTech(t.technician_id);
}

function drawTech(id) {
  const entry = techs.get(id);
  const t = entry.t;
  t.stale = isStale(t);
  const p = t.position;
  if (p && map) {
    if (!entry.marker) {
      entry.marker = L.marker([p.lat, p.lon], { icon: techIcon(t.name || id), keyboard: false }).addTo(layers.techs);
      entry.marker.getElement().dataset.technician = id;
      entry.marker.on("click", () => selectTech(id));
    } else {
      entry.marker.setLatLng([p.lat, p.lon]);
    }
    const node = entry.marker.getElement();
    node.dataset.lat = p.lat;
    node.dataset.lon = p.lon;
    node.dataset.status = t.status;
    setClass(node, "status-", t.status);
    node.classList.toggle("stale", t.stale);
    node.classList.toggle("no-heading", p.hdg == null);
    if (p.hdg != null) node.querySelector(".arrow").style.transform = `rotate(${p.hdg}deg)`;
    node.title = `${t.name || id} — ${t.status.replace("_", " ")}, ${ago(p.ts)}`;
  }
  drawTour(id);
  drawTechPanel(id);
  filterTech(id);
}

// Fixes can arrive faster than a screen refreshes: redraw each technician once a frame.
const dirty = new Set();
let frame = 0;
function redraw(id) {
  dirty.add(id);
  if (!frame) frame = requestAnimationFrame(() => {
    frame = 0;
    for (const each of dirty) drawTech(each);
    dirty.clear();
  });
}

function tourOf(id) {
  const list = [...jobs.values()].map((x) => x.j).filter((j) => j.technician_id === id && !CLOSED.has(j.state));
  list.sort((a, b) => a.sequence - b.sequence || (a.window ? a.window.start : 0) - (b.window ? b.window.start : 0));
  return list;
}

function drawTour(id) {
  const entry = techs.get(id);
  if (!map) return;
  const tour = tourOf(id);
  const points = tour.map((j) => [j.site.lat, j.site.lon]);
  if (entry.t.position) points.unshift([entry.t.position.lat, entry.t.position.lon]);
  if (entry.line) { layers.tours.removeLayer(entry.line); entry.line = null; }
  if (points.length >= 2) {
    entry.line = L.polyline(points, { color: "#1769aa", weight: 3, opacity: 0.7, dashArray: "6 6",
      className: "tour-line", interactive: false }).addTo(layers.tours);
  }
  tour.forEach((j, i) => drawSite(j, i + 1));
  for (const { j } of jobs.values()) if (j.technician_id === id && CLOSED.has(j.state)) drawSite(j, 0);
}

function late(j) {
  return j.delay_s != null && j.delay_s > 0 ? Math.round(j.delay_s / 60) : 0;
}

function drawSite(j, order) {
  if (!map) return;
  let entry = jobs.get(j.job_id);
  if (!entry) { entry = { j, marker: null }; jobs.set(j.job_id, entry); }
  if (!entry.marker) {
    entry.marker = L.marker([j.site.lat, j.site.lon], { icon: siteIcon(), keyboard: false }).addTo(layers.sites);
    entry.marker.getElement().dataset.job = j.job_id;
  }
  entry.marker.setLatLng([j.site.lat, j.site.lon]);
  const node = entry.marker.getElement();
  setClass(node, "state-", j.state);
  node.classList.toggle("closed", CLOSED.has(j.state));
  node.querySelector(".num").textContent = order ? String(order) : "";
  const eta = node.querySelector(".eta");
  // An ETA only while it is one (on site, j.eta is the arrival); on the map only for each
  // technician's next stop and for late ones, or a busy fleet's labels cover each other
  // (every ETA is in the tour panel and the marker's tooltip).
  const predicted = !CLOSED.has(j.state) && !onSite(j) && j.eta != null;
  eta.textContent = predicted && (order === 1 || late(j) > 0) ? hhmm(j.eta) : "";
  eta.classList.toggle("late", late(j) > 0);
  const window = j.window ? `, window ${hhmm(j.window.start)}–${hhmm(j.window.end)}` : "";
  node.title = `${j.job_id} — ${j.state.replace("_", " ")}${predicted ? `, ETA ${hhmm(j.eta)}` : ""}${window}`;
}

function drawTechPanel(id) {
  const entry = techs.get(id);
  const t = entry.t;
  if (!entry.li) {
    entry.li = el("li");
    entry.li.dataset.technician = id;
    entry.li.addEventListener("click", () => selectTech(id));
    $("#tech-list").appendChild(entry.li);
  }
  const head = el("div");
  head.append(el("span", "name", t.name || id), el("span", `chip status-${t.status}`, t.status.replace("_", " ")));
  if (t.stale) head.append(el("span", "chip stale", "stale"));
  const p = t.position;
  const speed = p && p.spd != null ? ` · ${(p.spd * 3.6).toFixed(0)} km/h` : "";
  const sub = el("div", "sub", `${t.job_id ? `job ${t.job_id} · ` : ""}last fix ${ago(p && p.ts)}${speed}`);
  const list = el("ol", "tour");
  for (const j of tourOf(id)) {
    const li = el("li");
    const window = j.window ? ` · window ${hhmm(j.window.start)}–${hhmm(j.window.end)}` : "";
    const p90 = j.eta_p90 != null ? `–${hhmm(j.eta_p90)}` : "";
    const when = CLOSED.has(j.state) ? "" : onSite(j)
      ? ` · since ${hhmm(j.eta)}` : ` · ETA ${hhmm(j.eta)}${p90}`;
    li.append(`${j.job_id} · ${j.state.replace("_", " ")}${when}${window}`);
    const minutes = late(j);
    if (minutes > 0) li.append(" ", el("span", "late", `+${minutes} min`));
    list.appendChild(li);
  }
  entry.li.replaceChildren(head, sub, list);
}

function selectTech(id) {
  const entry = techs.get(id);
  if (entry && entry.t.position && map) map.panTo([entry.t.position.lat, entry.t.position.lon]);
}

// --- filter ---------------------------------------------------------------

function visible(id) {
  const entry = techs.get(id);
  if (filter.tech && id !== filter.tech) return false;
  if (!filter.status) return true;
  if (!entry) return false;
  return filter.status === "stale" ? entry.t.stale : entry.t.status === filter.status;
}

function hide(node, hidden) {
  if (node) node.classList.toggle("filtered-out", hidden);
}

function filtering() {
  return Boolean(filter.tech || filter.status);
}

function filterTech(id) {
  const entry = techs.get(id);
  const out = !visible(id);
  hide(entry.li, out);
  hide(entry.marker && entry.marker.getElement(), out);
  hide(entry.line && entry.line.getElement(), out);
  for (const { j, marker } of jobs.values()) {
    if (j.technician_id === id) hide(marker && marker.getElement(), out);
  }
}

function applyFilter() {
  for (const id of techs.keys()) filterTech(id);
  for (const { j, marker } of jobs.values()) {
    if (!j.technician_id || !techs.has(j.technician_id)) hide(marker && marker.getElement(), filtering());
  }
  for (const li of alerts.values()) hide(li, !visible(li.dataset.technician));
}

// --- panels ---------------------------------------------------------------

function countAlerts() {
  const active = [...alerts.values()].filter((li) => !li.classList.contains("cleared")).length;
  $("#alert-count").textContent = String(active);
  $("#alert-count").classList.toggle("zero", active === 0);
  $("#alerts-empty").hidden = alerts.size > 0;
}

function alertKey(ev, kind) {
  return kind === "reoptimize" ? `reopt|${ev.ts}|${ev.technician_id}` : `${ev.alert}|${ev.technician_id}|${ev.job_id}`;
}

function renderAlert(li, ev, kind) {
  li.dataset.technician = ev.technician_id || "";
  li.className = `kind-${kind} sev-${ev.severity || "warning"}${ev.cleared ? " cleared" : ""}`;
  const what = kind === "reoptimize" ? `Re-plan (${String(ev.reason || "").replace(/_/g, " ")})` : ALERT_NAMES[ev.alert] || ev.alert;
  const jobsText = kind === "reoptimize" ? (ev.job_ids || []).join(", ") : ev.job_id || "";
  li.replaceChildren(el("span", "when", hhmm(ev.ts)), el("span", "what", what),
    ` ${nameOf(ev.technician_id)}${jobsText ? ` · ${jobsText}` : ""}${ev.cleared ? " (cleared)" : ""}`);
  li.raised = ev;
}

function addAlert(ev, kind) {
  const key = alertKey(ev, kind);
  let li = alerts.get(key);
  if (!li) {
    li = el("li");
    alerts.set(key, li);
    li.addEventListener("click", () => selectTech(ev.technician_id));
  }
  renderAlert(li, ev, kind);
  $("#alert-list").prepend(li);
  while (alerts.size > 100) {
    const [oldest] = alerts.keys();
    alerts.get(oldest).remove();
    alerts.delete(oldest);
  }
  countAlerts();
  hide(li, !visible(li.dataset.technician));
}

function syncAlerts(standing) {
  // The alerts standing now, from the server (GET /api/v1/alerts): after a gap in the
  // feed (a first load, a reset, a reconnect) raises and clears may have been missed.
  const keys = new Set();
  for (const ev of standing) {
    const key = alertKey(ev, "alert");
    keys.add(key);
    const li = alerts.get(key);
    if (!li || li.classList.contains("cleared")) addAlert(ev, "alert");
    markStale(ev);
  }
  for (const [key, li] of alerts) {
    if (li.raised && !li.raised.cleared && !keys.has(key) && !key.startsWith("reopt|")) {
      const cleared = { ...li.raised, cleared: true };
      renderAlert(li, cleared, "alert");
      markStale(cleared);
    }
  }
  countAlerts();
}

function markStale(ev) {
  const entry = techs.get(ev.technician_id);
  if (entry && ev.alert === "stale_device") { entry.t.staleAlert = !ev.cleared; drawTech(ev.technician_id); }
}

function logEvent(type, ev) {
  const who = ev.technician_id ? nameOf(ev.technician_id) : ev.device_id || "";
  const what = ev.status || ev.transition || ev.alert || ev.notification || ev.reason || "";
  const li = el("li", null, `${hhmm(ev.ts)} ${type} ${who} ${what} ${ev.job_id || ""}`.trim());
  const list = $("#events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function pct(x) { return x == null ? "—" : `${Math.round(x * 100)} %`; }
function mins(s) { return s == null ? "—" : `${Math.round(s / 60)} min`; }

function renderKpis(k) {
  const first = k.eta_error && Object.values(k.eta_error)[0];
  const rows = [
    ["Jobs", k.jobs ?? "—"],
    ["On time", pct(k.punctuality && k.punctuality.rate)],
    ["SLA met", pct(k.sla && k.sla.rate)],
    ["ETA error", mins(first && first.mae_s)],
    ["Km driven", k.km_driven && k.km_driven.total != null ? k.km_driven.total.toFixed(1) : "—"],
    ["On site / job", mins(k.onsite && k.onsite.mean_per_job_s)],
    ["First-visit fix", pct(k.first_visit_completion && k.first_visit_completion.rate)],
  ];
  $("#kpi-list").replaceChildren(...rows.map(([name, value]) => {
    const div = el("div");
    div.append(el("dt", null, name), el("dd", null, String(value)));
    return div;
  }));
}

// --- loading --------------------------------------------------------------

function upsertJob(j) {
  const entry = jobs.get(j.job_id);
  if (entry) entry.j = j; else jobs.set(j.job_id, { j, marker: null });
  drawSite(j, 0);
}

// Open jobs and those closed in the last 12 h: not every job the store has kept.
const CLOSED_SHOWN_S = 12 * 3600;
const recent = () => `closed_since=${Math.floor(Date.now() / 1000 - CLOSED_SHOWN_S)}`;

async function loadAll() {
  const [list, allJobs, standing] = await Promise.all(
    [getJson("/api/v1/technicians"), getJson(`/api/v1/jobs?${recent()}`), getJson("/api/v1/alerts")]);
  if (!fitted && map) {
    const points = list.filter((t) => t.position).map((t) => [t.position.lat, t.position.lon]);
    for (const j of allJobs) if (!CLOSED.has(j.state)) points.push([j.site.lat, j.site.lon]);
    if (points.length) { map.fitBounds(L.latLngBounds(points).pad(0.1), { maxZoom: 17 }); fitted = true; }
    else if (!hasView) map.setView([20, 0], 2); // nothing to show yet: the world
    hasView = true;
  }
  for (const j of allJobs) upsertJob(j);
  for (const t of list) upsertTech(t);
  syncAlerts(standing);
}

async function refreshJobs(id) {
  if (!id || pending.has(id)) return;
  pending.set(id, setTimeout(async () => {
    pending.delete(id);
    const list = await getJson(`/api/v1/jobs?technician_id=${encodeURIComponent(id)}&${recent()}`);
    const seen = new Set(list.map((j) => j.job_id));
    for (const { j } of jobs.values()) if (j.technician_id === id && !seen.has(j.job_id)) j.technician_id = null;
    for (const j of list) upsertJob(j);
    if (techs.has(id)) drawTech(id);
  }, 300));
}

let techReload = null;
function reloadTechsSoon() {
  if (techReload) return;
  techReload = setTimeout(async () => {
    techReload = null;
    for (const t of await getJson("/api/v1/technicians")) upsertTech(t);
  }, 500);
}

async function optional() {
  // The server says which optional endpoints exist: probing would log a 404.
  const has = (name) => Boolean(cfg.panels && cfg.panels[name]);
  if (has("kpis")) {
    const load = async () => renderKpis(await getJson("/api/v1/kpis"));
    await load();
    $("#kpis").hidden = false;
    setInterval(() => load().catch(() => {}), 60000);
  }
  if (has("geofences") && map) {
    const fences = await getJson("/api/v1/geofences");
    // The dispatcher's own fences (depots, zones): job sites are drawn as sites already.
    const all = Array.isArray(fences) ? fences : fences.features || [];
    const features = all.filter((f) => !(f.properties && f.properties.kind === "site"));
    L.geoJSON(features, {
      style: { color: "#7c3aed", weight: 2, fillOpacity: 0.08 },
      pointToLayer: (f, latlng) => L.circle(latlng, { radius: (f.properties && f.properties.radius_m) || 50 }),
    }).addTo(layers.fences);
  }
}

// --- live feed ------------------------------------------------------------

const handlers = {
  position(ev) {
    const id = ev.technician_id || owner.get(ev.device_id);
    const entry = id && techs.get(id);
    if (!entry) { reloadTechsSoon(); return; }
    entry.t.position = { lat: ev.lat, lon: ev.lon, ts: ev.ts, spd: ev.spd, hdg: ev.hdg, device_id: ev.device_id };
    redraw(id);
  },
  status(ev) {
    logEvent("status", ev);
    const job = jobs.get(ev.job_id);
    if (job) job.j.state = ev.status;
    const entry = techs.get(ev.technician_id);
    if (entry) {
      if (ACTIVE.has(ev.status)) { entry.t.status = ev.status; entry.t.job_id = ev.job_id; }
      else if (entry.t.job_id === ev.job_id) entry.t.status = "idle";
      drawTech(ev.technician_id);
    } else if (job) {
      drawSite(job.j, 0);
    }
    refreshJobs(ev.technician_id);
  },
  eta(ev) {
    const job = jobs.get(ev.job_id);
    if (job) Object.assign(job.j, { eta: ev.eta, eta_p90: ev.eta_p90, delay_s: ev.delay_s });
    if (techs.has(ev.technician_id)) redraw(ev.technician_id);
  },
  alert(ev) {
    logEvent("alert", ev);
    addAlert(ev, "alert");
    markStale(ev);
  },
  reoptimize(ev) {
    logEvent("reoptimize", ev);
    addAlert(ev, "reoptimize");
    refreshJobs(ev.technician_id);
  },
  geofence(ev) { logEvent("geofence", ev); },
  // The server could not replay everything since our last event: refetch the state.
  reset() { loadAll(); },
  notify(ev) { logEvent("notify", ev); },
};

function setConn(on, text) {
  $("#conn").textContent = text || (on ? "live" : "reconnecting");
  $("#conn").className = on ? "conn on" : "conn off";
}

function follow() {
  if (source) source.close();
  const url = lastId ? `/api/v1/feed?lastEventId=${encodeURIComponent(lastId)}` : "/api/v1/feed";
  source = new EventSource(url);
  source.onopen = () => { setConn(true); retryMs = 1000; };
  source.onerror = () => {
    setConn(false);
    // Closed means the browser will not retry by itself (e.g. an HTTP error).
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(reconnect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    }
  };
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (e) => {
      if (e.lastEventId) lastId = e.lastEventId;
      handle(JSON.parse(e.data));
    });
  }
}

async function reconnect() {
  let status = null;
  try { status = await getJson("/map/config.json"); } catch (_) { /* server still away */ }
  if (!status) { setTimeout(reconnect, retryMs); retryMs = Math.min(retryMs * 2, 30000); return; }
  if (!status.signed_in) { signedOut(); return; }
  await loadAll(); // the replay buffer may not cover a long gap
  follow();
}

setInterval(() => { for (const id of techs.keys()) redraw(id); }, 15000); // staleness ages

// --- session --------------------------------------------------------------

function signedOut() {
  if (source) { source.close(); source = null; }
  $("#board").hidden = true;
  $("#filters").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  setConn(false, "signed out");
}

async function start() {
  $("#login").hidden = true;
  $("#board").hidden = false;
  $("#filters").hidden = false;
  $("#logout").hidden = false;
  initMap();
  if (map) map.invalidateSize();
  await loadAll();
  follow();
  await optional();
}

$("#login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ api_key: $("#key").value }),
  });
  if (!r.ok) { $("#login-error").textContent = "Wrong API key."; return; }
  $("#key").value = "";
  $("#login-error").textContent = "";
  await start();
});

$("#logout").addEventListener("click", async () => {
  await fetch("/session", { method: "DELETE" });
  location.reload();
});

$("#filter-tech").addEventListener("change", (e) => { filter.tech = e.target.value; applyFilter(); });
$("#filter-status").addEventListener("change", (e) => { filter.status = e.target.value; applyFilter(); });

(async () => {
  cfg = await (await fetch("/map/config.json", { credentials: "same-origin" })).json();
  if (cfg.signed_in) await start();
  else signedOut();
})();
