// Drawing tools for corrections: point, rectangle and polygon from Leaflet-Geoman (mouse, pen and
// touch alike: they work by clicks and taps), a freehand brush of a width in metres, and an eraser
// of the same width that un-labels corrected pixels under it. Brush strokes go to the server as
// the union of discs and segments around the stroke (a GeoJSON MultiPolygon in EPSG:4326).
import { L } from "./leaflet.js";
import { state, on, emit } from "./state.js";
import { $, notify } from "./ui.js";
import { getMap } from "./map.js";
import { setMode } from "./draw.js";
import { recall, remember } from "./saved.js";

export const TOOLS = ["point", "rectangle", "polygon", "brush", "eraser"];
const GEOMAN_SHAPES = { point: "CircleMarker", rectangle: "Rectangle", polygon: "Polygon" };
/** vertices of a brush disc */
const DISC_SIDES = 12;
/** least screen distance between two recorded points of a stroke, in px */
const STROKE_STEP_PX = 3;

let map = null;
let handlers = null; // {area(geometry), erase(geometry)}
let stroke = null; // {points: [LatLng], line: L.Polyline, pointer}

export function initTools(theMap, { area, erase }) {
  map = theMap;
  handlers = { area, erase };
  state.tool = recall("ui.tool", "point");
  state.brushMetres = recall("ui.brushMetres", 4);
  map.pm.setGlobalOptions({ snappable: false, continueDrawing: true, tooltips: true,
    templineStyle: { color: "#ffcc00" }, hintlineStyle: { color: "#ffcc00", dashArray: "5 5" } });
  map.on("pm:create", ({ layer, shape }) => {
    if (state.mode !== "correct") return;
    layer.remove();
    if (shape === "CircleMarker") handlers.area({ point: layer.getLatLng() });
    else handlers.area({ rings: layer.getLatLngs() });
  });
  document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  const width = $("#brush-width");
  width.value = String(state.brushMetres);
  width.addEventListener("input", () => {
    state.brushMetres = Math.max(1, Number(width.value) || 1);
    remember("ui.brushMetres", state.brushMetres);
  });
  const container = map.getContainer();
  container.addEventListener("pointerdown", startStroke);
  container.addEventListener("pointermove", moveStroke);
  container.addEventListener("pointerup", endStroke);
  container.addEventListener("pointercancel", cancelStroke);
  on("mode", ({ mode }) => applyTool(mode));
  on("active-class", () => state.mode === "correct" && applyTool("correct"));
  syncButtons();
}

export function setTool(tool) {
  if (!TOOLS.includes(tool)) return;
  state.tool = tool;
  remember("ui.tool", tool);
  syncButtons();
  if (state.mode !== "correct") setMode("correct");
  else applyTool("correct");
  emit("tool", tool);
}

function syncButtons() {
  document.querySelectorAll("[data-tool]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.tool === state.tool)));
  $("#brush-row").hidden = !["brush", "eraser"].includes(state.tool);
}

/** Enable what the mode and tool need: a Geoman draw mode, or the brush (map does not pan). */
function applyTool(mode) {
  cancelStroke();
  if (mode === "area") return; // export.js owns the drawing
  map.pm.disableDraw();
  const brushing = mode === "correct" && ["brush", "eraser"].includes(state.tool);
  map.getContainer().classList.toggle("brushing", brushing);
  map.getContainer().classList.toggle("erasing", brushing && state.tool === "eraser");
  if (brushing) map.dragging.disable();
  else map.dragging.enable();
  if (mode === "correct" && GEOMAN_SHAPES[state.tool]) {
    const color = state.classes[state.activeClass]?.color || "#ffcc00";
    map.pm.enableDraw(GEOMAN_SHAPES[state.tool], { pathOptions: { color, fillColor: color, pane: "drawing" },
      templineStyle: { color }, radius: 6, finishOn: state.tool === "polygon" ? "dblclick" : null });
  }
}

// --- brush and eraser --------------------------------------------------------------------------------

const brushing = () => state.mode === "correct" && ["brush", "eraser"].includes(state.tool);

function startStroke(e) {
  if (!brushing() || e.shiftKey || (e.pointerType === "mouse" && e.button !== 0) || stroke) return;
  if (e.target.closest?.(".leaflet-control")) return;
  e.preventDefault();
  try {
    map.getContainer().setPointerCapture(e.pointerId); // the stroke goes on outside the map
  } catch {
    /* a pointer the browser does not track (synthetic events): no capture needed */
  }
  const latlng = map.mouseEventToLatLng(e);
  const erasing = state.tool === "eraser";
  const color = erasing ? "#ffffff" : state.classes[state.activeClass]?.color || "#ffcc00";
  const line = L.polyline([latlng], { pane: "drawing", className: erasing ? "eraser-stroke" : "brush-stroke", color,
    opacity: 0.7, lineCap: "round", lineJoin: "round", weight: widthPx(latlng), interactive: false }).addTo(map);
  stroke = { points: [latlng], line, pointer: e.pointerId, kind: e.pointerType || "mouse" };
}

function moveStroke(e) {
  if (!stroke || e.pointerId !== stroke.pointer) return;
  const latlng = map.mouseEventToLatLng(e);
  const last = map.latLngToContainerPoint(stroke.points.at(-1));
  if (last.distanceTo(map.latLngToContainerPoint(latlng)) < STROKE_STEP_PX) return;
  stroke.points.push(latlng);
  stroke.line.addLatLng(latlng);
}

function endStroke(e) {
  if (!stroke || e.pointerId !== stroke.pointer) return;
  moveStroke(e);
  const { points, kind } = stroke;
  cancelStroke();
  const geometry = strokeGeometry(points, state.brushMetres / 2);
  const send = state.tool === "eraser" ? handlers.erase : handlers.area;
  send({ geometry, points, input: kind });
}

function cancelStroke() {
  stroke?.line.remove();
  stroke = null;
}

/** Screen width of the brush at `latlng` at the current zoom, in px (at least 2). */
function widthPx(latlng) {
  const metresPerPx = (40075016.686 * Math.cos((latlng.lat * Math.PI) / 180)) / (256 * 2 ** map.getZoom());
  return Math.max(2, state.brushMetres / metresPerPx);
}

/** A stroke of `radius` metres around the points: discs at the points, quads along the segments. */
export function strokeGeometry(points, radius) {
  const lat0 = points[0].lat;
  const mPerDegLat = 111320;
  const mPerDegLng = 111320 * Math.cos((lat0 * Math.PI) / 180);
  const toXY = (p) => [(p.lng - points[0].lng) * mPerDegLng, (p.lat - lat0) * mPerDegLat];
  const toLngLat = ([x, y]) => [points[0].lng + x / mPerDegLng, lat0 + y / mPerDegLat];
  const xy = points.map(toXY);
  const parts = xy.map(([cx, cy]) => {
    const ring = [];
    for (let i = 0; i < DISC_SIDES; i++) {
      const a = (2 * Math.PI * i) / DISC_SIDES;
      ring.push(toLngLat([cx + radius * Math.cos(a), cy + radius * Math.sin(a)]));
    }
    return [[...ring, ring[0]]];
  });
  for (let i = 1; i < xy.length; i++) {
    const [x0, y0] = xy[i - 1];
    const [x1, y1] = xy[i];
    const len = Math.hypot(x1 - x0, y1 - y0);
    if (len === 0) continue;
    const nx = (-(y1 - y0) / len) * radius;
    const ny = ((x1 - x0) / len) * radius;
    const quad = [[x0 + nx, y0 + ny], [x1 + nx, y1 + ny], [x1 - nx, y1 - ny], [x0 - nx, y0 - ny]].map(toLngLat);
    parts.push([[...quad, quad[0]]]);
  }
  return { type: "MultiPolygon", coordinates: parts };
}

export function stopDrawing() {
  cancelStroke();
  map?.pm.disableDraw();
}

export { notify };
