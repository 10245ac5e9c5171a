// Customer tracking page. Everything comes from /track/<token>/events: a
// snapshot first, then this job's status, ETA, notifications and, only while
// the technician is en route to this job, their position. The server decides
// what may be seen; this page only draws it. No inline styles (strict CSP).
"use strict";

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const base = location.pathname.replace(/\/+$/, "");
const TITLES = {
  scheduled: "Your visit is scheduled",
  en_route: "Your technician is en route",
  on_hold: "Your technician is briefly delayed",
  arrived: "Your technician has arrived",
  done: "Job done — thank you!",
  cancelled: "This visit was cancelled",
  failed: "This visit has ended",
  gone: "This tracking link is no longer active",
};
const ENDED = new Set(["done", "cancelled", "failed", "gone"]);
const view = { phase: "loading", window: null, eta: null, eta_p90: null, delay_s: null,
  site: null, technician: null, position: null, note: "" };
let map = null;
let home = null;
let van = null;
let source = null;
let retryMs = 2000;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text != null) node.textContent = text;
  return node;
}

function when(ts) {
  const d = new Date(ts * 1000);
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })} ${time}`;
}

function initMap(config) {
  if (map || !window.L || !view.site) return;
  map = L.map("map", { zoomControl: true, attributionControl: Boolean(config && config.tile_url) });
  L.control.scale().addTo(map);
  if (config && config.tile_url) {
    L.tileLayer(config.tile_url, { attribution: config.attribution || "", maxZoom: 19 }).addTo(map);
  } else {
    $("#map").classList.add("no-tiles");
  }
  const pin = el("div");
  pin.append(el("div", "pin"));
  home = L.marker([view.site.lat, view.site.lon], {
    icon: L.divIcon({ html: pin, className: "home-marker", iconSize: [26, 26], iconAnchor: [13, 26] }),
    keyboard: false, title: "Your address",
  }).addTo(map);
  map.setView([view.site.lat, view.site.lon], 15);
}

function vanIcon() {
  const root = el("div");
  const arrow = document.createElementNS(SVG, "svg");
  arrow.setAttribute("viewBox", "0 0 40 40");
  arrow.setAttribute("class", "arrow");
  const tip = document.createElementNS(SVG, "path");
  tip.setAttribute("d", "M20 0 L26 8 L14 8 Z");
  arrow.appendChild(tip);
  root.append(arrow, el("div", "dot"));
  return L.divIcon({ html: root, className: "van-marker", iconSize: [40, 40], iconAnchor: [20, 20] });
}

function drawVan() {
  const p = view.phase === "en_route" ? view.position : null;
  if (!map) return;
  if (!p) {
    if (van) { map.removeLayer(van); van = null; }
    $("#distance").textContent = "";
    return;
  }
  const first = !van;
  if (!van) van = L.marker([p.lat, p.lon], { icon: vanIcon(), keyboard: false, title: "Your technician" }).addTo(map);
  van.setLatLng([p.lat, p.lon]);
  const node = van.getElement();
  node.dataset.lat = p.lat;
  node.dataset.lon = p.lon;
  node.classList.toggle("no-heading", p.hdg == null);
  if (p.hdg != null) node.querySelector(".arrow").style.transform = `rotate(${p.hdg}deg)`;
  const km = map.distance([p.lat, p.lon], [view.site.lat, view.site.lon]) / 1000;
  const approx = p.coarse ? "approximate position, " : "";
  $("#distance").textContent = `Technician: ${approx}about ${km < 1 ? km.toFixed(1) : km.toFixed(0)} km away (straight line).`;
  if (first || !map.getBounds().contains(van.getLatLng())) {
    map.fitBounds(L.latLngBounds([[p.lat, p.lon], [view.site.lat, view.site.lon]]).pad(0.25), { maxZoom: 16 });
  }
}

function render() {
  const phase = view.phase;
  $("#phase").textContent = TITLES[phase] || "…";
  $("#phase").dataset.phase = phase;
  const name = view.technician && view.technician.first_name;
  $("#who").textContent = name && !ENDED.has(phase) ? `Your technician today: ${name}` : "";
  const etaShown = ["scheduled", "en_route", "on_hold"].includes(phase) && view.eta != null;
  $("#eta-row").hidden = !etaShown;
  if (etaShown) {
    const upto = view.eta_p90 != null && view.eta_p90 - view.eta >= 60 ? ` – ${when(view.eta_p90)}` : "";
    $("#eta").textContent = `${when(view.eta)}${upto}`;
  }
  $("#window-row").hidden = !view.window || ENDED.has(phase);
  if (view.window) $("#window").textContent = `${when(view.window.start)} – ${when(view.window.end)}`;
  let note = view.note;
  if (!note && etaShown && view.delay_s != null && view.delay_s >= 300) {
    note = `Running about ${Math.round(view.delay_s / 60)} min late — sorry for the wait.`;
  }
  $("#note").textContent = ENDED.has(phase) || phase === "arrived" ? "" : note;
  drawVan();
}

function finish(text) {
  if (source) { source.close(); source = null; }
  view.position = null;
  $("#live").textContent = text;
  render();
}

const handlers = {
  snapshot(s) {
    Object.assign(view, { phase: s.phase, window: s.window, eta: s.eta, eta_p90: s.eta_p90,
      delay_s: s.delay_s, site: s.site, technician: s.technician, position: s.position });
    initMap(s.map);
    render();
  },
  status(s) {
    view.phase = s.phase;
    if (s.phase !== "en_route") view.position = null;
    view.note = "";
    if (ENDED.has(s.phase)) finish("This visit is over; this link now closes.");
    else render();
  },
  eta(s) {
    Object.assign(view, { eta: s.eta, eta_p90: s.eta_p90, delay_s: s.delay_s });
    render();
  },
  position(s) {
    view.position = s;
    render();
  },
  notify(s) {
    view.phase = s.phase;
    if (s.notification === "arriving_soon") view.note = "Arriving in a few minutes.";
    if (s.notification === "delayed") view.note = "Your technician is running late — sorry for the wait.";
    render();
  },
  end() {
    view.phase = "gone";
    Object.assign(view, { eta: null, eta_p90: null, window: null, technician: null });
    finish("");
  },
};

function follow() {
  source = new EventSource(`${base}/events`);
  source.onopen = () => { $("#live").textContent = "Live"; retryMs = 2000; };
  source.onerror = () => {
    if (!source) return;
    $("#live").textContent = "Reconnecting…";
    if (source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(check, retryMs);
      retryMs = Math.min(retryMs * 2, 60000);
    }
  };
  for (const [type, handle] of Object.entries(handlers)) {
    source.addEventListener(type, (e) => handle(JSON.parse(e.data)));
  }
}

async function check() {
  // The browser gave up on the stream: a 404/410 means the link is over.
  let r = null;
  try { r = await fetch(`${base}/state`); } catch (_) { /* offline: try again later */ }
  if (r && (r.status === 404 || r.status === 410)) { handlers.end(); return; }
  follow();
}

follow();
