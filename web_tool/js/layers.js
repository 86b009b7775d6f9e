// Every layer of the map in one list: each in its own pane (so it stacks where it should and can be
// swiped), shown or hidden, with its opacity, in the Layers panel; both remembered across reloads.
// The swipe compare shows one layer only left of a divider the user drags (or sets with a slider).
import { L } from "./leaflet.js";
import { el, $ } from "./ui.js";
import { recall, remember } from "./saved.js";
import { emit } from "./state.js";

const registry = new Map(); // id → {id, label, layer, pane, opacity, on, note}
let map = null;
let swipe = { id: "", at: 0.5 };

/** Panes from bottom to top; a layer's pane is named after its id. */
const Z = { imagery: 250, prediction: 400, squares: 410, uncertainty: 420, exports: 430, corrections: 450,
  suggestions: 460, drawing: 470 };

export function initLayers(theMap) {
  map = theMap;
  for (const [name, z] of Object.entries(Z)) map.createPane(name).style.zIndex = z;
  map.on("move zoom resize", applySwipe);
  $("#swipe-layer").addEventListener("change", (e) => setSwipe(e.target.value, swipe.at));
  $("#swipe-at").addEventListener("input", (e) => setSwipe(swipe.id, Number(e.target.value) / 100));
}

/** Register `layer` (in pane `id`) under `label`; its visibility and opacity come back from storage. */
export function addLayer(id, label, layer, { on = true, opacity = 1, note = "", z = 440 } = {}) {
  if (!map.getPane(id)) map.createPane(id).style.zIndex = z;
  const entry = { id, label, layer, pane: id, note, on: recall(["ui", "layers", id, "on"], on),
    opacity: recall(["ui", "layers", id, "opacity"], opacity) };
  registry.set(id, entry);
  apply(entry);
  renderLayerList();
  return entry;
}

export const layerEntry = (id) => registry.get(id);

export function setLabel(id, label) {
  const entry = registry.get(id);
  if (!entry || entry.label === label) return;
  entry.label = label;
  const row = document.querySelector(`.layer-row[data-layer="${id}"]`);
  if (row) {
    row.querySelector("label").textContent = label;
    row.querySelector("input[type=range]").setAttribute("aria-label", `opacity of ${label}`);
  }
}
export const isOn = (id) => Boolean(registry.get(id)?.on);

export function setOn(id, on) {
  const entry = registry.get(id);
  if (!entry) return;
  entry.on = on;
  remember(["ui", "layers", id, "on"], on);
  apply(entry);
  syncRow(entry);
  emit("layers", entry);
}

export function setOpacity(id, opacity) {
  const entry = registry.get(id);
  if (!entry) return;
  entry.opacity = Math.round(Math.max(0, Math.min(1, opacity)) * 100) / 100;
  remember(["ui", "layers", id, "opacity"], entry.opacity);
  apply(entry);
  syncRow(entry);
  emit("layers", entry);
}

/** Replace the Leaflet layer behind `id` (e.g. the imagery of another dataset). */
export function replaceLayer(id, layer) {
  const entry = registry.get(id);
  if (entry.layer && map.hasLayer(entry.layer)) map.removeLayer(entry.layer);
  entry.layer = layer;
  apply(entry);
}

function apply(entry) {
  const { layer, on, opacity } = entry;
  if (!layer) return;
  if (on && !map.hasLayer(layer)) layer.addTo(map);
  if (!on && map.hasLayer(layer)) map.removeLayer(layer);
  if (typeof layer.setOpacity === "function") layer.setOpacity(opacity);
  else map.getPane(entry.pane).style.opacity = String(opacity);
}

function renderLayerList() {
  const list = $("#layer-list");
  if (!list) return;
  list.replaceChildren(...[...registry.values()].map((entry) => {
    const id = `layer-${entry.id}`;
    return el("li", { class: "layer-row", dataset: { layer: entry.id } },
      el("input", { type: "checkbox", id, checked: entry.on, onchange: (e) => setOn(entry.id, e.target.checked) }),
      el("label", { for: id, title: entry.note || entry.label }, entry.label),
      el("input", { type: "range", min: "0", max: "100", step: "5", value: String(Math.round(entry.opacity * 100)),
        "aria-label": `opacity of ${entry.label}`, oninput: (e) => setOpacity(entry.id, Number(e.target.value) / 100) }),
    );
  }));
  const select = $("#swipe-layer");
  const options = [el("option", { value: "" }, "off"),
    ...[...registry.values()].map((e) => el("option", { value: e.id, selected: e.id === swipe.id }, e.label))];
  select.replaceChildren(...options);
}

function syncRow(entry) {
  const row = document.querySelector(`.layer-row[data-layer="${entry.id}"]`);
  if (!row) return;
  row.querySelector("input[type=checkbox]").checked = entry.on;
  row.querySelector("input[type=range]").value = String(Math.round(entry.opacity * 100));
}

// --- swipe compare -------------------------------------------------------------------------------

export function setSwipe(id, at) {
  if (swipe.id && swipe.id !== id) map.getPane(swipe.id).style.clip = "";
  swipe = { id: registry.has(id) ? id : "", at: Math.max(0, Math.min(1, at)) };
  $("#swipe-layer").value = swipe.id;
  $("#swipe-at").value = String(Math.round(swipe.at * 100));
  $("#swipe-at").disabled = !swipe.id;
  map.getContainer().classList.toggle("swiping", Boolean(swipe.id));
  const divider = $("#swipe-divider");
  divider.hidden = !swipe.id;
  applySwipe();
}

function applySwipe() {
  if (!swipe.id || !map) return;
  const size = map.getSize();
  const nw = map.containerPointToLayerPoint([0, 0]);
  const se = map.containerPointToLayerPoint(size);
  const x = nw.x + size.x * swipe.at;
  map.getPane(swipe.id).style.clip = `rect(${nw.y}px, ${x}px, ${se.y}px, ${nw.x}px)`;
  $("#swipe-divider").style.left = `${size.x * swipe.at}px`;
}

/** Dragging the divider on the map moves the swipe (mouse, pen or touch). */
export function initSwipeDivider() {
  const divider = $("#swipe-divider");
  divider.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    e.stopPropagation();
    divider.setPointerCapture(e.pointerId);
    const move = (ev) => {
      const box = map.getContainer().getBoundingClientRect();
      setSwipe(swipe.id, (ev.clientX - box.left) / box.width);
    };
    divider.addEventListener("pointermove", move);
    divider.addEventListener("pointerup", () => divider.removeEventListener("pointermove", move), { once: true });
  });
  divider.addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      e.stopPropagation();
      setSwipe(swipe.id, swipe.at + (e.key === "ArrowLeft" ? -0.05 : 0.05));
    }
  });
  L.DomEvent.disableClickPropagation(divider);
}
