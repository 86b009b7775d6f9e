// Keyboard shortcuts (the seed's a/s/d and arrows, plus the rest) and the help overlay.
import { state, anyOffers } from "./state.js";
import { $, el } from "./ui.js";
import { setVisible, toggleVisible, setOpacity, setSoft, refreshOverlay } from "./predict.js";
import { retrain, undo } from "./correct.js";
import { setActiveClass } from "./classes.js";
import { setMode } from "./draw.js";

const OPACITY_STEP = 0.1;

/** [keys, what they do, shown only when this is true] — the help overlay is built from it. */
export const KEYS = [
  ["Shift + click", "predict the square around the point (plain click too, in Predict mode)"],
  ["a / s / d", "hide / show / toggle the prediction overlay"],
  ["↑ / → and ↓ / ←", "overlay opacity up / down by 10%"],
  ["v", "switch between hard and soft output"],
  ["u", "show or hide the uncertainty overlay", () => !$("#uncertainty-row").hidden],
  ["1 – 9", "pick a class and switch to Correct mode", () => anyOffers("POST /recordCorrection")],
  ["c", "Correct mode: click labels a pixel, drag labels a rectangle", () => anyOffers("POST /recordCorrection")],
  ["Esc", "back to Predict mode (drag pans the map); close this help"],
  ["r", "retrain with the corrections so far", () => anyOffers("POST /retrainModel")],
  ["Ctrl + Z", "undo the last correction or retrain", () => anyOffers("POST /doUndo")],
  ["h or ?", "show or hide this help"],
];

const KEYLESS_INPUTS = ["checkbox", "color", "button", "submit", "reset", "file"];

/** Does the focused control use `key` itself (typing in a text box, arrows on a slider)? */
function controlOwnsKey(target, key) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  if (target.tagName !== "INPUT") return false;
  if (target.type === "range" || target.type === "radio") return key.startsWith("Arrow");
  return !KEYLESS_INPUTS.includes(target.type);
}

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

function onKey(event) {
  const { key } = event;
  if (key === "Escape") {
    if (!$("#help").hidden) toggleHelp(false);
    else setMode("predict");
    return;
  }
  if (controlOwnsKey(event.target, key)) return;
  if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const actions = {
    a: () => setVisible(false),
    s: () => setVisible(true),
    d: () => toggleVisible(),
    ArrowUp: () => setOpacity(state.view.opacity + OPACITY_STEP),
    ArrowRight: () => setOpacity(state.view.opacity + OPACITY_STEP),
    ArrowDown: () => setOpacity(state.view.opacity - OPACITY_STEP),
    ArrowLeft: () => setOpacity(state.view.opacity - OPACITY_STEP),
    v: () => setSoft(!state.view.soft),
    u: () => {
      state.view.uncertainty = !state.view.uncertainty;
      refreshOverlay();
    },
    c: () => anyOffers("POST /recordCorrection") && setMode(state.mode === "correct" ? "predict" : "correct"),
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

export function initKeys() {
  document.addEventListener("keydown", onKey);
  $("#help-button").addEventListener("click", () => toggleHelp());
  $("#help-close").addEventListener("click", () => toggleHelp(false));
  $("#help").addEventListener("click", (e) => {
    if (e.target.id === "help") toggleHelp(false);
  });
}
