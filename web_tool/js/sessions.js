// One session id per server, kept in localStorage so a reload continues the same session.
// A session id is a secret: whoever knows it owns the session. The page always makes its own
// (POST /sessions) and never uses the shared "default" one; only servers without POST /sessions
// (older ones) get no id.

import { notify } from "./ui.js";

const KEY = "landcover.session.";
const pending = new Map();

function stored(server) {
  try {
    return localStorage.getItem(KEY + server.url);
  } catch {
    return null; // storage disabled: a session per page load
  }
}

function store(server, id) {
  try {
    if (id) localStorage.setItem(KEY + server.url, id);
    else localStorage.removeItem(KEY + server.url);
  } catch {
    /* storage disabled */
  }
}

/** The server's session id for this browser (created on first use), or undefined. */
export async function sessionFor(server) {
  if (!server.offers("POST /sessions")) return undefined;
  const id = stored(server);
  if (id) return id;
  if (!pending.has(server)) {
    const creating = server.createSession().then((newId) => {
      store(server, newId);
      return newId;
    });
    pending.set(server, creating);
    creating.finally(() => pending.delete(server));
  }
  return pending.get(server);
}

export function currentSession(server) {
  return server.offers("POST /sessions") ? stored(server) || undefined : undefined;
}

export function setSession(server, id) {
  store(server, id);
}

/** Run `fn(sessionId)`; if the server no longer knows the stored session, start a new one once. */
export async function withSession(server, fn) {
  const id = await sessionFor(server);
  try {
    return await fn(id);
  } catch (err) {
    if (id && err.status === 404 && /unknown session/i.test(err.detail || "")) {
      store(server, null);
      const fresh = await sessionFor(server);
      notify(`${server.name}: the server no longer knows this page's session; started a new one`, "info");
      return fn(fresh);
    }
    throw err;
  }
}
