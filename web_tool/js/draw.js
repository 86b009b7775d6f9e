// Modes of the map and what a click does in each. predict: a click predicts the square around it
// (after a moment, so that a double click zooms instead); correct: the active drawing tool labels
// (tools.js); area: the export area is being drawn (export.js). Shift+click always predicts.
import { state, emit } from "./state.js";
import { $ } from "./ui.js";

/** how long a click waits for a second one before it predicts, in ms */
export const DOUBLE_CLICK_MS = 260;
let map = null;
let predict = null;
let pendingClick = null;

const HINTS = {
  predict: "Click the map to predict a square; double-click zooms; the prediction layer fills the view.",
  correct: "Draw with the active tool to label the active class · shift+click predicts · Esc stops drawing",
  area: "Draw the area to export (rectangle or polygon) · Esc cancels",
};

/** `onPredict(latlng)` for prediction clicks. */
export function initGestures(theMap, onPredict) {
  map = theMap;
  predict = onPredict;
  map.on("click", (e) => {
    if (e.originalEvent.shiftKey) return predict(e.latlng);
    if (state.mode !== "predict" || map.pm?.globalDrawModeEnabled()) return;
    clearTimeout(pendingClick);
    pendingClick = setTimeout(() => predict(e.latlng), DOUBLE_CLICK_MS);
  });
  map.on("dblclick", () => clearTimeout(pendingClick));
  document.querySelectorAll("[data-mode]").forEach((button) =>
    button.addEventListener("click", () => setMode(button.dataset.mode)),
  );
}

export function setMode(mode) {
  if (!map || state.mode === mode) return;
  clearTimeout(pendingClick);
  const previous = state.mode;
  state.mode = mode;
  const container = map.getContainer();
  container.classList.toggle("mode-correct", mode === "correct");
  container.classList.toggle("mode-area", mode === "area");
  document.querySelectorAll("[data-mode]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
  const hint = $("#mode-hint");
  if (hint) hint.textContent = HINTS[mode];
  emit("mode", { mode, previous });
}
