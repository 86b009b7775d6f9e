// Start-up: read endpoints.js (the server serves endpoints.mine.js in its place when there is one),
// ask every server what it offers (GET /health), build the map and the panels, and show the
// dataset as the user left it: view, layers, colours, weights, last prediction, corrections, report.
import * as endpoints from "../endpoints.js";
import { Server } from "./api.js";
import { state, primary, emit } from "./state.js";
import { $, el, notify, errorText, restoreMessages } from "./ui.js";
import { createMap, showDataset, zoomToDataset, getMap, initGoTo } from "./map.js";
import { initGestures } from "./draw.js";
import { initPredict, predictAt, clearPredictions, renderResultCards, restoreLast } from "./predict.js";
import { initPredictionLayer, viewBlocks } from "./predlayer.js";
import { initClasses, setClasses, startSessions, syncClassesWithSession } from "./classes.js";
import { initCorrections } from "./correct.js";
import { initCheckpoints } from "./checkpoints.js";
import { initExport } from "./export.js";
import { initKeys } from "./keys.js";
import { initLegend } from "./legend.js";
import { recall, remember } from "./saved.js";

async function askHealth(server) {
  try {
    await server.health();
  } catch (err) {
    notify(errorText(err), "error");
  }
}

async function setDataset(dataset) {
  state.dataset = dataset;
  remember("ui.dataset", dataset.name);
  showDataset(primary(), dataset);
  setClasses(dataset.classes || []);
  clearPredictions();
  $("#dataset-info").textContent = `${dataset.crs} · ${dataset.resolution} m/px`;
  await syncClassesWithSession(primary());
  emit("dataset", dataset);
}

function fillDatasetSelect(datasets) {
  const select = $("#dataset");
  const remembered = recall("ui.dataset");
  const chosen = datasets.find((d) => d.name === remembered) || datasets.find((d) => d.default) || datasets[0];
  select.replaceChildren(...datasets.map((d) => el("option", { value: d.name, selected: d === chosen }, d.name)));
  select.addEventListener("change", () => setDataset(datasets.find((d) => d.name === select.value)));
  return chosen;
}

async function main() {
  restoreMessages();
  const list = endpoints.default ?? endpoints.ENDPOINTS; // either export, as endpoints.mine.js files have it
  if (!Array.isArray(list) || !list.length) throw new Error("endpoints.js (or endpoints.mine.js) lists no server");
  state.servers = list.map((e) => new Server(typeof e === "string" ? { url: e } : e));
  await Promise.all(state.servers.map(askHealth));
  const map = createMap($("#map"));
  window.landcover = { map, state, blocks: () => viewBlocks().length }; // for the console and the browser tests
  renderResultCards();
  initGestures(map, (latlng) => predictAt(latlng));
  initPredictionLayer();
  initPredict();
  initClasses();
  initCorrections();
  initCheckpoints();
  initExport();
  initKeys();
  initLegend(map);
  const toDataset = () => state.dataset && zoomToDataset(state.dataset);
  $("#zoom-dataset").addEventListener("click", toDataset);
  initGoTo(toDataset);
  try {
    state.datasets = await primary().datasets();
  } catch (err) {
    notify(errorText(err), "error");
    $("#dataset-info").textContent = "no datasets";
    getMap().setView([0, 0], 2);
    document.body.dataset.ready = "error";
    return;
  }
  if (!state.datasets.length) {
    notify(`${primary().name}: the server has no dataset`, "error");
    getMap().setView([0, 0], 2);
    document.body.dataset.ready = "error";
    return;
  }
  await startSessions();
  await setDataset(fillDatasetSelect(state.datasets));
  document.body.dataset.ready = "true";
  restoreLast();
}

main().catch((err) => {
  notify(`the page failed to start: ${errorText(err)}`, "error");
  document.body.dataset.ready = "error";
});
