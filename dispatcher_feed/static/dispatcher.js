// Dispatcher live table: signs in with an API key (exchanged for an HttpOnly
// cookie, since EventSource cannot send headers), loads technicians, then
// follows /api/v1/feed. EventSource resumes with Last-Event-ID by itself.
"use strict";

const $ = (sel) => document.querySelector(sel);
const rows = new Map();      // technician_id -> <tr>
const deviceOwner = new Map(); // device_id -> technician_id
let source = null;

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fmtTime(ts) {
  return ts ? new Date(ts * 1000).toLocaleTimeString() : "—";
}

function render(t) {
  let tr = rows.get(t.technician_id);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.technician = t.technician_id;
    rows.set(t.technician_id, tr);
    $("#technicians tbody").appendChild(tr);
  }
  const p = t.position;
  tr.replaceChildren(
    cell(t.name || t.technician_id),
    cell(t.status.replace("_", " "), "status status-" + t.status),
    cell(t.job_id || "—"),
    cell(p ? `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}` : "—", "pos"),
    cell(p && p.spd != null ? `${(p.spd * 3.6).toFixed(0)} km/h` : "—"),
    cell(fmtTime(p && p.ts), "ts"),
  );
  tr.dataset.status = t.status;
  tr.dataset.lat = p ? p.lat : "";
  tr.dataset.lon = p ? p.lon : "";
  tr._tech = t;
  for (const d of t.device_ids) deviceOwner.set(d, t.technician_id);
}

function logEvent(type, data) {
  const li = document.createElement("li");
  const who = data.technician_id || data.device_id || "";
  li.textContent = `${fmtTime(data.ts)} ${type} ${who} ${data.status || data.transition || data.alert || ""}`;
  const list = $("#events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function onPosition(e) {
  const ev = JSON.parse(e.data);
  const id = ev.technician_id || deviceOwner.get(ev.device_id);
  const tr = id && rows.get(id);
  if (!tr) return;
  const t = tr._tech;
  t.position = { lat: ev.lat, lon: ev.lon, ts: ev.ts, spd: ev.spd, hdg: ev.hdg, device_id: ev.device_id };
  render(t);
}

function onStatus(e) {
  const ev = JSON.parse(e.data);
  logEvent("status", ev);
  const tr = ev.technician_id && rows.get(ev.technician_id);
  if (!tr) return;
  const t = tr._tech;
  const active = ["en_route", "on_site", "paused", "resumed"].includes(ev.status);
  t.status = active ? ev.status : "idle";
  t.job_id = ev.job_id;
  render(t);
}

async function loadTechnicians() {
  const r = await fetch("/api/v1/technicians", { credentials: "same-origin" });
  if (r.status === 401) return false;
  for (const t of await r.json()) render(t);
  return true;
}

function follow() {
  if (source) source.close();
  source = new EventSource("/api/v1/feed");
  source.onopen = () => { $("#conn").textContent = "live"; $("#conn").className = "conn on"; };
  source.onerror = () => { $("#conn").textContent = "reconnecting"; $("#conn").className = "conn off"; };
  source.addEventListener("position", onPosition);
  source.addEventListener("status", onStatus);
  for (const type of ["geofence", "eta", "alert", "reoptimize", "notify"]) {
    source.addEventListener(type, (e) => logEvent(type, JSON.parse(e.data)));
  }
}

async function showBoard() {
  $("#login").hidden = true;
  $("#board").hidden = false;
  $("#logout").hidden = false;
  follow();
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
  if (await loadTechnicians()) showBoard();
});

$("#logout").addEventListener("click", async () => {
  await fetch("/session", { method: "DELETE" });
  location.reload();
});

(async () => {
  if (await loadTechnicians()) showBoard();
  else $("#login").hidden = false;
})();
