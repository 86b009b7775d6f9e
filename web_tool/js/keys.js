// Keyboard shortcuts (the seed's a/s/d and arrows, plus the rest) and the help overlay. When the
// map has the focus, the arrows pan it and +/- zoom (Leaflet's keyboard handler), and Enter
// predicts the square at its centre (in Correct mode: labels the centre pixel).
import { state, anyOffers } from "./state.js";
import { $, el } from "./ui.js";
import { setVisible, toggleVisible, setOpacity, setSoft, setUncertainty, cancelPredictions, predictAt } from "./predict.js";
import { cancelPredictView } from "./predlayer.js";
import { retrain, undo } from "./correct.js";
import { setActiveClass } from "./classes.js";
import { setMode } from "./draw.js";
import { setTool } from "./tools.js";
import { getMap } from "./map.js";

const OPACITY_STEP = 0.1;

/** [keys, what they do, shown only when this is true] — the help overlay is built from it. */
export const KEYS = [
  ["Click / Shift + click", "predict the square around the point (shift+click: in any mode); double-click zooms"],
  ["Tab to the map, then arrows / + / − / Enter", "pan, zoom, predict at the centre (label it, in Correct mode)"],
  ["a / s / d", "hide / show / toggle the prediction"],
  ["↑ / → and ↓ / ←", "prediction opacity up / down by 10% (when the map does not have the focus)"],
  ["v", "switch between hard and soft output"],
  ["u", "show or hide the uncertainty layer"],
  ["1 – 9", "pick a class and switch to Correct mode", () => anyOffers("POST /recordCorrection")],
  ["c", "Correct mode with the last tool (point, rectangle, polygon, brush, eraser)", () => anyOffers("POST /recordCorrection")],
  ["b / e", "the brush / the eraser (width in metres in the Correct panel)", () => anyOffers("POST /recordCorrection")],
  ["Esc", "cancel what the map waits for; stop drawing (back to Predict mode); close this help"],
  ["r", "retrain with the corrections so far", () => anyOffers("POST /retrainModel")],
  ["Ctrl + Z", "undo the last correction, erase or retrain", () => anyOffers("POST /doUndo")],
  ["h or ?", "show or hide this help"],
];

const KEYLESS_INPUTS = ["checkbox", "color", "button", "submit", "reset", "file"];

/** Does the focused control use `key` itself (typing in a text box, arrows on a slider, the map)? */
function controlOwnsKey(target, key) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.id === "map") return mapOwns(target, key);
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  if (target.tagName === "BUTTON" && (key === "Enter" || key === " ")) return true;
  if (target.tagName !== "INPUT") return false;
  if (target.type === "range" || target.type === "radio") return key.startsWith("Arrow");
  return !KEYLESS_INPUTS.includes(target.type);
}

/** The map owns the arrows, +/- and Enter when it was reached with the keyboard (Tab); after a
 *  click on it, the arrows set the prediction's opacity as they always did. */
let mapFocusByPointer = false;
let lastInput = "pointer";
const mapOwns = (map, key) => !mapFocusByPointer && (key.startsWith("Arrow") || /^[-+=_]$/.test(key) || key === "Enter");

export function toggleHelp(show) {
  const help = $("#help");
  const open = show ?? help.hidden;
  if (open) {
    $("#help-keys").replaceChildren(
      ...KEYS.filter(([, , when]) => !when || when()).flatMap(([key, what]) => [el("dt", {}, el("kbd", {}, key)), el("dd", {}, what)]),
    );
  }
  help.hidden = !open;
  if (open) $("#help-close").focus();
}

function escape() {
  if (!$("#help").hidden) return toggleHelp(false);
  const cancelled = cancelPredictions();
  cancelPredictView();
  if (!cancelled || state.mode !== "predict") setMode("predict");
}

function onKey(event) {
  const { key } = event;
  if (key === "Escape") return escape();
  if (controlOwnsKey(event.target, key)) return;
  if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const correcting = () => anyOffers("POST /recordCorrection");
  const actions = {
    a: () => setVisible(false),
    s: () => setVisible(true),
    d: () => toggleVisible(),
    ArrowUp: () => setOpacity(state.view.opacity + OPACITY_STEP),
    ArrowRight: () => setOpacity(state.view.opacity + OPACITY_STEP),
    ArrowDown: () => setOpacity(state.view.opacity - OPACITY_STEP),
    ArrowLeft: () => setOpacity(state.view.opacity - OPACITY_STEP),
    v: () => setSoft(!state.view.soft),
    u: () => setUncertainty(!state.view.uncertainty),
    c: () => correcting() && setMode(state.mode === "correct" ? "predict" : "correct"),
    b: () => correcting() && setTool("brush"),
    e: () => correcting() && setTool("eraser"),
    r: () => retrain(),
    h: () => toggleHelp(),
    "?": () => toggleHelp(),
  };
  let action = actions[key] || actions[key.toLowerCase?.()];
  if (/^[1-9]$/.test(key)) action = () => setActiveClass(Number(key) - 1);
  if (!action) return;
  event.preventDefault();
  action();
}

/** Enter on the focused map: predict (or label) at its centre. */
function onMapKey(event) {
  if (event.key !== "Enter" || event.target.id !== "map" || !mapOwns(event.target, "Enter")) return;
  event.preventDefault();
  const centre = getMap().getCenter();
  if (state.mode === "correct" && state.tool === "point") getMap().fire("pm:create", { shape: "CircleMarker", layer: L_point(centre) });
  else predictAt(centre);
}

const L_point = (latlng) => ({ getLatLng: () => latlng, remove: () => {} });

export function initKeys() {
  document.addEventListener("keydown", onKey);
  document.addEventListener("keydown", (e) => {  // before Leaflet's own handler on the map
    if (e.target.id === "map" && e.key.startsWith("Arrow") && !mapOwns(e.target, e.key)) {
      e.stopPropagation();
      onKey(e);
    }
  }, true);
  const map = $("#map");
  map.addEventListener("keydown", onMapKey);
  // The last input (a key or a pointer) tells how the map got the focus; a timer would not (a
  // Tab soon after a click is still the keyboard).
  document.addEventListener("keydown", () => { lastInput = "keyboard"; }, true);
  document.addEventListener("pointerdown", () => { lastInput = "pointer"; }, true);
  map.addEventListener("pointerdown", () => { mapFocusByPointer = true; }, true);
  map.addEventListener("focus", () => { mapFocusByPointer = lastInput === "pointer"; });
  $("#help-button").addEventListener("click", () => toggleHelp());
  $("#help-close").addEventListener("click", () => toggleHelp(false));
  $("#help").addEventListener("click", (e) => {
    if (e.target.id === "help") toggleHelp(false);
  });
}
