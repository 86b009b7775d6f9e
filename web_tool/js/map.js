// The Leaflet map: the dataset's imagery (the server's own /tiles), an optional OSM basemap, a
// scale bar, the pointer's coordinates, "go to" (coordinates or the dataset), and a status line
// that says what the map is waiting for. Zoom stops 4x beyond the imagery's own resolution.
import { L } from "./leaflet.js";
import { el, $ } from "./ui.js";
import { initLayers, addLayer, replaceLayer, initSwipeDivider } from "./layers.js";
import { nativeZoom } from "./geo.js";
import { recall, remember } from "./saved.js";

export const OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
/** zoom levels beyond the imagery's native zoom (2 = 4x) */
export const OVERZOOM = 2;

/** Text for the places where Leaflet takes HTML (the attribution): dataset names are not. */
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

let map = null;
let goTo = null;

export function createMap(container) {
  map = L.map(container, {
    zoomControl: true,
    keyboard: true, // the focused map pans with the arrows and zooms with +/- (keys.js leaves them)
    boxZoom: false, // shift+click predicts
    doubleClickZoom: true, // a single click waits for a possible second one (draw.js)
    attributionControl: true,
    maxZoom: 19,
  });
  map.attributionControl.setPrefix(false);
  container.setAttribute("aria-label", "map: arrows pan, + and - zoom, Enter predicts (or labels) the centre");
  initLayers(map);
  initSwipeDivider();
  const osm = L.tileLayer(OSM_URL, { maxZoom: 19, pane: "imagery", attribution: "© OpenStreetMap contributors",
    crossOrigin: true, className: "osm-tiles" });
  osm.on("tileerror", () => {}); // offline: the basemap stays blank, nothing else happens
  addLayer("osm", "OpenStreetMap (online)", osm, { on: false });
  L.control.scale({ metric: true, imperial: false, position: "bottomleft" }).addTo(map);
  addCoordinates();
  addStatus();
  map.on("moveend", () => {
    const c = map.getCenter();
    if (currentDataset) remember(["datasets", currentDataset, "view"], { lat: c.lat, lng: c.lng, zoom: map.getZoom() });
  });
  return map;
}

export const getMap = () => map;
let currentDataset = null;

/** Show `dataset` (an entry of GET /datasets) from `server`'s tiles; back to its remembered view
 *  or, the first time, to its centre at the imagery's native zoom (where a prediction is clear). */
export function showDataset(server, dataset) {
  currentDataset = null; // no view is remembered while switching
  const native = nativeZoom(dataset);
  map.setMaxZoom(native + OVERZOOM);
  const imagery = L.tileLayer(server.tileUrlTemplate(dataset.name), {
    pane: "imagery", maxZoom: native + OVERZOOM, bounds: datasetBounds(dataset).pad(0.05),
    attribution: `imagery: ${escapeHtml(dataset.name)}`, className: "imagery-tiles",
  });
  if (!$(".layer-row[data-layer=imagery]")) addLayer("imagery", "Imagery", imagery);
  else replaceLayer("imagery", imagery);
  const view = recall(["datasets", dataset.name, "view"]);
  if (view && Number.isFinite(view.lat + view.lng + view.zoom)) map.setView([view.lat, view.lng], view.zoom, { animate: false });
  else firstView(dataset);
  currentDataset = dataset.name;
}

/** The dataset's centre (or, when its files lie apart, the imagery nearest it) at its native zoom:
 *  predictions fill the view there, soon. */
export function firstView(dataset) {
  const start = Array.isArray(dataset.start_4326) ? L.latLng(dataset.start_4326[1], dataset.start_4326[0]) : null;
  map.setView(start ?? datasetBounds(dataset).getCenter(), nativeZoom(dataset), { animate: false });
}

export function datasetBounds(dataset) {
  const [w, s, e, n] = dataset.bounds_4326;
  return L.latLngBounds([s, w], [n, e]);
}

export function zoomToDataset(dataset) {
  map.fitBounds(datasetBounds(dataset), { padding: [8, 8] });
}

function addCoordinates() {
  const Readout = L.Control.extend({
    options: { position: "bottomleft" },
    onAdd() {
      const node = el("div", { class: "coords", title: "pointer position (lat, lng) and zoom" });
      node.textContent = "move the pointer over the map";
      map.on("mousemove", (e) => {
        node.textContent = `${e.latlng.lat.toFixed(5)}, ${e.latlng.lng.toFixed(5)} · z${map.getZoom()}`;
      });
      L.DomEvent.disableClickPropagation(node);
      return node;
    },
  });
  new Readout().addTo(map);
}

// --- status: what the map is waiting for ---------------------------------------------------------

const waits = new Map(); // key → text
let statusNode = null;

function addStatus() {
  const Status = L.Control.extend({
    options: { position: "topright" },
    onAdd() {
      statusNode = el("div", { class: "map-status", role: "status", "aria-live": "polite", hidden: true });
      L.DomEvent.disableClickPropagation(statusNode);
      return statusNode;
    },
  });
  new Status().addTo(map);
}

/** Show `text` with a spinner on the map until `busy(key, null)`. */
export function busy(key, text) {
  if (text) waits.set(key, text);
  else waits.delete(key);
  if (!statusNode) return;
  statusNode.hidden = waits.size === 0;
  statusNode.textContent = [...waits.values()].join(" · ");
  map.getContainer().classList.toggle("is-waiting", waits.size > 0);
}

// --- go to ---------------------------------------------------------------------------------------

/** "lat, lng" (degrees) or "x, y" (EPSG:3857 metres, when a number is beyond ±180) → LatLng or null. */
export function parseCoordinates(text) {
  const numbers = String(text).trim().split(/[\s,;]+/).filter(Boolean).map(Number);
  if (numbers.length !== 2 || !numbers.every(Number.isFinite)) return null;
  const [a, b] = numbers;
  if (Math.abs(a) <= 90 && Math.abs(b) <= 180) return L.latLng(a, b);
  return L.Projection.SphericalMercator.unproject(L.point(a, b));
}

export function initGoTo(onDataset) {
  const form = $("#goto-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const input = form.elements["goto-text"];
    const latlng = parseCoordinates(input.value);
    input.setCustomValidity(latlng ? "" : "type lat, lng (e.g. 38.9, -77.0) or x, y in web-mercator metres");
    input.reportValidity();
    if (latlng) map.setView(latlng, Math.max(map.getZoom(), map.getMaxZoom() - OVERZOOM));
  });
  $("#goto-dataset").addEventListener("click", onDataset);
  goTo = form;
  return goTo;
}
