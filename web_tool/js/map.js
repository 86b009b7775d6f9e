// The Leaflet map: the dataset's imagery (the server's own /tiles), an optional OSM basemap,
// panes that keep predictions under corrections, and the coordinates readout.
import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { el } from "./ui.js";

export const OSM_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";

/** Text for the places where Leaflet takes HTML (attribution, layer control): dataset names are not. */
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

let map = null;
let imagery = null;
let layersControl = null;

/** Build the map in `container`; panes from bottom to top: tiles, predictions, uncertainty,
 *  corrections, suggestions, drawing. */
export function createMap(container) {
  map = L.map(container, {
    zoomControl: true,
    keyboard: false, // arrow keys set the overlay opacity (see keys.js)
    boxZoom: false, // shift+click predicts
    doubleClickZoom: false, // double clicks would predict twice
    attributionControl: true,
    maxZoom: 22,
  });
  map.attributionControl.setPrefix(false);
  const panes = { predictions: 410, uncertainty: 420, corrections: 450, suggestions: 460, drawing: 470 };
  for (const [name, z] of Object.entries(panes)) map.createPane(name).style.zIndex = z;

  const osm = L.tileLayer(OSM_URL, {
    maxZoom: 19,
    zIndex: 1,
    attribution: "© OpenStreetMap contributors",
    crossOrigin: true,
  });
  osm.on("tileerror", () => {}); // offline: the basemap stays blank, nothing else happens
  layersControl = L.control.layers({}, { "OpenStreetMap (online)": osm }, { collapsed: true, position: "topright" });
  layersControl.addTo(map);
  addCoordinates();
  return map;
}

export const getMap = () => map;

/** Show `dataset` (an entry of GET /datasets) from `server`'s tiles and zoom to it. */
export function showDataset(server, dataset) {
  if (imagery) {
    layersControl.removeLayer(imagery);
    map.removeLayer(imagery);
  }
  const bounds = datasetBounds(dataset);
  imagery = L.tileLayer(server.tileUrlTemplate(dataset.name), {
    zIndex: 2,
    maxZoom: 22,
    bounds: bounds.pad(0.05),
    attribution: `imagery: ${escapeHtml(dataset.name)}`,
    className: "imagery-tiles",
  });
  imagery.addTo(map);
  layersControl.addOverlay(imagery, `Imagery (${escapeHtml(dataset.name)})`);
  zoomToDataset(dataset);
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
      const node = el("div", { class: "coords", "aria-live": "off", title: "pointer position (lat, lng) and zoom" });
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
