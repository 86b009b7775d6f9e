// Predictions: a square around a click is sent to EVERY server (endpoints.js); each answer gets
// a result card, and the selected server's answer is drawn on the map on exactly its extent.
import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { state, emit, on } from "./state.js";
import { el, $, notify, errorText } from "./ui.js";
import { getMap } from "./map.js";
import { extentToBounds, squareAround, fromMercator } from "./geo.js";
import { weights, classesBody } from "./classes.js";
import { currentSession, withSession } from "./sessions.js";

const results = new Map(); // server → {extent, hard, soft, input, uncertainty, suggestions, modelName}
const requestIds = new Map(); // server → id of its newest request (older answers are dropped)
let overlay = null;
let uncertaintyOverlay = null;
let outline = null;
let suggestionLayer = null;

export const PATCH_SIZES = [64, 128, 256, 512, 1024];

/** Predict the square of `state.patchPixels` dataset pixels centred on `latlng`. */
export function predictAt(latlng) {
  if (!state.dataset) return Promise.resolve();
  return predictExtent(squareAround(latlng, state.patchPixels, state.dataset.resolution));
}

/** Send `extent` ([xmin, ymin, xmax, ymax], EPSG:3857) to every server; resolves when all answered. */
export function predictExtent(extent) {
  state.lastExtent = extent;
  drawOutline(extent);
  return Promise.allSettled(state.servers.map((server) => predictOn(server, extent)));
}

/** Run the last prediction again (after a retrain, an undo, a weight change...). */
export function rerunLast() {
  return state.lastExtent ? predictExtent(state.lastExtent) : Promise.resolve();
}

async function predictOn(server, extent) {
  const id = (requestIds.get(server) || 0) + 1;
  requestIds.set(server, id);
  setCardStatus(server, "predicting…", "busy");
  const body = { extent, weights: weights(), classes: classesBody(), dataset: state.dataset.name };
  try {
    const result = server.offers("POST /sessions")
      ? await withSession(server, (session) => server.predPatch({ ...body, session }))
      : await server.predPatch({ ...body, session: currentSession(server) });
    if (requestIds.get(server) !== id) return;
    results.set(server, { ...result, extent });
    setCardStatus(server, result.modelName ? `model: ${result.modelName}` : "done", "ok");
    updateCard(server);
    if (server === selectedServer()) refreshOverlay();
    emit("predicted", { server, result });
  } catch (err) {
    if (requestIds.get(server) !== id) return;
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
  results.clear();
  state.lastExtent = null;
  if (outline) outline.remove();
  outline = null;
  state.servers.forEach((s) => {
    updateCard(s);
    setCardStatus(s, "shift+click the map to predict", "");
  });
  refreshOverlay();
}

function drawOutline(extent) {
  const bounds = extentToBounds(extent);
  if (outline) outline.setBounds(bounds);
  else {
    outline = L.rectangle(bounds, {
      pane: "drawing",
      className: "patch-outline",
      weight: 1.5,
      dashArray: "4 4",
      fill: false,
      interactive: false,
    }).addTo(getMap());
  }
}

// --- the map overlay ---------------------------------------------------------------------------

/** Draw the selected server's result (hard or soft) as set in state.view. */
export function refreshOverlay() {
  const map = getMap();
  const result = results.get(selectedServer());
  const url = result && (state.view.soft ? result.soft : result.hard);
  if (!url) {
    if (overlay) overlay.remove();
    overlay = null;
  } else {
    const bounds = extentToBounds(result.extent);
    if (!overlay) {
      overlay = L.imageOverlay(url, bounds, { pane: "predictions", className: "prediction-overlay", alt: "prediction" });
    } else {
      overlay.setUrl(url);
      overlay.setBounds(bounds);
    }
    overlay.setOpacity(state.view.opacity);
    if (state.view.visible && !map.hasLayer(overlay)) overlay.addTo(map);
    if (!state.view.visible && map.hasLayer(overlay)) overlay.remove();
  }
  refreshUncertainty(result);
  refreshSuggestions(result);
  updateViewControls();
}

function refreshUncertainty(result) {
  const map = getMap();
  const url = result?.uncertainty;
  $("#uncertainty-row").hidden = ![...results.values()].some((r) => r.uncertainty);
  if (!url || !state.view.uncertainty || !state.view.visible) {
    if (uncertaintyOverlay) uncertaintyOverlay.remove();
    uncertaintyOverlay = null;
    return;
  }
  const bounds = extentToBounds(result.extent);
  if (!uncertaintyOverlay) {
    uncertaintyOverlay = L.imageOverlay(url, bounds, {
      pane: "uncertainty",
      className: "uncertainty-overlay",
      opacity: 0.6,
      alt: "uncertainty",
    });
  } else {
    uncertaintyOverlay.setUrl(url);
    uncertaintyOverlay.setBounds(bounds);
  }
  if (!map.hasLayer(uncertaintyOverlay)) uncertaintyOverlay.addTo(map);
}

function refreshSuggestions(result) {
  if (!suggestionLayer) suggestionLayer = L.layerGroup().addTo(getMap());
  suggestionLayer.clearLayers();
  const points = result?.suggestions || [];
  $("#suggestion-note").hidden = points.length === 0;
  $("#suggestion-note").textContent = `${points.length} suggested point(s) to label next (rings on the map)`;
  for (const p of points) {
    const latlng = p.xy ? fromMercator(p.xy) : L.latLng(p.lat, p.lng);
    L.circleMarker(latlng, {
      pane: "suggestions",
      className: "suggestion",
      radius: 9,
      weight: 3,
      fill: false,
      interactive: true,
    })
      .bindTooltip("label here next")
      .addTo(suggestionLayer);
  }
}

// --- view controls (also driven by keys.js) ----------------------------------------------------

export function setVisible(visible) {
  state.view.visible = visible;
  refreshOverlay();
}

export const toggleVisible = () => setVisible(!state.view.visible);

export function setOpacity(opacity) {
  state.view.opacity = Math.round(Math.max(0, Math.min(1, opacity)) * 100) / 100;
  refreshOverlay();
}

export function setSoft(soft) {
  state.view.soft = soft;
  refreshOverlay();
  state.servers.forEach(updateCard);
}

function updateViewControls() {
  $("#overlay-visible").checked = state.view.visible;
  $("#overlay-opacity").value = String(Math.round(state.view.opacity * 100));
  $("#opacity-value").textContent = `${Math.round(state.view.opacity * 100)}%`;
  $(state.view.soft ? "#output-soft" : "#output-hard").checked = true;
  $("#show-uncertainty").checked = state.view.uncertainty;
}

// --- result cards (one per server, side by side) -----------------------------------------------

export function renderResultCards() {
  const cards = state.servers.map((server, i) =>
    el(
      "button",
      {
        type: "button",
        class: "result-card",
        "aria-pressed": String(i === state.selected),
        title: `show ${server.name}'s prediction on the map`,
        dataset: { server: String(i) },
        onclick: () => selectServer(i),
      },
      el("img", { class: "card-image", alt: `prediction of ${server.name}`, hidden: true }),
      el("span", { class: "card-name" }, server.name),
      el("span", { class: "card-status", role: "status" }, "shift+click the map to predict"),
    ),
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
  const status = node.querySelector(".card-status");
  status.textContent = text;
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
  const size = $("#patch-size");
  size.replaceChildren(...PATCH_SIZES.map((px) => el("option", { value: String(px), selected: px === state.patchPixels }, `${px} px`)));
  const updateGround = () => {
    const res = state.dataset?.resolution;
    $("#patch-ground").textContent = res ? `≈ ${formatLength(state.patchPixels * res)} a side` : "";
  };
  size.addEventListener("change", () => {
    state.patchPixels = Number(size.value);
    updateGround();
  });
  on("dataset", updateGround);
  $("#overlay-visible").addEventListener("change", (e) => setVisible(e.target.checked));
  $("#overlay-opacity").addEventListener("input", (e) => setOpacity(Number(e.target.value) / 100));
  $("#output-hard").addEventListener("change", () => setSoft(false));
  $("#output-soft").addEventListener("change", () => setSoft(true));
  $("#show-uncertainty").addEventListener("change", (e) => {
    state.view.uncertainty = e.target.checked;
    refreshOverlay();
  });
  on("classes-changed", () => rerunLast());
  renderResultCards();
  updateViewControls();
}

function formatLength(metres) {
  return metres >= 1000 ? `${(metres / 1000).toFixed(metres >= 10000 ? 0 : 1)} km` : `${Math.round(metres)} m`;
}
