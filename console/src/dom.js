// Small DOM helpers: elements from data (text is always set as text, never parsed as HTML), times.

/** h("a", {href, class, data: {x: 1}, on: {click}}, ...children): an element; children are nodes or text. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "data") Object.assign(el.dataset, value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "text") el.textContent = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export const $ = (id) => document.getElementById(id);

/** A Firestore Timestamp, an RFC 3339 string, or a Date, as a Date (null when absent). */
export function toDate(value) {
  if (value == null) return null;
  if (typeof value.toDate === "function") return value.toDate();
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "2026-11-25 10:04:05" in UTC: operators compare times across envs and logs, which are UTC. */
export function utc(value) {
  const d = toDate(value);
  return d ? d.toISOString().replace("T", " ").slice(0, 19) : "—";
}

export function ago(value, now = Date.now()) {
  const d = toDate(value);
  if (!d) return "—";
  return `${span((now - d.getTime()) / 1000)} ago`;
}

export function span(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

export function status(value) {
  return h("span", { class: "status", data: { status: value || "" }, text: (value || "—").replace("_", " ") });
}

/** A message in the page's live region (screen readers announce it). */
export function notice(text, kind = "info") {
  const el = $("notice");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = !text;
}

export function errorText(err) {
  if (!err) return "";
  const where = err.status ? `HTTP ${err.status} ${err.code}` : err.code || "error";
  return `${err.message || err} (${where})`;
}
