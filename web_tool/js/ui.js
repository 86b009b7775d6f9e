// Small DOM helpers: build elements without innerHTML, show messages, mark buttons busy.
import { recall, rememberMessage } from "./saved.js";

/** el("button", {class: "x", onclick: f}, "text", child) — text is always set as textContent. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

const MAX_MESSAGES = 40;
let toastTimer = null;

/** Show `text` in the message log and in the toast over the map. kind: info | ok | error. */
export function notify(text, kind = "info") {
  const message = String(text || (kind === "error" ? "unknown error" : ""));
  const time = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  logMessage({ time, text: message, kind });
  rememberMessage({ time, text: message, kind });
  const toast = $("#toast");
  if (toast) {
    toast.textContent = message;
    toast.className = `toast toast-${kind}`;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (toast.hidden = true), kind === "error" ? 12000 : 5000);
  }
}

function logMessage({ time, text, kind }) {
  const log = $("#messages");
  if (!log) return;
  log.prepend(el("li", { class: `msg msg-${kind}` }, el("time", {}, time), " ", text));
  while (log.children.length > MAX_MESSAGES) log.lastElementChild.remove();
}

/** The message log from before a reload, oldest first. */
export function restoreMessages() {
  recall("ui.messages", []).slice().reverse().forEach((m) => m && logMessage(m));
}

/** The readable text of any thrown value (ApiError messages already name the server). */
export function errorText(err) {
  if (!err) return "unknown error";
  if (typeof err === "string") return err;
  return err.message || String(err);
}

/** Run `task` with `button` disabled and spinning; its error is shown, never thrown. */
export async function withBusy(button, task) {
  if (button) {
    button.disabled = true;
    button.classList.add("busy");
    button.setAttribute("aria-busy", "true");
  }
  try {
    return await task();
  } catch (err) {
    notify(errorText(err), "error");
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.classList.remove("busy");
      button.removeAttribute("aria-busy");
    }
  }
}

/** Escape-free number formatting for readouts. */
export function fmt(value, digits = 2) {
  return Number.isFinite(value) ? value.toFixed(digits) : "–";
}
