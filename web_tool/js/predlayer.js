// The continuous prediction layer: the selected server's /predTiles of this session's current
// model, in the page's colours, weights and hard/soft choice. A retrain, undo, reset or new class
// gives the model a new version and the whole view repaints; a colour or weight change re-renders
// tiles from the server's cache without running the model. "Predict the view" fills the visible map,
// also when zoomed out (block by block, at most MAX_VIEW_BLOCKS of model work).
import { L } from "./leaflet.js";
import { state, on, emit } from "./state.js";
import { $, notify, errorText } from "./ui.js";
import { getMap, busy, datasetBounds } from "./map.js";
import { addLayer, setOn, isOn, replaceLayer } from "./layers.js";
import { nativeZoom } from "./geo.js";
import { currentSession, withSession } from "./sessions.js";

/** zoom levels between the native zoom and the zoom of one predicted block (4 x 4 tiles) */
const BLOCK_LEVELS = 2;
/** coarser zooms composed from predicted blocks, as the server does */
const COMPOSE_LEVELS = 3;
/** most blocks "Predict the view" asks for when zoomed out (each ~1 s of server time) */
export const MAX_VIEW_BLOCKS = 48;
/** prediction tiles loading at once: a browser has 6 connections to a server, and a tile may wait
 *  for the model; the rest stay free for clicks, corrections and retrains */
const MAX_TILE_REQUESTS = 2;

const queue = [];
let loading = 0;

function loadNext() {
  while (loading < MAX_TILE_REQUESTS && queue.length) {
    const { tile, url } = queue.shift();
    if (!tile.isConnected && !tile.dataset.queued) continue; // dropped by the map meanwhile
    delete tile.dataset.queued;
    loading++;
    const finished = () => {
      loading--;
      tile.removeEventListener("load", finished);
      tile.removeEventListener("error", finished);
      loadNext();
    };
    tile.addEventListener("load", finished);
    tile.addEventListener("error", finished);
    tile.src = url;
  }
}

/** A tile layer whose images load a few at a time (see MAX_TILE_REQUESTS). */
const QueuedTileLayer = L.TileLayer.extend({
  createTile(coords, done) {
    const tile = document.createElement("img");
    L.DomEvent.on(tile, "load", L.Util.bind(this._tileOnLoad, this, done, tile));
    L.DomEvent.on(tile, "error", L.Util.bind(this._tileOnError, this, done, tile));
    tile.alt = "";
    tile.setAttribute("role", "presentation");
    tile.dataset.queued = "1";
    queue.push({ tile, url: this.getTileUrl(coords) });
    setTimeout(loadNext, 0);
    return tile;
  },
  _removeTile(key) {
    const tile = this._tiles[key];
    if (tile) {
      const i = queue.findIndex((q) => q.tile === tile.el);
      if (i >= 0) queue.splice(i, 1);
    }
    L.TileLayer.prototype._removeTile.call(this, key);
  },
});

/** A layer group whose opacity applies to every layer in it (tiles and image overlays). */
const Group = L.LayerGroup.extend({
  setOpacity(opacity) {
    this._opacity = opacity;
    this.eachLayer((layer) => layer.setOpacity?.(opacity));
    return this;
  },
  addLayer(layer) {
    L.LayerGroup.prototype.addLayer.call(this, layer);
    if (this._opacity !== undefined) layer.setOpacity?.(this._opacity);
    return this;
  },
});
export const group = () => new Group();

export const prediction = group(); // tiles + the predicted squares
export const uncertainty = group(); // uncertainty tiles + the squares' uncertainty
let tiles = null;
let uncertaintyTiles = null;
let version = null; // the model version the tile URLs name
const pending = new Set(); // tiles asked for and not there yet
let filling = null; // AbortController of a running "Predict the view"

export function initPredictionLayer() {
  addLayer("prediction", "Prediction", prediction, { opacity: 0.7, note: "the model's prediction: whole view and squares" });
  addLayer("uncertainty", "Uncertainty", uncertainty, { on: false, opacity: 0.6, note: "magenta where the model is unsure" });
  state.view.opacity = prediction._opacity ?? 0.7;
  on("dataset", rebuild);
  on("server-selected", rebuild);
  on("classes-changed", refresh);
  on("style-changed", refresh);
  on("model-changed", () => updateVersion());
  $("#predict-view").addEventListener("click", predictView);
}

const server = () => state.servers[state.selected];

function tileUrl(style) {
  const s = server();
  const query = new URLSearchParams({ style, colors: state.classes.map((c) => c.color.slice(1)).join(","),
    weights: state.classes.map((c) => c.weight).join(","), v: String(version ?? "") });
  const session = currentSession(s);
  if (session) query.set("session", session);
  const url = `${s.url}predTiles/${encodeURIComponent(state.dataset.name)}/{z}/{x}/{y}.png?${query}`;
  return s.withToken(url);
}

/** A tile layer of the selected server's predictions, or null when it has no /predTiles. */
function makeTiles(style, className) {
  const native = nativeZoom(state.dataset);
  const layer = new QueuedTileLayer(tileUrl(style), {
    pane: style === "uncertainty" ? "uncertainty" : "prediction", className, maxNativeZoom: native,
    minZoom: native - BLOCK_LEVELS - COMPOSE_LEVELS, maxZoom: native + 2, bounds: datasetBounds(state.dataset),
    keepBuffer: 1, updateWhenZooming: false,
  });
  if (style !== "uncertainty") {
    const key = (e) => `${e.coords.z}/${e.coords.x}/${e.coords.y}`;
    layer.on("tileloadstart", (e) => tileBusy(key(e), true));
    layer.on("tileload tileerror tileabort tileunload", (e) => tileBusy(key(e), false));
  }
  return layer;
}

function tileBusy(key, loading) {
  if (loading) pending.add(key);
  else pending.delete(key);
  const n = pending.size;
  busy("tiles", n ? `predicting the view… ${n} tile${n > 1 ? "s" : ""} to go` : null);
}

async function rebuild() {
  if (tiles) prediction.removeLayer(tiles);
  if (uncertaintyTiles) uncertainty.removeLayer(uncertaintyTiles);
  tiles = uncertaintyTiles = null;
  pending.clear();
  busy("tiles", null);
  if (!state.dataset || !server()?.offers("GET /predTiles/d/1/1/1.png")) return;
  await updateVersion(false);
  tiles = makeTiles(state.view.soft ? "soft" : "hard", "prediction-tiles");
  uncertaintyTiles = makeTiles("uncertainty", "uncertainty-tiles");
  prediction.addLayer(tiles);
  uncertainty.addLayer(uncertaintyTiles);
}

/** New URLs (colours, weights, hard/soft, model version): the tiles repaint. */
export function refresh() {
  if (tiles) tiles.setUrl(tileUrl(state.view.soft ? "soft" : "hard"));
  if (uncertaintyTiles) uncertaintyTiles.setUrl(tileUrl("uncertainty"));
}

/** Ask the server for the session's model version; repaint when it changed. */
export async function updateVersion(repaint = true) {
  const s = server();
  if (!s?.offers("GET /sessions/x")) return;
  try {
    const info = await withSession(s, (session) => s.sessionInfo(session));
    emit("session-info", { server: s, info });
    if (info.version !== version) {
      version = info.version;
      if (repaint) refresh();
    }
  } catch (err) {
    notify(errorText(err), "error");
  }
}

// --- predict the view ------------------------------------------------------------------------------

/** The block tiles (zoom native-2) under the view, at most MAX_VIEW_BLOCKS. */
export function viewBlocks() {
  const map = getMap();
  const zb = nativeZoom(state.dataset) - BLOCK_LEVELS;
  const view = map.getBounds();
  const data = datasetBounds(state.dataset);
  if (!view.intersects(data)) return [];
  const box = L.latLngBounds([Math.max(view.getSouth(), data.getSouth()), Math.max(view.getWest(), data.getWest())],
    [Math.min(view.getNorth(), data.getNorth()), Math.min(view.getEast(), data.getEast())]);
  const nw = map.project(box.getNorthWest(), zb).divideBy(256).floor();
  const se = map.project(box.getSouthEast(), zb).divideBy(256).floor();
  const blocks = [];
  for (let y = nw.y; y <= se.y; y++) for (let x = nw.x; x <= se.x; x++) blocks.push({ z: zb, x, y });
  return blocks;
}

export async function predictView() {
  if (!state.dataset) return;
  if (!tiles) return notify(`${server().name} does not serve prediction tiles: click the map to predict squares`, "error");
  if (!isOn("prediction")) setOn("prediction", true);
  const map = getMap();
  if (map.getZoom() >= nativeZoom(state.dataset) - BLOCK_LEVELS) return tiles.redraw(); // tiles fill the view
  const blocks = viewBlocks();
  if (blocks.length > MAX_VIEW_BLOCKS) {
    return notify(`the view holds ${blocks.length} blocks to predict (at most ${MAX_VIEW_BLOCKS} at once): zoom in a little, or export the area`, "error");
  }
  filling?.abort();
  const controller = (filling = new AbortController());
  const url = (b) => tileUrl(state.view.soft ? "soft" : "hard").replace("{z}", b.z).replace("{x}", b.x).replace("{y}", b.y);
  let done = 0;
  const next = async () => {
    while (blocks.length && !controller.signal.aborted) {
      const block = blocks.shift();
      await fetch(url(block), { signal: controller.signal }).catch(() => {});
      busy("view", `predicting the view… block ${++done} of ${done + blocks.length}`);
    }
  };
  busy("view", "predicting the view…");
  await Promise.all([next(), next()]);
  busy("view", null);
  if (!controller.signal.aborted) tiles.redraw();
  filling = null;
}

export function cancelPredictView() {
  filling?.abort();
  busy("view", null);
}

/** While the model's classes must not show (an accuracy walk hides them), no tiles are asked for:
 *  the server predicts nothing nobody sees. The predicted squares stay (hidden). */
export function pauseTiles(paused) {
  for (const [parent, layer] of [[prediction, tiles], [uncertainty, uncertaintyTiles]]) {
    if (layer && paused) parent.removeLayer(layer);
    else if (layer && !parent.hasLayer(layer)) parent.addLayer(layer);
  }
}

export const tilesLayer = () => tiles;
export { replaceLayer };
