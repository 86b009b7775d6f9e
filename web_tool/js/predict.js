// Predicted squares: a square around a click is sent to EVERY server (endpoints.js); each answer
// gets a result card, and the selected server's answer is drawn on the map on exactly its extent.
// A new click (or Esc) cancels the one still waiting. A colour change recolours the hard output in
// the page (its pixels name their class); only the soft output and weights need the model again.
import { L } from "./leaflet.js";
import { state, emit, on, primary } from "./state.js";
import { el, $, notify, errorText } from "./ui.js";
import { getMap, busy } from "./map.js";
import { extentToBounds, squareAround, fromMercator } from "./geo.js";
import { weights, classesBody } from "./classes.js";
import { currentSession, withSession } from "./sessions.js";
import { prediction, uncertainty } from "./predlayer.js";
import { addLayer, setOn, isOn, setOpacity as setLayerOpacity, layerEntry } from "./layers.js";
import { recall, remember, workKey } from "./saved.js";

const results = new Map(); // server → {extent, hard, soft, uncertainty, suggestions, modelName, classMap}
const requests = new Map(); // server → {id, controller} of its newest request
let overlay = null;
let uncertaintyOverlay = null;
let outline = null;
const suggestionLayer = L.layerGroup();

export const PATCH_SIZES = [64, 128, 256, 512, 1024];

/** Predict the square of `state.patchPixels` dataset pixels centred on `latlng`. */
export function predictAt(latlng) {
  if (!state.dataset) return Promise.resolve();
  return predictExtent(squareAround(latlng, state.patchPixels, state.dataset.resolution));
}

/** Send `extent` ([xmin, ymin, xmax, ymax], EPSG:3857) to every server; resolves when all answered. */
export function predictExtent(extent) {
  state.lastExtent = extent;
  rememberLast(extent);
  drawOutline(extent);
  return Promise.allSettled(state.servers.map((server) => predictOn(server, extent))).finally(() => {
    if (![...requests.values()].some((r) => r.controller)) {
      busy("predict", null);
      outline?.getElement()?.classList.remove("busy");
    }
  });
}

/** Run the last prediction again (after a retrain, an undo, a weight change...). */
export function rerunLast() {
  return state.lastExtent ? predictExtent(state.lastExtent) : Promise.resolve();
}

/** Stop waiting for the predictions in flight (Esc); the server skips what it has not started. */
export function cancelPredictions() {
  let any = false;
  for (const [server, r] of requests) {
    if (r.controller) {
      r.controller.abort();
      r.controller = null;
      waiting(server, r, false);
      setCardStatus(server, "cancelled", "");
      any = true;
    }
  }
  busy("predict", null);
  outline?.getElement()?.classList.remove("busy");
  return any;
}

/** Waits shorter than this show no spinner: most squares come back sooner, and a spinning page
 *  makes chromium without a GPU draw frames on the very cores the server is predicting on
 *  (bench/browser.py). The card says it waits at once, to assistive technology (aria-busy). */
const QUIET_MS = 300;

/** Mark `server`'s card as waiting for request `r` (the spinners after QUIET_MS), or no longer. */
function waiting(server, r, on) {
  clearTimeout(r.spinners);
  if (!on) {
    card(server)?.removeAttribute("aria-busy");
    return;
  }
  card(server)?.setAttribute("aria-busy", "true");
  r.spinners = setTimeout(() => {
    setCardStatus(server, "predicting…", "busy");
    busy("predict", "predicting the square… (Esc cancels)");
    outline?.getElement()?.classList.add("busy");
  }, QUIET_MS);
}

async function predictOn(server, extent) {
  const previous = requests.get(server);
  previous?.controller?.abort(); // a second click cancels the first
  if (previous) waiting(server, previous, false);
  const controller = new AbortController();
  const id = (previous?.id || 0) + 1;
  const request = { id, controller };
  requests.set(server, request);
  waiting(server, request, true);
  const classes = classesBody();
  const body = { extent, weights: weights(), classes, dataset: state.dataset.name, signal: controller.signal };
  const current = () => requests.get(server).id === id;
  try {
    const result = server.offers("POST /sessions")
      ? await withSession(server, (session) => server.predPatch({ ...body, session }))
      : await server.predPatch({ ...body, session: currentSession(server) });
    if (!current()) return;
    request.controller = null;
    waiting(server, request, false);
    results.set(server, { ...result, extent, colors: classes.map((c) => c.color) });
    setCardStatus(server, result.modelName ? `model: ${result.modelName}` : "done", "ok");
    updateCard(server);
    if (server === selectedServer()) refreshOverlay();
    emit("predicted", { server, result });
    whenIdle(() => indexClasses(server)); // its pixel loop would hold up drawing the overlay
  } catch (err) {
    if (!current() || controller.signal.aborted) return;
    request.controller = null;
    waiting(server, request, false);
    results.delete(server);
    updateCard(server);
    setCardStatus(server, errorText(err), "error");
    if (server === selectedServer()) refreshOverlay();
    notify(errorText(err), "error");
  }
}

const selectedServer = () => state.servers[state.selected];

export function selectServer(index) {
  if (index < 0 || index >= state.servers.length) return;
  state.selected = index;
  document.querySelectorAll(".result-card").forEach((card, i) => card.setAttribute("aria-pressed", String(i === index)));
  refreshOverlay();
  emit("server-selected", selectedServer());
}

export function clearPredictions() {
  cancelPredictions();
  results.clear();
  state.lastExtent = null;
  outline?.remove();
  outline = null;
  state.servers.forEach((s) => {
    updateCard(s);
    setCardStatus(s, "click the map to predict a square", "");
  });
  refreshOverlay();
}

function drawOutline(extent) {
  const bounds = extentToBounds(extent);
  if (outline) outline.setBounds(bounds);
  else {
    outline = L.rectangle(bounds, { pane: "drawing", className: "patch-outline", weight: 1.5, dashArray: "4 4",
      fill: false, interactive: false }).addTo(getMap());
  }
}

function rememberLast(extent) {
  const s = primary();
  if (s) remember(["work", workKey(s, currentSession(s)), "last"], extent);
}

/** The square predicted before a reload, predicted again. */
export function restoreLast() {
  const s = primary();
  const extent = s && recall(["work", workKey(s, currentSession(s)), "last"]);
  if (Array.isArray(extent) && extent.length === 4 && extent.every(Number.isFinite)) return predictExtent(extent);
  return Promise.resolve();
}

// --- recolouring in the page ---------------------------------------------------------------------

async function decode(url) {
  const img = new Image();
  img.src = url;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  return { canvas, ctx, data: ctx.getImageData(0, 0, canvas.width, canvas.height) };
}

/** Run `work` when the page is idle (after the overlay it has just been given is drawn). */
const whenIdle = (work) => (window.requestIdleCallback ? requestIdleCallback(work, { timeout: 2000 }) : setTimeout(work, 100));

const rgbKey = (r, g, b) => (r << 16) | (g << 8) | b;
const hexRgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));

/** The class of each pixel of a hard output, read back from the colours it was drawn in. */
async function indexClasses(server) {
  const result = results.get(server);
  if (!result?.hard || new Set(result.colors).size !== result.colors.length) return;
  const { data } = await decode(result.hard);
  const lookup = new Map(result.colors.map((c, i) => [rgbKey(...hexRgb(c)), i]));
  const index = new Uint8Array(data.width * data.height).fill(255);
  const px = data.data;
  for (let i = 0; i < index.length; i++) {
    if (px[4 * i + 3]) index[i] = lookup.get(rgbKey(px[4 * i], px[4 * i + 1], px[4 * i + 2])) ?? 255;
  }
  result.classMap = { index, width: data.width, height: data.height };
}

/** Redraw every hard output in the classes' current colours; false when one needs the server. */
export async function recolour() {
  let done = true;
  for (const [server, result] of results) {
    if (!result.classMap) {
      done = false;
      continue;
    }
    const { index, width, height } = result.classMap;
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(width, height);
    const colors = state.classes.map((c) => hexRgb(c.color));
    for (let i = 0; i < index.length; i++) {
      const c = colors[index[i]];
      if (!c) continue;
      image.data.set([c[0], c[1], c[2], 255], 4 * i);
    }
    ctx.putImageData(image, 0, 0);
    result.hard = canvas.toDataURL("image/png");
    result.colors = state.classes.map((c) => c.color);
    updateCard(server);
  }
  refreshOverlay();
  return done && !state.view.soft;
}

// --- the map overlay ---------------------------------------------------------------------------

/** Draw the selected server's result (hard or soft) as set in state.view. */
export function refreshOverlay() {
  const result = results.get(selectedServer());
  const url = result && (state.view.soft ? result.soft : result.hard);
  if (!url) {
    if (overlay) prediction.removeLayer(overlay);
    overlay = null;
  } else {
    const bounds = extentToBounds(result.extent);
    if (!overlay) {
      overlay = L.imageOverlay(url, bounds, { pane: "prediction", className: "prediction-overlay", alt: "prediction" });
      prediction.addLayer(overlay);
    } else {
      overlay.setUrl(url);
      overlay.setBounds(bounds);
    }
  }
  refreshUncertainty(result);
  refreshSuggestions(result);
  updateViewControls();
}

function refreshUncertainty(result) {
  const url = result?.uncertainty;
  $("#uncertainty-row").hidden = false;
  if (!url) {
    if (uncertaintyOverlay) uncertainty.removeLayer(uncertaintyOverlay);
    uncertaintyOverlay = null;
    return;
  }
  const bounds = extentToBounds(result.extent);
  if (!uncertaintyOverlay) {
    uncertaintyOverlay = L.imageOverlay(url, bounds, { pane: "uncertainty", className: "uncertainty-overlay", alt: "uncertainty" });
    uncertainty.addLayer(uncertaintyOverlay);
  } else {
    uncertaintyOverlay.setUrl(url);
    uncertaintyOverlay.setBounds(bounds);
  }
}

function refreshSuggestions(result) {
  suggestionLayer.clearLayers();
  const points = result?.suggestions || [];
  $("#suggestion-note").hidden = points.length === 0;
  const how = result?.suggestionsBy === "random" ? ", spread at random until your first retrain" : "";
  $("#suggestion-note").textContent = `${points.length} suggested point(s) to label next${how} (rings on the map)`;
  for (const p of points) {
    const latlng = p.xy ? fromMercator(p.xy) : L.latLng(p.lat, p.lng);
    L.circleMarker(latlng, { pane: "suggestions", className: "suggestion", radius: 7, weight: 2, fill: false, interactive: true })
      .bindTooltip("suggested: label here next")
      .addTo(suggestionLayer);
  }
  emit("suggestions", points.length);
}

// --- view controls (also driven by keys.js) ----------------------------------------------------

export function setVisible(visible) {
  state.view.visible = visible;
  setOn("prediction", visible);
  updateViewControls();
}

export const toggleVisible = () => setVisible(!isOn("prediction"));

export function setOpacity(opacity) {
  setLayerOpacity("prediction", opacity);
  state.view.opacity = layerEntry("prediction").opacity;
  updateViewControls();
}

export function setSoft(soft) {
  state.view.soft = soft;
  remember("ui.soft", soft);
  refreshOverlay();
  state.servers.forEach(updateCard);
  emit("style-changed");
}

export function setUncertainty(show) {
  state.view.uncertainty = show;
  setOn("uncertainty", show);
  updateViewControls();
}

function updateViewControls() {
  const entry = layerEntry("prediction");
  state.view.visible = entry?.on ?? true;
  state.view.opacity = entry?.opacity ?? 0.7;
  state.view.uncertainty = isOn("uncertainty");
  $("#overlay-visible").checked = state.view.visible;
  $("#overlay-opacity").value = String(Math.round(state.view.opacity * 100));
  $("#opacity-value").textContent = `${Math.round(state.view.opacity * 100)}%`;
  $(state.view.soft ? "#output-soft" : "#output-hard").checked = true;
  $("#show-uncertainty").checked = state.view.uncertainty;
}

// --- result cards (one per server, side by side) -----------------------------------------------

export function renderResultCards() {
  const cards = state.servers.map((server, i) =>
    el("button", { type: "button", class: "result-card", "aria-pressed": String(i === state.selected),
      title: `show ${server.name}'s prediction on the map`, dataset: { server: String(i) }, onclick: () => selectServer(i) },
    el("img", { class: "card-image", alt: `prediction of ${server.name}`, hidden: true }),
    el("span", { class: "card-name" }, server.name),
    el("span", { class: "card-status", role: "status" }, "click the map to predict a square")),
  );
  $("#results").replaceChildren(...cards);
  $("#results").classList.toggle("several", state.servers.length > 1);
}

function card(server) {
  return document.querySelector(`.result-card[data-server="${state.servers.indexOf(server)}"]`);
}

function setCardStatus(server, text, kind) {
  const node = card(server);
  if (!node) return;
  node.querySelector(".card-status").textContent = text;
  node.classList.toggle("is-busy", kind === "busy");
  node.classList.toggle("is-error", kind === "error");
}

function updateCard(server) {
  const node = card(server);
  if (!node) return;
  const img = node.querySelector(".card-image");
  const result = results.get(server);
  const url = result && (state.view.soft ? result.soft : result.hard);
  img.hidden = !url;
  if (url) img.src = url;
  else img.removeAttribute("src");
}

/** Wire the prediction controls in the sidebar. */
export function initPredict() {
  addLayer("suggestions", "Suggested points", suggestionLayer, { note: "rings: where a label would help the model most" });
  state.patchPixels = recall("ui.patchPixels", state.patchPixels);
  state.view.soft = recall("ui.soft", false);
  const size = $("#patch-size");
  size.replaceChildren(...PATCH_SIZES.map((px) => el("option", { value: String(px), selected: px === state.patchPixels }, `${px} px`)));
  const updateGround = () => {
    const res = state.dataset?.resolution;
    $("#patch-ground").textContent = res ? `≈ ${formatLength(state.patchPixels * res)} a side` : "";
  };
  size.addEventListener("change", () => {
    state.patchPixels = Number(size.value);
    remember("ui.patchPixels", state.patchPixels);
    updateGround();
  });
  on("dataset", updateGround);
  on("layers", updateViewControls);
  $("#overlay-visible").addEventListener("change", (e) => setVisible(e.target.checked));
  $("#overlay-opacity").addEventListener("input", (e) => setOpacity(Number(e.target.value) / 100));
  $("#output-hard").addEventListener("change", () => setSoft(false));
  $("#output-soft").addEventListener("change", () => setSoft(true));
  $("#show-uncertainty").addEventListener("change", (e) => setUncertainty(e.target.checked));
  on("weights-changed", () => rerunLast());
  on("colors-changed", async () => {
    if (!(await recolour())) rerunLast();
  });
  renderResultCards();
  updateViewControls();
}

function formatLength(metres) {
  return metres >= 1000 ? `${(metres / 1000).toFixed(metres >= 10000 ? 0 : 1)} km` : `${Math.round(metres)} m`;
}
