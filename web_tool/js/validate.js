// How right is a finished map? The "Accuracy" panel: pick a finished export, draw a validation
// sample (stratified random points by map class), then walk the points one at a time: the map
// zooms on each point's pixel with the map's own classes hidden (so the answer is not swayed),
// and the user says what is really there (buttons or keys 1-9, s skip, u unsure, Backspace back,
// Esc pause). Every answer is saved on the server at once (a reload resumes), and the report
// (error matrix, accuracies and class areas with 95 % intervals) follows. The map can also be
// compared with a reference: the dataset's labels, a GeoTIFF, or GeoJSON points.
//
// Loaded by its own <script> tag after main.js; it shares main's state through state.js.
import { L } from "./leaflet.js";
import { state, on } from "./state.js";
import { $, el, notify, withBusy, errorText } from "./ui.js";
import { getMap } from "./map.js";
import { isOn, setOn } from "./layers.js";
import { pauseTiles } from "./predlayer.js";
import { withSession, currentSession } from "./sessions.js";
import { renderReport, saveBlob } from "./validate_report.js";

const STORE_KEY = "landcover.validate"; // {server, job, sample}: what to offer to resume
const PIXEL_SCREEN_PX = 8; // a dataset pixel is drawn about this wide while walking
const MAX_UPLOAD_BYTES = 6 * 2 ** 20; // base64 grows files by a third; the server takes 8 MiB bodies

const walk = {
  server: null, job: null, sample: null, // the sample being walked
  classes: [], point: null, history: [], layer: null, active: false,
};

const server = () => state.servers[state.selected];
const session = (s) => currentSession(s);

// --- choosing a map and a sample ---------------------------------------------------------------

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(STORE_KEY) || "null");
  } catch {
    return null;
  }
}

function remember(value) {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(value));
  } catch {
    /* storage disabled: nothing to resume after a reload */
  }
}

async function refreshJobs() {
  const s = server();
  if (!s?.offers("POST /jobs/x/samples")) return;
  const select = $("#validate-job");
  const jobs = await s.finishedJobs();
  const keep = select.value || remembered()?.job;
  select.replaceChildren(
    ...jobs.map((j) => el("option", { value: j.id, selected: j.id === keep },
      `${new Date(j.created * 1000).toLocaleString()} · ${j.dataset}${Number.isFinite(j.areaKm2) ? ` · ${j.areaKm2.toFixed(2)} km²` : ""}`)),
  );
  $("#validate-none").hidden = jobs.length > 0;
  $("#validate-map").hidden = jobs.length === 0;
  if (jobs.length) await refreshSamples();
}

async function refreshSamples() {
  const s = server();
  const job = $("#validate-job").value;
  if (!job) return;
  const samples = await s.samples(job, session(s));
  $("#validate-samples").replaceChildren(
    ...samples.map((sample) => {
      const p = sample.progress;
      const done = p.answered + p.unsure;
      return el("li", { class: "validate-sample", dataset: { sample: sample.sample } },
        el("span", {}, `${sample.total} points · ${done} answered`),
        el("button", { type: "button", class: "small", onclick: (e) => withBusy(e.currentTarget, () => start(s, job, sample.sample)) },
          p.pending + p.skipped ? (done ? "Resume" : "Start") : "Review"),
        el("button", { type: "button", class: "small ghost", onclick: (e) => withBusy(e.currentTarget, () => showReport(s, job, sample.sample)) }, "Report"));
    }),
  );
}

async function newSample(form) {
  const s = server();
  const job = $("#validate-job").value;
  if (!job) return notify("finish an export first: a sample is drawn from a finished map", "error");
  const total = Number(form.elements.total.value);
  const minPerClass = Number(form.elements.min_per_class.value);
  const sample = await withSession(s, (id) => s.createSample(job, { total, minPerClass, session: id }));
  notify(`${s.name}: a sample of ${sample.total} points drawn (${sample.strata.filter((c) => c.points).map((c) => `${c.name} ${c.points}`).join(", ")})`, "ok");
  await refreshSamples();
  await start(s, job, sample.sample);
}

// --- the walk ----------------------------------------------------------------------------------

async function start(s, job, sampleId) {
  const sample = await s.sample(job, sampleId, session(s));
  Object.assign(walk, { server: s, job, sample: sampleId, classes: sample.classes, history: [] });
  remember({ server: s.url, job, sample: sampleId });
  $("#validate-report").replaceChildren();
  if (!sample.next) return showReport(s, job, sampleId);
  setWalking(true);
  renderClassButtons();
  showPoint(sample.next, sample.progress);
  $("#validate-walk").focus(); // keys now answer (focus may have been on a select or a button)
}

function setWalking(active) {
  walk.active = active;
  if (active && !isOn("imagery")) setOn("imagery", true); // the answer comes from the imagery
  pauseTiles(active);
  document.body.classList.toggle("validating", active);
  $("#validate-walk").hidden = !active;
  if (!active) {
    walk.layer?.remove();
    walk.layer = null;
  }
}

function renderClassButtons() {
  $("#validate-classes").replaceChildren(
    ...walk.classes.map((c, i) =>
      el("button", { type: "button", class: "validate-class", dataset: { index: i }, onclick: () => answer(i) },
        el("span", { class: "swatch", style: `background:${c.color}` }), i < 9 ? el("kbd", {}, String(i + 1)) : null, ` ${c.name}`)),
  );
}

function showPoint(point, progress) {
  walk.point = point;
  const done = progress.answered + progress.unsure;
  $("#validate-progress").max = progress.points;
  $("#validate-progress").value = done;
  $("#validate-count").textContent = `point ${point.index + 1} · ${done} of ${progress.points} answered${progress.skipped ? ` · ${progress.skipped} skipped` : ""}`;
  document.querySelectorAll(".validate-class").forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.index) === point.answer)));
  const map = getMap();
  walk.layer?.remove();
  const outline = point.outline.map(([lon, lat]) => [lat, lon]);
  walk.layer = L.layerGroup([
    L.polygon(outline, { pane: "validation", className: "validate-pixel", weight: 2, fill: false, interactive: false }),
    L.circleMarker([point.lat, point.lon], { pane: "validation", className: "validate-ring", radius: 18, weight: 2, fill: false, interactive: false }),
  ]).addTo(map);
  map.setView([point.lat, point.lon], zoomFor(point.lat), { animate: false });
  $("#validate-question").textContent = "What is the land cover in the square?";
}

function zoomFor(lat) {
  const metres = state.dataset?.resolution || 1;
  const z = Math.round(Math.log2((156543.03392 * Math.cos((lat * Math.PI) / 180) * PIXEL_SCREEN_PX) / metres));
  return Math.max(1, Math.min(getMap().getMaxZoom(), z));
}

async function answer(value) {
  if (!walk.active || !walk.point || walk.busy) return;
  const { server: s, job, sample, point } = walk;
  setBusy(true);
  try {
    const reply = await withSession(s, (id) => s.answerPoint(job, sample, { point: point.index, answer: value, session: id }));
    if (value !== "skip") walk.history.push(point.index);
    showFeedback(reply.point, value);
    if (reply.next) showPoint(reply.next, reply.progress);
    else {
      setWalking(false);
      notify(`${s.name}: every point of the sample is answered`, "ok");
      await showReport(s, job, sample);
      await refreshSamples(); // the list says the sample is answered (Review, not Start)
    }
  } catch (err) {
    notify(errorText(err), "error");
  } finally {
    setBusy(false);
  }
}

/** While an answer is on its way, further keys wait (they are not queued: one answer per point). */
function setBusy(busy) {
  walk.busy = busy;
  $("#validate-walk").toggleAttribute("aria-busy", busy);
}

/** After an answer, and only then, the map's class of that point is shown. */
function showFeedback(point, value) {
  const name = (i) => walk.classes[i]?.name ?? "?";
  let text = `Point ${point.index + 1}: skipped, it comes back at the end.`;
  if (value === "unsure") text = `Point ${point.index + 1}: unsure (left out); the map says ${name(point.map_class)}.`;
  else if (value !== "skip") {
    const agree = point.map_class === value;
    text = `Point ${point.index + 1}: you said ${name(value)}; the map says ${name(point.map_class)} ${agree ? "✓" : "✗"}`;
  }
  $("#validate-previous").textContent = text;
}

async function back() {
  if (!walk.active || walk.busy) return;
  const index = walk.history.pop();
  if (index === undefined) return notify("no earlier answer in this walk to go back to", "info");
  const sample = await walk.server.sample(walk.job, walk.sample, session(walk.server));
  showPoint(sample.points[index], sample.progress);
  $("#validate-question").textContent = "Answer again (your earlier answer is highlighted):";
}

function pause() {
  if (!walk.active) return;
  setWalking(false);
  notify("walk paused: your answers are saved; Resume continues where you stopped", "info");
  refreshSamples().catch(() => {});
}

async function showReport(s, job, sampleId) {
  const report = await s.sampleReport(job, sampleId, session(s));
  $("#validate-report").replaceChildren(
    renderReport(report, {
      csv: () => withBusy(null, async () => saveBlob(await s.sampleReportCsv(job, sampleId, session(s)), `accuracy_${job}_${sampleId}.csv`)),
    }),
  );
}

/** Keys while walking: 1-9 answer, s skip, u unsure, Backspace back, Esc pause. They are taken
 *  before the page's other shortcuts (which would otherwise pick classes or show overlays). */
function onKey(event) {
  if (!walk.active || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target instanceof HTMLElement && /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName)) return;
  const { key } = event;
  let action = null;
  if (/^[1-9]$/.test(key) && Number(key) <= walk.classes.length) action = () => answer(Number(key) - 1);
  else if (key === "s" || key === "S") action = () => answer("skip");
  else if (key === "u" || key === "U") action = () => answer("unsure");
  else if (key === "Backspace") action = back;
  else if (key === "Escape") action = pause;
  else if (/^[a-z?]$/i.test(key) || key.startsWith("Arrow")) action = () => {}; // no overlay toggles mid-walk
  if (!action) return;
  event.preventDefault();
  event.stopImmediatePropagation();
  action();
}

// --- against a reference -----------------------------------------------------------------------

function parseCodes(text) {
  const codes = {};
  for (const item of text.split(",").map((t) => t.trim()).filter(Boolean)) {
    const [key, value = ""] = item.split("=");
    if (!key.trim()) throw new Error(`codes: "${item}" is not CODE=CLASS`);
    codes[key.trim()] = value.trim() || null;
  }
  return Object.keys(codes).length ? codes : undefined;
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

async function compare(reference) {
  const s = server();
  const job = $("#validate-job").value;
  if (!job) return notify("finish an export first", "error");
  const codes = parseCodes($("#validate-codes").value);
  const report = await withSession(s, (id) => s.compareReference(job, { ...reference, codes, session: id }));
  $("#validate-report").replaceChildren(renderReport(report, {}));
}

async function compareFile(file) {
  if (file.size > MAX_UPLOAD_BYTES) {
    throw new Error(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; the page sends at most 6 MB: use python -m web_tool.validate report`);
  }
  if (/\.(geo)?json$/i.test(file.name)) {
    const points = JSON.parse(await file.text());
    return compare({ points, property: $("#validate-property").value.trim() || "class" });
  }
  return compare({ raster: base64(await file.arrayBuffer()) });
}

// --- set-up ------------------------------------------------------------------------------------

function update() {
  const offered = Boolean(server()?.offers("POST /jobs/x/samples"));
  $("#validate-section").hidden = !offered;
  if (offered && $("#validate-section").open) refreshJobs().catch((err) => notify(errorText(err), "error"));
}

function init() {
  getMap().createPane("validation").style.zIndex = 480;
  $("#validate-section").addEventListener("toggle", update);
  $("#validate-refresh").addEventListener("click", (e) => withBusy(e.currentTarget, refreshJobs));
  $("#validate-job").addEventListener("change", () => refreshSamples().catch((err) => notify(errorText(err), "error")));
  $("#validate-new").addEventListener("submit", (e) => {
    e.preventDefault();
    withBusy(e.submitter, () => newSample(e.currentTarget));
  });
  $("#validate-skip").addEventListener("click", () => answer("skip"));
  $("#validate-unsure").addEventListener("click", () => answer("unsure"));
  $("#validate-back").addEventListener("click", () => back().catch((err) => notify(errorText(err), "error")));
  $("#validate-pause").addEventListener("click", pause);
  $("#validate-labels").addEventListener("click", (e) => withBusy(e.currentTarget, () => compare({ labels: true })));
  $("#validate-file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (file) withBusy(null, () => compareFile(file));
  });
  document.addEventListener("keydown", onKey, true);
  on("server-selected", update);
  update();
}

// main.js builds the map and announces the dataset once the servers have answered
let started = false;
on("dataset", () => {
  if (!started) {
    started = true;
    init();
  }
});
