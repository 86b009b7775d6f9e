// Checkpoints: save the session's model and corrections under a name, list them, load one.
// Names are user input: they only ever reach the page as textContent.
import { state, primary, on, emit } from "./state.js";
import { el, $, notify, withBusy, errorText } from "./ui.js";
import { withSession } from "./sessions.js";
import { rerunLast } from "./predict.js";
import { loadCorrections } from "./correct.js";
import { restoreBaseline, syncClassesWithSession } from "./classes.js";

/** Checkpoints live on the selected server (the one whose prediction the map shows). */
const server = () => state.servers[state.selected] || primary();

function formatTime(time) {
  if (time === "" || time === null || time === undefined) return "";
  const date = typeof time === "number" ? new Date(time * (time < 1e12 ? 1000 : 1)) : new Date(time);
  return Number.isNaN(date.getTime()) ? String(time) : date.toLocaleString();
}

async function refreshList() {
  const list = $("#checkpoint-list");
  const s = server();
  if (!s.offers("GET /checkpoints")) {
    list.replaceChildren();
    return;
  }
  try {
    const checkpoints = await s.listCheckpoints();
    list.replaceChildren(
      ...checkpoints.map((c) =>
        el(
          "li",
          { class: "checkpoint" },
          el(
            "span",
            { class: "checkpoint-text" },
            el("span", { class: "checkpoint-name" }, c.name || c.id),
            el(
              "span",
              { class: "muted" },
              [formatTime(c.time), c.corrections !== null ? `${c.corrections} corrections` : ""].filter(Boolean).join(" · "),
            ),
            el("span", { class: "checkpoint-id", title: "checkpoint id: the batch CLI's --checkpoint" }, `id ${c.id}`),
          ),
          s.offers("POST /doLoad")
            ? el("button", { type: "button", class: "small", "aria-label": `load checkpoint ${c.name || c.id}`, onclick: (e) => load(e.currentTarget, c) }, "Load")
            : null,
        ),
      ),
    );
    if (!checkpoints.length) list.replaceChildren(el("li", { class: "muted" }, "no checkpoints yet"));
  } catch (err) {
    list.replaceChildren(el("li", { class: "msg-error" }, errorText(err)));
  }
}

function load(button, checkpoint) {
  const s = server();
  return withBusy(button, async () => {
    const result = await withSession(s, (session) => s.loadCheckpoint({ checkpoint: checkpoint.id, session }));
    await syncClassesWithSession(s, true);
    restoreBaseline(null);
    emit("model-changed");
    await loadCorrections(true);
    notify(result.message ? `${s.name}: ${result.message}` : `loaded checkpoint ${checkpoint.name || checkpoint.id}`, "ok");
    await rerunLast();
  });
}

export function initCheckpoints() {
  const form = $("#checkpoint-form");
  const update = () => {
    const s = server();
    $("#checkpoint-section").hidden = !(s.offers("POST /checkpoints") || s.offers("GET /checkpoints"));
    form.hidden = !s.offers("POST /checkpoints");
    refreshList();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const s = server();
    const name = form.elements["checkpoint-name"].value.trim();
    withBusy(form.querySelector("button"), async () => {
      const id = await withSession(s, (session) => s.saveCheckpoint({ session, name: name || undefined }));
      notify(`${s.name}: saved checkpoint ${name || id}`, "ok");
      form.reset();
      await refreshList();
    });
  });
  $("#checkpoint-refresh").addEventListener("click", (e) => withBusy(e.currentTarget, refreshList));
  on("server-selected", update);
  update();
}
