// Large-area export: pick an area (drag a rectangle or upload GeoJSON), start a /predTile job on
// the selected server, follow /jobs/<id> with a progress bar, then offer its downloads and a
// class-area chart.
import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { state, on } from "./state.js";
import { el, $, notify, withBusy, errorText } from "./ui.js";
import { getMap } from "./map.js";
import { onGesture, setMode } from "./draw.js";
import { boundsToExtent, fromMercator, geojsonArea } from "./geo.js";
import { weights } from "./classes.js";
import { withSession } from "./sessions.js";
import { areaChart } from "./chart.js";

const POLL_MS = 1000;
let area = null; // {extent: [...]} (EPSG:3857) or {geometry, crs}
let areaLayer = null;
let job = null; // {server, id, timer}

const server = () => state.servers[state.selected];

function showArea(layer) {
  areaLayer?.remove();
  areaLayer = layer.addTo(getMap());
  $("#export-start").disabled = false;
  $("#export-area-text").textContent = area.extent ? "rectangle drawn on the map" : "uploaded GeoJSON area";
}

function setRectArea(bounds) {
  area = { extent: boundsToExtent(bounds) };
  showArea(L.rectangle(bounds, { pane: "drawing", className: "export-area", weight: 2, dashArray: "6 4", fill: false, interactive: false }));
  setMode("predict");
}

function swap(coords, crs) {
  if (typeof coords[0] === "number") return crs === 3857 ? fromMercator(coords) : L.latLng(coords[1], coords[0]);
  return coords.map((c) => swap(c, crs));
}

async function uploadArea(file) {
  try {
    const parsed = geojsonArea(JSON.parse(await file.text()));
    area = parsed;
    const rings = parsed.geometry.type === "Polygon" ? [parsed.geometry.coordinates] : parsed.geometry.coordinates;
    const layer = L.polygon(swap(rings, parsed.crs), { pane: "drawing", className: "export-area", weight: 2, dashArray: "6 4", fill: false, interactive: false });
    showArea(layer);
    getMap().fitBounds(layer.getBounds(), { padding: [20, 20] });
  } catch (err) {
    notify(`cannot use ${file.name}: ${errorText(err)}`, "error");
  }
}

function start(button) {
  if (!area) return notify("draw or upload an area first", "error");
  const s = server();
  return withBusy(button, async () => {
    stopPolling();
    const id = await withSession(s, (session) =>
      s.predTile({ area, session, dataset: state.dataset?.name, weights: weights() }),
    );
    job = { server: s, id, timer: null };
    $("#export-job").hidden = false;
    $("#export-links").replaceChildren();
    $("#export-chart").replaceChildren();
    $("#export-cancel").hidden = !s.offers("DELETE /jobs/x");
    showProgress({ state: "queued", progress: 0 });
    notify(`${s.name}: export job ${id} started`, "info");
    poll();
  });
}

async function poll() {
  if (!job) return;
  const current = job;
  try {
    const status = await current.server.job(current.id);
    if (job !== current) return;
    showProgress(status);
    if (status.state === "done") return finish(current, status);
    if (status.state === "failed" || status.state === "cancelled") {
      job = null;
      $("#export-cancel").hidden = true;
      return notify(`${current.server.name}: export ${status.state}${status.error ? `: ${status.error}` : ""}`, "error");
    }
    current.timer = setTimeout(poll, POLL_MS);
  } catch (err) {
    if (job !== current) return;
    job = null;
    $("#export-cancel").hidden = true;
    notify(errorText(err), "error");
  }
}

function showProgress({ state: jobState, progress, message, error }) {
  $("#export-progress").value = progress;
  const detail = error || (message && message !== jobState ? message : "");
  $("#export-state").textContent = `${jobState} ${Math.round(progress * 100)}%${detail ? ` — ${detail}` : ""}`;
}

async function finish(current, status) {
  job = null;
  $("#export-cancel").hidden = true;
  $("#export-links").replaceChildren(
    ...status.links.map((l) => el("li", {}, el("a", { href: l.href, download: "", target: "_blank", rel: "noopener" }, l.label))),
  );
  let stats = status.stats;
  if (!stats && status.statsHref) {
    try {
      stats = await current.server.jobStats(status.statsHref);
    } catch (err) {
      notify(errorText(err), "error");
    }
  }
  if (stats?.length) {
    const colors = Object.fromEntries(state.classes.map((c) => [c.name, c.color]));
    const rows = stats.map((r) => ({ ...r, color: r.color || colors[r.name] || "#888888" }));
    $("#export-chart").replaceChildren(areaChart(rows));
  }
  notify(`${current.server.name}: export finished`, "ok");
}

function stopPolling() {
  if (job?.timer) clearTimeout(job.timer);
  job = null;
}

function cancel(button) {
  if (!job) return;
  const current = job;
  return withBusy(button, async () => {
    stopPolling();
    await current.server.cancelJob(current.id);
    $("#export-state").textContent = "cancelled";
    button.hidden = true;
    notify(`${current.server.name}: export job cancelled`, "info");
  });
}

export function initExport() {
  onGesture("area", {
    point: () => notify("drag a rectangle to choose the export area", "info"),
    rect: setRectArea,
  });
  const update = () => {
    const offered = server()?.offers("POST /predTile");
    $("#export-section").hidden = !offered;
  };
  $("#export-draw").addEventListener("click", () => setMode(state.mode === "area" ? "predict" : "area"));
  $("#export-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) uploadArea(file);
    e.target.value = "";
  });
  $("#export-start").addEventListener("click", (e) => start(e.currentTarget));
  $("#export-cancel").addEventListener("click", (e) => cancel(e.currentTarget));
  on("server-selected", update);
  on("mode", (mode) => $("#export-draw").setAttribute("aria-pressed", String(mode === "area")));
  update();
}
