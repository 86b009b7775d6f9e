// Pointer gestures on the map, by mode. predict: click predicts. correct / area: click gives a
// point, drag gives a rectangle (the map does not pan in those modes). Shift+click always predicts.
import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { state, emit } from "./state.js";
import { $ } from "./ui.js";

const CLICK_TOLERANCE_PX = 4;
const handlers = {}; // mode → {point(latlng), rect(latLngBounds)}
let map = null;
let predict = null;
let drag = null; // {start: LatLng, startPoint: Point, rect: L.Rectangle|null}
let gestureJustEnded = false; // the click that follows a gesture's mouseup is not a prediction

/** `onPredict(latlng)` for prediction clicks; gesture handlers per mode via `onGesture`. */
export function initGestures(theMap, onPredict) {
  map = theMap;
  predict = onPredict;
  map.on("click", (e) => {
    if (gestureJustEnded) return;
    if (e.originalEvent.shiftKey || state.mode === "predict") predict(e.latlng);
  });
  map.on("mousedown", startDrag);
  document.querySelectorAll("[data-mode]").forEach((button) =>
    button.addEventListener("click", () => setMode(button.dataset.mode)),
  );
}

export function onGesture(mode, { point, rect }) {
  handlers[mode] = { point, rect };
}

export function setMode(mode) {
  if (!map || state.mode === mode) return;
  cancelDrag();
  state.mode = mode;
  if (mode === "predict") map.dragging.enable();
  else map.dragging.disable();
  const container = map.getContainer();
  container.classList.toggle("mode-correct", mode === "correct");
  container.classList.toggle("mode-area", mode === "area");
  document.querySelectorAll("[data-mode]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
  const hint = $("#mode-hint");
  if (hint) {
    hint.textContent = {
      predict: "Click (or shift+click) the map to predict; drag to pan.",
      correct: "Click labels a pixel, drag labels a rectangle · shift+click predicts · Esc pans",
      area: "Drag a rectangle around the area to export · Esc cancels",
    }[mode];
  }
  emit("mode", mode);
}

function startDrag(e) {
  const mode = state.mode;
  const ev = e.originalEvent;
  if (mode === "predict" || ev.shiftKey || ev.button !== 0 || !handlers[mode]) return;
  if (ev.target.closest && ev.target.closest(".leaflet-control")) return;
  ev.preventDefault(); // no text selection while drawing (the map's own dragging is off)
  drag = { start: e.latlng, startPoint: e.containerPoint, rect: null, mode };
  document.addEventListener("mousemove", moveDrag);
  document.addEventListener("mouseup", endDrag, { once: true });
}

function moveDrag(ev) {
  if (!drag) return;
  const point = map.mouseEventToContainerPoint(ev);
  if (!drag.rect && point.distanceTo(drag.startPoint) < CLICK_TOLERANCE_PX) return;
  const bounds = L.latLngBounds(drag.start, map.containerPointToLatLng(point));
  if (drag.rect) drag.rect.setBounds(bounds);
  else {
    const color = drag.mode === "correct" ? state.classes[state.activeClass]?.color : undefined;
    drag.rect = L.rectangle(bounds, {
      pane: "drawing",
      className: "drag-rect",
      color: color || "#ffcc00",
      weight: 2,
      dashArray: "5 3",
      interactive: false,
    }).addTo(map);
  }
}

function endDrag(ev) {
  document.removeEventListener("mousemove", moveDrag);
  if (!drag) return;
  const { start, rect, mode } = drag;
  const point = map.mouseEventToContainerPoint(ev);
  const end = map.containerPointToLatLng(point);
  cancelDrag();
  gestureJustEnded = true;
  setTimeout(() => (gestureJustEnded = false), 0);
  const handler = handlers[mode];
  if (!rect) handler.point(start);
  else handler.rect(L.latLngBounds(start, end));
}

function cancelDrag() {
  if (drag?.rect) drag.rect.remove();
  document.removeEventListener("mousemove", moveDrag);
  drag = null;
}
