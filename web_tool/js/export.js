// Large-area export: draw the area (rectangle or polygon, with its km² shown live and checked
// against the server's cap) or upload GeoJSON in any CRS (the server reprojects its outline), start
// a /predTile job on the selected server with the page's class colours, follow it with a progress
// bar, then offer its downloads (GeoTIFF + GDAL/QGIS class styles, polygons, statistics), a chart,
// and the finished map as a layer. An area over the cap gets the batch command that maps it offline
// with the same model (a checkpoint of the session) instead.
import { L } from "./leaflet.js";
import { state, on } from "./state.js";
import { el, $, notify, withBusy, errorText } from "./ui.js";
import { getMap } from "./map.js";
import { setMode } from "./draw.js";
import { geojsonArea, ringAreaKm2, polygonGeoJSON } from "./geo.js";
import { weights, classesBody } from "./classes.js";
import { withSession } from "./sessions.js";
import { areaChart } from "./chart.js";
import { addLayer } from "./layers.js";
import { group } from "./predlayer.js";

const POLL_MS = 1000;
let area = null; // {extent: [...]} (EPSG:3857) or {geometry, crs}
let areaLayer = null;
let job = null; // {server, id, timer}
let cap = null; // the server's km² cap, once it said
let drawing = null; // Geoman's working layer while the area is drawn
const exports = group();

const server = () => state.servers[state.selected];

function areaText(km2, exact = false) {
  const over = cap !== null && km2 > cap;
  const text = `${exact ? "" : "≈ "}${km2 < 10 ? km2.toFixed(3) : km2.toFixed(1)} km²${cap !== null ? ` (limit ${cap} km²)` : ""}`;
  $("#export-area-text").textContent = over ? `${text}: too large for the server` : text;
  $("#export-area-text").classList.toggle("msg-error", over);
}

function showArea(layer) {
  areaLayer?.remove();
  areaLayer = layer.addTo(getMap());
  $("#export-start").disabled = false;
}

const outline = (latlngs) => L.polygon(latlngs, { pane: "drawing", className: "export-area", weight: 2, dashArray: "6 4",
  fill: false, interactive: false });

/** The drawn rectangle or polygon becomes the area; the server gives its exact area and the cap. */
function setDrawnArea(rings) {
  area = { geometry: polygonGeoJSON(rings), crs: 4326 };
  showArea(outline(rings));
  setMode("predict");
  checkArea();
}

async function uploadArea(file) {
  try {
    area = geojsonArea(JSON.parse(await file.text()));
    const checked = await checkArea();
    if (!checked) return;
    const layer = L.geoJSON(checked.geometry, { pane: "drawing", style: { className: "export-area", weight: 2,
      dashArray: "6 4", fill: false }, interactive: false });
    showArea(layer);
    getMap().fitBounds(layer.getBounds(), { padding: [20, 20] });
  } catch (err) {
    area = null;
    notify(`cannot use ${file.name}: ${errorText(err)}`, "error");
  }
}

/** → the server's answer for the area ({geometry 4326, imagery_km2, max_km2, fits}), shown. */
async function checkArea() {
  const s = server();
  if (!area || !s.offers("POST /aoi")) return null;
  const checked = await s.aoi({ area, dataset: state.dataset?.name });
  cap = checked.max_km2;
  areaText(checked.imagery_km2, true);
  return checked;
}

function start(button) {
  if (!area) return notify("draw or upload an area first", "error");
  const s = server();
  return withBusy(button, async () => {
    stopPolling();
    $("#export-command").hidden = true;
    const checked = await checkArea();
    let id;
    try {
      id = await withSession(s, (session) => s.predTile({ area, session, dataset: state.dataset?.name, weights: weights(),
        classes: classesBody(), vector: $("#export-vector").checked }));
    } catch (err) {
      if (err.status === 413) return showCommand(err.detail, checked);
      throw err;
    }
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

/** Over the cap: the server's reason, its batch command (copyable) and the area as a file. */
function showCommand(message, checked) {
  const [reason, command] = message.split(/: (?=python )/);
  $("#export-command-reason").textContent = reason;
  $("#export-command-text").textContent = command || "";
  const geojson = { type: "Feature", properties: {}, geometry: checked?.geometry || area.geometry };
  const link = $("#export-command-file");
  URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([JSON.stringify(geojson)], { type: "application/geo+json" }));
  $("#export-command").hidden = false;
  notify(reason, "error");
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
  if (status.checkpoint) {
    $("#export-links").append(el("li", { class: "muted" }, `made with checkpoint ${status.checkpoint}`));
  }
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
  if (status.overlay && status.bounds) {
    const [w, s, e, n] = status.bounds;
    L.imageOverlay(status.overlay, [[s, w], [n, e]], { pane: "exports", className: "export-overlay",
      alt: "exported map" }).addTo(exports);
  }
  notify(`${current.server.name}: export finished; the map is on the Exports layer`, "ok");
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

// --- drawing the area --------------------------------------------------------------------------------

function drawArea(shape) {
  getMap().pm.disableDraw(); // (a correction tool's drawing ends first: its end must not end this one)
  setMode("area");
  getMap().pm.enableDraw(shape, { continueDrawing: false, pathOptions: { pane: "drawing", color: "#ff6d00" },
    templineStyle: { color: "#ff6d00" } });
  document.querySelectorAll("[data-area]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.area === shape)));
}

function watchDrawing(map) {
  map.on("pm:drawstart", ({ workingLayer }) => {
    drawing = state.mode === "area" ? workingLayer : null;
  });
  map.on("pm:drawend", () => {
    drawing = null;
    document.querySelectorAll("[data-area]").forEach((b) => b.setAttribute("aria-pressed", "false"));
    if (state.mode === "area") setMode("predict");
  });
  map.on("mousemove", (e) => {
    if (!drawing || state.mode !== "area") return;
    const points = [drawing.getLatLngs()].flat(3).filter((p) => p && Number.isFinite(p.lat));
    if (!(drawing instanceof L.Rectangle)) points.push(e.latlng);
    if (points.length >= 3) areaText(ringAreaKm2(points));
  });
  map.on("pm:create", ({ layer }) => {
    if (state.mode !== "area") return;
    layer.remove();
    setDrawnArea(layer.getLatLngs());
  });
}

export function initExport() {
  const map = getMap();
  addLayer("exports", "Exports", exports, { note: "finished exports (their maps)" });
  watchDrawing(map);
  const update = () => {
    $("#export-section").hidden = !server()?.offers("POST /predTile");
  };
  document.querySelectorAll("[data-area]").forEach((b) => b.addEventListener("click", () => {
    if (state.mode === "area") {
      map.pm.disableDraw();
      setMode("predict");
    } else drawArea(b.dataset.area);
  }));
  $("#export-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) uploadArea(file);
    e.target.value = "";
  });
  $("#export-start").addEventListener("click", (e) => start(e.currentTarget));
  $("#export-cancel").addEventListener("click", (e) => cancel(e.currentTarget));
  $("#export-copy").addEventListener("click", () => navigator.clipboard?.writeText($("#export-command-text").textContent)
    .then(() => notify("command copied", "ok"), () => notify("select the command and copy it", "info")));
  on("server-selected", update);
  on("mode", ({ mode, previous }) => {
    if (previous === "area" && mode !== "area") map.pm.disableDraw();
  });
  update();
}
