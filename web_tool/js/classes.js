// The classes panel: name, colour, weight (→ /predPatch `weights`) and corrections since the
// last retrain, per class; the active class is the one corrections label.
import { state, emit, anyOffers, serversOffering } from "./state.js";
import { el, $, notify, withBusy, errorText } from "./ui.js";
import { withSession, sessionFor, currentSession } from "./sessions.js";
import { recall, remember, workKey } from "./saved.js";

const DEFAULT_WEIGHT = 1;

/** Take the classes of `dataset` (GET /datasets), with the colours and weights the user gave them. */
export function setClasses(classes) {
  state.classes = classes.map(newClass);
  state.activeClass = 0;
  renderClasses();
}

function newClass(c) {
  const kept = state.dataset && recall(["datasets", state.dataset.name, "classes", c.name]);
  return { name: c.name, color: normaliseColor(kept?.color || c.color),
    weight: Number.isFinite(kept?.weight) ? kept.weight : DEFAULT_WEIGHT, corrections: 0, pixels: 0 };
}

function rememberClass(c) {
  if (state.dataset) remember(["datasets", state.dataset.name, "classes", c.name], { color: c.color, weight: c.weight });
}

/** The session's classes on `server`: the ones it added (before a reload) join the list; with
 *  `replace`, classes it no longer has leave it (after a reset, back to the base model's). */
export async function syncClassesWithSession(server, replace = false) {
  if (!server?.offers("GET /sessions/x")) return;
  try {
    const info = await withSession(server, (session) => server.sessionInfo(session));
    const theirs = info.classes || [];
    const extra = theirs.slice(state.classes.length);
    const fewer = replace && theirs.length && theirs.length < state.classes.length;
    if (!extra.length && !fewer) return;
    if (fewer) state.classes = state.classes.slice(0, theirs.length);
    state.classes.push(...extra.map(newClass));
    state.activeClass = Math.min(state.activeClass, state.classes.length - 1);
    renderClasses();
    emit("classes-changed");
  } catch (err) {
    notify(errorText(err), "error");
  }
}

/** Start each server's session now (POST /sessions), so its id is kept from the first moment. */
export function startSessions() {
  return Promise.allSettled(state.servers.map((s) => sessionFor(s).catch((err) => notify(errorText(err), "error"))));
}

/** "#00f" → "#0000ff" (colour inputs only take 6 digits). */
function normaliseColor(color) {
  const c = String(color || "#888888").trim();
  if (/^#[0-9a-f]{3}$/i.test(c)) return `#${[...c.slice(1)].map((d) => d + d).join("")}`.toLowerCase();
  return /^#[0-9a-f]{6}$/i.test(c) ? c.toLowerCase() : "#888888";
}

export const weights = () => state.classes.map((c) => c.weight);
export const classesBody = () => state.classes.map(({ name, color }) => ({ name, color }));

export function setActiveClass(index) {
  if (index < 0 || index >= state.classes.length) return;
  state.activeClass = index;
  const radio = $(`#class-${index}`);
  if (radio) radio.checked = true;
  emit("active-class", index);
}

// Counts since the last retrain: the session's counts (from the server, per class) less those it had
// at the last retrain (the *baseline*, remembered with the session's work across reloads).
let serverCounts = {}; // class index → {corrections, pixels}, all the session's corrections
const ZERO = { corrections: 0, pixels: 0 };

const baselineKey = () => {
  const s = state.servers[state.selected];
  return ["work", workKey(s, currentSession(s)), "baseline", state.dataset?.name || ""];
};

/** The server's counts per class ({"0": {corrections, pixels}}, from GET /corrections). */
export function setServerCounts(counts) {
  serverCounts = counts || {};
  updateCounts();
}

/** A retrain happened: counting starts afresh; → the baseline it replaces (for an undo). */
export function markRetrained() {
  const previous = recall(baselineKey(), {});
  remember(baselineKey(), serverCounts);
  updateCounts();
  return previous;
}

/** Back to `baseline` (an undone retrain's), or to nothing (a reset). */
export function restoreBaseline(baseline) {
  remember(baselineKey(), baseline || {});
  updateCounts();
}

function updateCounts() {
  const baseline = recall(baselineKey(), {});
  state.classes.forEach((c, i) => {
    const now = serverCounts[String(i)] || ZERO;
    const then = baseline[String(i)] || ZERO;
    c.corrections = Math.max(0, now.corrections - then.corrections);
    c.pixels = Math.max(0, now.pixels - then.pixels);
    const badge = $(`#class-count-${i}`);
    if (!badge) return;
    badge.textContent = String(c.corrections);
    badge.title = `${c.corrections} correction(s), ${c.pixels} pixel(s) since the last retrain`;
    badge.classList.toggle("zero", c.corrections === 0);
  });
}

let rerunTimer = null;
/** A colour or weight changed: tiles re-render now; the squares recolour (or re-run, for weights). */
function changedSoon(what) {
  clearTimeout(rerunTimer);
  rerunTimer = setTimeout(() => {
    emit("classes-changed");
    emit(what);
  }, 350);
}

function classRow(c, i) {
  const id = `class-${i}`;
  const weightOut = el("output", { class: "weight-value", for: `weight-${i}` }, c.weight.toFixed(2));
  return el(
    "li",
    { class: "class-row" },
    el("input", {
      type: "radio",
      name: "active-class",
      id,
      checked: i === state.activeClass,
      onchange: () => setActiveClass(i),
    }),
    el("input", {
      type: "color",
      class: "class-color",
      value: c.color,
      "aria-label": `colour of ${c.name}`,
      title: "class colour",
      oninput: (e) => {
        c.color = e.target.value;
        rememberClass(c);
        changedSoon("colors-changed");
      },
    }),
    el("label", { for: id, class: "class-name", title: i < 9 ? `key ${i + 1}` : "" }, c.name),
    el("input", {
      type: "range",
      id: `weight-${i}`,
      class: "class-weight",
      min: "0",
      max: "2",
      step: "0.05",
      value: String(c.weight),
      "aria-label": `weight of ${c.name}`,
      title: "weight: multiplies this class's probability before the colours are drawn",
      oninput: (e) => {
        c.weight = Number(e.target.value);
        weightOut.textContent = c.weight.toFixed(2);
        rememberClass(c);
        changedSoon("weights-changed");
      },
    }),
    weightOut,
    el("span", { class: "count zero", id: `class-count-${i}`, "aria-label": `corrections of ${c.name}` }, "0"),
  );
}

export function renderClasses() {
  const list = $("#class-list");
  list.replaceChildren(...state.classes.map(classRow));
  updateCounts();
  $("#add-class").hidden = !anyOffers("POST /addClass");
}

/** The "add class" form: asks every server that can to grow its model by one class. */
export function initClasses() {
  const form = $("#add-class");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.elements["new-class-name"].value.trim();
    const color = form.elements["new-class-color"].value;
    if (!name) return notify("give the new class a name", "error");
    if (state.classes.some((c) => c.name === name)) return notify(`there is already a class named ${name}`, "error");
    await withBusy(form.querySelector("button"), async () => {
      const results = await Promise.allSettled(
        serversOffering("POST /addClass").map((s) => withSession(s, (session) => s.addClass({ session, name, color }))),
      );
      const failed = results.filter((r) => r.status === "rejected");
      failed.forEach((r) => notify(errorText(r.reason), "error"));
      if (failed.length === results.length) return;
      state.classes.push(newClass({ name, color }));
      rememberClass(state.classes.at(-1));
      renderClasses();
      setActiveClass(state.classes.length - 1);
      emit("model-changed");
      emit("classes-changed");
      form.reset();
      notify(`added class ${name}`, "ok");
    });
  });
}
