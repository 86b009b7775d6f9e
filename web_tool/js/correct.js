// Human in the loop: corrections drawn with the tools (tools.js) go to every server that records
// them; Retrain, Undo and Reset act on those servers and re-run the last prediction. What the map
// shows as corrections is what the selected server holds (GET /corrections: a layer per class,
// with counts), so after a reload, an erase or an undo, the markers are exactly what is labelled.
import { L } from "./leaflet.js";
import { state, on, emit, serversOffering, anyOffers } from "./state.js";
import { el, $, notify, withBusy, errorText, fmt } from "./ui.js";
import { getMap, busy } from "./map.js";
import { setMode } from "./draw.js";
import { mercatorUnits, toMercator, polygonGeoJSON } from "./geo.js";
import { markRetrained, restoreBaseline, setServerCounts, syncClassesWithSession } from "./classes.js";
import { rerunLast } from "./predict.js";
import { initTools } from "./tools.js";
import { withSession, currentSession } from "./sessions.js";
import { addLayer, setLabel } from "./layers.js";
import { recall, remember, workKey } from "./saved.js";

const classLayers = new Map(); // class index → L.GeoJSON of its corrections
const drawnIds = new Set(); // corrections on the map (two loads at once must not draw one twice)
let lastId = 0; // newest correction id drawn
let undoSteps = 0;
let resetArmed = null;

const server = () => state.servers[state.selected];

/** Send `fn(server, session)` to every server offering `endpoint`; → [{server, value}] of the
 *  successes. Each failure is shown; throws only when every server failed. */
async function onEveryServer(endpoint, fn) {
  const servers = serversOffering(endpoint);
  if (!servers.length) throw new Error(`no server offers ${endpoint}`);
  const settled = await Promise.allSettled(servers.map((s) => withSession(s, (session) => fn(s, session))));
  const ok = [];
  settled.forEach((r, i) => {
    if (r.status === "fulfilled") ok.push({ server: servers[i], value: r.value });
    else if (servers.length > 1) notify(errorText(r.reason), "error");
  });
  if (!ok.length) throw settled[0].reason;
  return ok;
}

function pointExtent(latlng) {
  const [x, y] = toMercator(latlng);
  const half = mercatorUnits(state.dataset.resolution, latlng.lat) / 2;
  return [x - half, y - half, x + half, y + half];
}

/** Label an area drawn with a tool ({point} | {rings} | {geometry}) with the active class. */
async function correct(drawn) {
  if (!state.dataset) return;
  const cls = state.activeClass;
  const area = drawn.point ? { extent: pointExtent(drawn.point) } : { geometry: drawn.geometry || polygonGeoJSON(drawn.rings) };
  const sketch = sketchOf(drawn, state.classes[cls]?.color);
  busy("correct", "recording the correction…");
  try {
    const ok = await onEveryServer("POST /recordCorrection", (s, session) =>
      s.recordCorrection({ ...area, value: cls, session, dataset: state.dataset.name }),
    );
    const pixels = ok[0].value.count;
    if (pixels === 0) notify(`${ok[0].server.name}: that area holds no pixel of the dataset`, "error");
    await loadCorrections(false);
  } catch (err) {
    notify(errorText(err), "error");
  } finally {
    sketch?.remove();
    busy("correct", null);
  }
}

/** A faint copy of what was drawn while the server records it. */
function sketchOf(drawn, color) {
  const map = getMap();
  const style = { pane: "drawing", color: "#ffffff", fillColor: color, weight: 1, fillOpacity: 0.4, interactive: false,
    className: "correction pending" };
  if (drawn.point) return L.circleMarker(drawn.point, { ...style, radius: 5 }).addTo(map);
  if (drawn.rings) return L.polygon(drawn.rings, style).addTo(map);
  return null;
}

async function erase({ geometry }) {
  if (!state.dataset) return;
  busy("correct", "erasing…");
  try {
    const ok = await onEveryServer("POST /deleteCorrections", (s, session) =>
      s.deleteCorrections({ geometry, session, dataset: state.dataset.name }),
    );
    notify(`${ok[0].server.name}: ${ok[0].value.message}`, ok[0].value.count ? "ok" : "info");
    await loadCorrections(true);
  } catch (err) {
    notify(errorText(err), "error");
  } finally {
    busy("correct", null);
  }
}

// --- the corrections layers ------------------------------------------------------------------------

function classLayer(index) {
  if (!classLayers.has(index)) {
    const color = () => state.classes[index]?.color || "#888888";
    const layer = L.geoJSON(null, {
      pane: `corrections-${index}`,
      style: () => ({ color: "#ffffff", weight: 1, fillColor: color(), fillOpacity: 0.55, className: "correction" }),
      pointToLayer: (feature, latlng) => L.circleMarker(latlng, { pane: `corrections-${index}`, radius: 5, weight: 1.5, color: "#ffffff",
        fillColor: color(), fillOpacity: 0.95, className: "correction", interactive: false }),
      interactive: false,
    });
    classLayers.set(index, layer);
    addLayer(`corrections-${index}`, label(index, 0, 0), layer, { z: 450 + index,
      note: "pixels labelled as this class (dots: single clicks)" });
  }
  return classLayers.get(index);
}

const label = (index, n, pixels) =>
  `Corrections: ${state.classes[index]?.name ?? `class ${index}`} (${n}${pixels ? ` · ${pixels} px` : ""})`;

/** Draw the selected server's corrections (all of them, or only the new ones). */
export async function loadCorrections(all = true) {
  const s = server();
  if (!s?.offers("GET /corrections") || !state.dataset) return;
  try {
    const body = await withSession(s, (session) =>
      s.corrections({ session, dataset: state.dataset.name, after: all ? 0 : lastId }),
    );
    if (all) clearDrawn();
    for (const feature of body.features || []) {
      if (drawnIds.has(feature.id)) continue;
      drawnIds.add(feature.id);
      classLayer(feature.properties.value).addData(feature);
      lastId = Math.max(lastId, feature.id || 0);
    }
    state.classes.forEach((_, i) => {
      const c = body.counts?.[String(i)] || { corrections: 0, pixels: 0 };
      if (c.corrections || classLayers.has(i)) {
        classLayer(i);
        setLabel(`corrections-${i}`, label(i, c.corrections, c.pixels));
      }
    });
    setServerCounts(body.counts);
    emit("corrections", body.counts || {});
  } catch (err) {
    notify(errorText(err), "error");
  }
  await refreshUndo();
}

/** Recolour the correction markers (a class colour changed). */
function restyle() {
  classLayers.forEach((layer, i) => {
    const color = state.classes[i]?.color || "#888888";
    layer.eachLayer((l) => l.setStyle({ fillColor: color }));
  });
}

// --- retrain, undo, reset ---------------------------------------------------------------------------

const reportKey = () => ["work", workKey(server(), currentSession(server())), "report"];

export function retrain() {
  const button = $("#retrain");
  if (button.hidden || button.disabled) return;
  return withBusy(button, async () => {
    $("#retrain-result").replaceChildren(el("p", { class: "muted" }, "retraining…"));
    busy("retrain", "retraining…");
    try {
      const ok = await onEveryServer("POST /retrainModel", (s, session) => s.retrain({ session, dataset: state.dataset?.name }));
      const previous = markRetrained();
      remember(reportKey(), { reports: ok.map(({ server: s, value }) => ({ name: s.name, ...value })), previous });
      showReports(ok.map(({ server: s, value }) => ({ name: s.name, ...value })));
      ok.forEach(({ server: s, value }) => notify(`${s.name}: ${value.message}`, "ok"));
      emit("model-changed");
      await refreshUndo();
      await rerunLast();
    } finally {
      busy("retrain", null);
      if ($("#retrain-result").textContent === "retraining…") $("#retrain-result").replaceChildren();
    }
  });
}

function showReports(reports) {
  $("#retrain-result").replaceChildren(...reports.map((r) => retrainReport(r, reports.length > 1)));
}

/** The retrain report from before a reload, if it belongs to this session. */
export function restoreReport() {
  const saved = recall(reportKey());
  if (saved?.reports?.length) showReports(saved.reports);
  else $("#retrain-result").replaceChildren();
}

const METRIC_COLUMNS = [
  ["f1_before", "F1 before"], ["f1", "F1 after"], ["precision", "precision"], ["recall", "recall"],
  ["support", "px"], ["iou", "IoU"], ["accuracy", "accuracy"],
];

/** The server's message and its per-class hold-out metrics as a small table. */
function retrainReport({ name, message, metrics = [], summary = {} }, named) {
  const present = new Set(metrics.flatMap((m) => Object.keys(m.values)));
  let columns = METRIC_COLUMNS.filter(([key]) => present.has(key));
  if (!columns.length) columns = [...present].slice(0, 5).map((k) => [k, k.replace(/_/g, " ")]);
  const parts = [el("p", { class: "report-message" }, named ? `${name}: ${message}` : message)];
  const summaryText = summaryLine(summary);
  if (summaryText && !/accuracy/i.test(message)) parts.push(el("p", { class: "muted" }, summaryText));
  if (metrics.length && columns.length) {
    const digits = (key) => (/support|count|pixels|^n_/.test(key) ? 0 : 2);
    parts.push(el("table", { class: "metrics" },
      el("caption", {}, "hold-out metrics per class"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "class"), columns.map(([, l]) => el("th", { scope: "col" }, l)))),
      el("tbody", {}, metrics.map((m) =>
        el("tr", {}, el("th", { scope: "row" }, m.name), columns.map(([key]) => el("td", {}, fmt(m.values[key], digits(key))))))),
    ));
  }
  return el("div", { class: "report" }, ...parts);
}

function summaryLine(summary) {
  return Object.entries(summary)
    .filter(([k]) => !k.endsWith("_before") && !/pixels|corrections/.test(k))
    .map(([k, v]) => {
      const before = summary[`${k}_before`];
      const name = k.replace(/_/g, " ");
      return before === undefined ? `${name} ${fmt(v, 3)}` : `${name} ${fmt(before, 3)} → ${fmt(v, 3)}`;
    })
    .join(" · ");
}

export function undo() {
  const button = $("#undo");
  if (button.hidden || button.disabled) return;
  return withBusy(button, async () => {
    const ok = await onEveryServer("POST /doUndo", (s, session) => s.undo({ session }));
    const undone = ok[0].value;
    notify(undone.message ? `${ok[0].server.name}: ${undone.message}` : "undone", "ok");
    const saved = recall(reportKey());
    if (undone.undone === "retrain") {
      restoreBaseline(saved?.previous);
      remember(reportKey(), undefined);
      $("#retrain-result").replaceChildren();
    }
    emit("model-changed");
    await loadCorrections(true);
    await rerunLast();
  });
}

async function refreshUndo() {
  const s = server();
  if (!s?.offers("GET /sessions/x")) return;
  try {
    const info = await withSession(s, (session) => s.sessionInfo(session));
    undoSteps = info.undoSteps ?? 0;
    $("#undo-count").textContent = undoSteps ? `(${undoSteps})` : "";
    $("#undo").title = info.nextUndo ? `undo the last ${info.nextUndo} (Ctrl+Z)` : "nothing to undo";
  } catch {
    /* shown by the next action */
  }
}

/** First press arms the button ("Confirm reset?"), a second press within 4 s resets. */
export function reset() {
  const button = $("#reset");
  if (button.hidden || button.disabled) return;
  if (!resetArmed) {
    button.textContent = "Confirm reset?";
    button.classList.add("armed");
    resetArmed = setTimeout(disarmReset, 4000);
    return;
  }
  disarmReset();
  return withBusy(button, async () => {
    const ok = await onEveryServer("POST /resetModel", (s, session) => s.reset({ session }));
    restoreBaseline(null);
    remember(reportKey(), undefined);
    $("#retrain-result").replaceChildren();
    notify(ok[0].value.message ? `${ok[0].server.name}: ${ok[0].value.message}` : "back to the base model; corrections cleared", "ok");
    await syncClassesWithSession(server(), true); // the base model's classes: added ones are gone
    emit("model-changed");
    await loadCorrections(true);
    await rerunLast();
  });
}

function disarmReset() {
  clearTimeout(resetArmed);
  resetArmed = null;
  const button = $("#reset");
  button.textContent = "Reset";
  button.classList.remove("armed");
}

/** Forget the corrections drawn (another dataset); the server keeps its own state. */
export function clearDrawn() {
  classLayers.forEach((layer) => layer.clearLayers());
  drawnIds.clear();
  lastId = 0;
}

export function initCorrections() {
  initTools(getMap(), { area: correct, erase });
  const canCorrect = anyOffers("POST /recordCorrection");
  $("#correct-section").hidden = !canCorrect;
  $("#mode-correct").hidden = !canCorrect;
  $("#eraser-tool").hidden = !anyOffers("POST /deleteCorrections");
  $("#retrain").hidden = !anyOffers("POST /retrainModel");
  $("#undo").hidden = !anyOffers("POST /doUndo");
  $("#reset").hidden = !anyOffers("POST /resetModel");
  $("#retrain").addEventListener("click", retrain);
  $("#undo").addEventListener("click", undo);
  $("#reset").addEventListener("click", reset);
  on("active-class", () => {
    if (canCorrect && state.mode !== "correct") setMode("correct");
  });
  on("dataset", () => {
    clearDrawn();
    loadCorrections(true);
    restoreReport();
  });
  on("server-selected", () => loadCorrections(true));
  on("colors-changed", restyle);
}
