// What the page remembers across a reload, in one localStorage entry. Structured so that each
// piece says what it belongs to: page-wide choices (`ui`), per dataset (`datasets[name]`: view,
// classes' colours and weights), per server and session (`work[server|session]`: the last
// prediction, the retrain report, counts since the last retrain). A session id therefore always
// travels with the work done in it; a new session starts with no work.
const KEY = "landcover.page.v1";
const WRITE_DELAY_MS = 250;
const MAX_MESSAGES = 40;

let data = read();
let timer = null;

function read() {
  try {
    const parsed = JSON.parse(localStorage.getItem(KEY) || "{}");
    return parsed && typeof parsed === "object" ? parsed : {};
  } catch {
    return {}; // storage disabled or a broken entry: start afresh
  }
}

function writeSoon() {
  clearTimeout(timer);
  timer = setTimeout(flush, WRITE_DELAY_MS);
}

/** Write now (before a reload, in tests). */
export function flush() {
  clearTimeout(timer);
  try {
    localStorage.setItem(KEY, JSON.stringify(data));
  } catch {
    /* storage disabled or full: the page still works, it just forgets */
  }
}
window.addEventListener("pagehide", flush);

/** The value at `path` ("ui.patchPixels", ["datasets", name, "view"]), or `fallback`. */
export function recall(path, fallback = undefined) {
  let node = data;
  for (const key of toKeys(path)) {
    if (!node || typeof node !== "object" || !(key in node)) return fallback;
    node = node[key];
  }
  return node === undefined ? fallback : node;
}

/** Remember `value` at `path` (undefined forgets it). */
export function remember(path, value) {
  const keys = toKeys(path);
  let node = data;
  for (const key of keys.slice(0, -1)) {
    if (!node[key] || typeof node[key] !== "object") node[key] = {};
    node = node[key];
  }
  if (value === undefined) delete node[keys.at(-1)];
  else node[keys.at(-1)] = value;
  writeSoon();
}

const toKeys = (path) => (Array.isArray(path) ? path.map(String) : String(path).split("."));

/** The key of the work done in `session` on `server` (see the module comment). */
export const workKey = (server, session) => `${server.url}|${session || "default"}`;

export function rememberMessage(entry) {
  const log = recall("ui.messages", []);
  remember("ui.messages", [entry, ...log].slice(0, MAX_MESSAGES));
}
