// Start-up: read endpoints.js (or endpoints.mine.js), ask every server what it offers
// (GET /health), build the map and the panels, and show the default dataset.
import { ENDPOINTS } from "../endpoints.js";
import { Server } from "./api.js";
import { state, primary, emit } from "./state.js";
import { $, el, notify, errorText } from "./ui.js";
import { createMap, showDataset, zoomToDataset, getMap } from "./map.js";
import { initGestures } from "./draw.js";
import { initPredict, predictAt, clearPredictions, renderResultCards } from "./predict.js";
import { initClasses, setClasses, startSessions, syncClassesWithSession } from "./classes.js";
import { initCorrections } from "./correct.js";
import { initCheckpoints } from "./checkpoints.js";
import { initExport } from "./export.js";
import { initKeys } from "./keys.js";

const DATASET_KEY = "landcover.dataset";

/** endpoints.mine.js when it exists (git-ignored local override), else endpoints.js. */
async function loadEndpoints() {
  try {
    const mine = await import("../endpoints.mine.js");
    const list = mine.default ?? mine.ENDPOINTS;
    if (Array.isArray(list) && list.length) return list;
    console.warn("endpoints.mine.js exports no list (export default [...]); using endpoints.js");
  } catch {
    /* no local override: the usual case */
  }
  return ENDPOINTS;
}

async function askHealth(server) {
  try {
    await server.health();
  } catch (err) {
    notify(errorText(err), "error");
  }
}

async function setDataset(dataset) {
  state.dataset = dataset;
  try {
    localStorage.setItem(DATASET_KEY, dataset.name);
  } catch {
    /* storage disabled */
  }
  showDataset(primary(), dataset);
  setClasses(dataset.classes || []);
  clearPredictions();
  $("#dataset-info").textContent = `${dataset.crs} · ${dataset.resolution} m/px`;
  emit("dataset", dataset);
  await syncClassesWithSession(primary());
}

function fillDatasetSelect(datasets) {
  const select = $("#dataset");
  let remembered = null;
  try {
    remembered = localStorage.getItem(DATASET_KEY);
  } catch {
    /* storage disabled */
  }
  const chosen = datasets.find((d) => d.name === remembered) || datasets.find((d) => d.default) || datasets[0];
  select.replaceChildren(...datasets.map((d) => el("option", { value: d.name, selected: d === chosen }, d.name)));
  select.addEventListener("change", () => setDataset(datasets.find((d) => d.name === select.value)));
  return chosen;
}

async function main() {
  const endpoints = await loadEndpoints();
  state.servers = endpoints.map((e) => new Server(typeof e === "string" ? { url: e } : e));
  await Promise.all(state.servers.map(askHealth));
  const map = createMap($("#map"));
  window.landcover = { map, state }; // for the console and the browser tests
  renderResultCards();
  initGestures(map, (latlng) => predictAt(latlng));
  initPredict();
  initClasses();
  initCorrections();
  initCheckpoints();
  initExport();
  initKeys();
  $("#zoom-dataset").addEventListener("click", () => state.dataset && zoomToDataset(state.dataset));
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
}

main().catch((err) => {
  notify(`the page failed to start: ${errorText(err)}`, "error");
  document.body.dataset.ready = "error";
});
