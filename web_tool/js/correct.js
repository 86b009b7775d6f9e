// Human in the loop: corrections (point or rectangle, in the active class) go to every server
// that records them; Retrain, Undo and Reset act on those servers and re-run the last prediction.
import * as L from "../vendor/leaflet/leaflet-src.esm.js";
import { state, on, serversOffering, anyOffers } from "./state.js";
import { el, $, notify, withBusy, errorText, fmt } from "./ui.js";
import { getMap } from "./map.js";
import { onGesture, setMode } from "./draw.js";
import { boundsToExtent, mercatorUnits, toMercator } from "./geo.js";
import { countCorrection, countsSnapshot, restoreCounts } from "./classes.js";
import { rerunLast } from "./predict.js";
import { withSession } from "./sessions.js";

const history = []; // {type: "correction", layer, cls, pixels} | {type: "retrain", counts}
let drawn = null; // L.LayerGroup of the corrections on the map
let resetArmed = null;

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

/** Label `extent` with the active class; `layer` shows it on the map. */
async function correct(extent, layer) {
  const cls = state.activeClass;
  const color = state.classes[cls]?.color || "#ffffff";
  layer.setStyle({ color: "#ffffff", fillColor: color });
  layer.getElement()?.classList.add("pending");
  try {
    const ok = await onEveryServer("POST /recordCorrection", (s, session) =>
      s.recordCorrection({ extent, value: cls, session, dataset: state.dataset.name }),
    );
    const pixels = ok[0].value.count;
    layer.getElement()?.classList.remove("pending");
    history.push({ type: "correction", layer, cls, pixels });
    countCorrection(cls, pixels);
    updateButtons();
    if (pixels === 0) notify(`${ok[0].server.name}: that area holds no pixel of the dataset`, "error");
  } catch (err) {
    layer.remove();
    notify(errorText(err), "error");
  }
}

function correctPoint(latlng) {
  if (!state.dataset) return;
  const layer = L.circleMarker(latlng, {
    pane: "corrections",
    radius: 5,
    weight: 1.5,
    fillOpacity: 0.95,
    interactive: false,
    className: "correction",
  }).addTo(drawn);
  return correct(pointExtent(latlng), layer);
}

function correctRect(bounds) {
  if (!state.dataset) return;
  const layer = L.rectangle(bounds, {
    pane: "corrections",
    weight: 1.5,
    dashArray: "3 2",
    fillOpacity: 0.55,
    interactive: false,
    className: "correction",
  }).addTo(drawn);
  return correct(boundsToExtent(bounds), layer);
}

export function retrain() {
  const button = $("#retrain");
  if (button.hidden || button.disabled) return;
  return withBusy(button, async () => {
    $("#retrain-result").replaceChildren(el("p", { class: "muted" }, "retraining…"));
    const ok = await onEveryServer("POST /retrainModel", (s, session) =>
      s.retrain({ session, dataset: state.dataset?.name }),
    );
    history.push({ type: "retrain", counts: countsSnapshot() });
    restoreCounts(null);
    $("#retrain-result").replaceChildren(...ok.map(({ server, value }) => retrainReport(server, value, ok.length > 1)));
    ok.forEach(({ server, value }) => notify(`${server.name}: ${value.message}`, "ok"));
    updateButtons();
    await rerunLast();
  }).finally(() => {
    if ($("#retrain-result").textContent === "retraining…") $("#retrain-result").replaceChildren();
  });
}

const METRIC_COLUMNS = [
  ["f1_before", "F1 before"],
  ["f1", "F1 after"],
  ["precision", "precision"],
  ["recall", "recall"],
  ["support", "px"],
  ["iou", "IoU"],
  ["accuracy", "accuracy"],
];

/** The server's message and its per-class hold-out metrics as a small table. */
function retrainReport(server, { message, metrics, summary }, named) {
  const present = new Set(metrics.flatMap((m) => Object.keys(m.values)));
  let columns = METRIC_COLUMNS.filter(([key]) => present.has(key));
  if (!columns.length) columns = [...present].slice(0, 5).map((k) => [k, k.replace(/_/g, " ")]);
  const parts = [el("p", { class: "report-message" }, named ? `${server.name}: ${message}` : message)];
  const summaryText = summaryLine(summary);
  if (summaryText && !/accuracy/i.test(message)) parts.push(el("p", { class: "muted" }, summaryText));
  if (metrics.length && columns.length) {
    const digits = (key) => (/support|count|pixels|^n_/.test(key) ? 0 : 2);
    parts.push(
      el(
        "table",
        { class: "metrics" },
        el("caption", {}, "hold-out metrics per class"),
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "class"), columns.map(([, label]) => el("th", { scope: "col" }, label)))),
        el(
          "tbody",
          {},
          metrics.map((m) =>
            el("tr", {}, el("th", { scope: "row" }, m.name), columns.map(([key]) => el("td", {}, fmt(m.values[key], digits(key))))),
          ),
        ),
      ),
    );
  }
  return el("div", { class: "report" }, ...parts);
}

/** "accuracy 0.810 → 0.870 · macro f1 …" from {accuracy, accuracy_before, …}. */
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
    const last = history.pop();
    if (last?.type === "correction") {
      last.layer.remove();
      countCorrection(last.cls, last.pixels, -1);
    } else if (last?.type === "retrain") {
      restoreCounts(last.counts);
    }
    const what = last ? `undid the last ${last.type}` : "undone";
    notify(ok[0].value.message ? `${ok[0].server.name}: ${ok[0].value.message}` : what, "ok");
    updateButtons();
    await rerunLast();
  });
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
    clearDrawn();
    restoreCounts(null);
    $("#retrain-result").replaceChildren();
    notify(ok[0].value.message ? `${ok[0].server.name}: ${ok[0].value.message}` : "back to the base model; corrections cleared", "ok");
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

/** Forget what is drawn (dataset switch, checkpoint load); the server keeps its own state. */
export function clearDrawn() {
  drawn?.clearLayers();
  history.length = 0;
  updateButtons();
}

function updateButtons() {
  $("#undo-count").textContent = history.length ? `(${history.length})` : "";
}

export function initCorrections() {
  drawn = L.layerGroup().addTo(getMap());
  onGesture("correct", { point: correctPoint, rect: correctRect });
  const canCorrect = anyOffers("POST /recordCorrection");
  $("#correct-section").hidden = !canCorrect;
  $("#mode-correct").hidden = !canCorrect;
  $("#retrain").hidden = !anyOffers("POST /retrainModel");
  $("#undo").hidden = !anyOffers("POST /doUndo");
  $("#reset").hidden = !anyOffers("POST /resetModel");
  $("#retrain").addEventListener("click", retrain);
  $("#undo").addEventListener("click", undo);
  $("#reset").addEventListener("click", reset);
  on("active-class", () => {
    if (canCorrect && state.mode !== "correct") setMode("correct");
  });
  on("dataset", clearDrawn);
}
