// A pipeline's steps as a drawing (pure: no DOM, no Firebase, so tests run it under plain Node):
// layers by `after`, each step's children in words, the pipeline's step counts in words.

/**
 * Steps in layers: a step's layer is one more than the deepest step it comes after (roots: 0),
 * each layer in the pipeline's own `order` (docs/pipelines.md) and then by name.
 */
export function layers(steps, order = []) {
  const depth = new Map();
  const visiting = new Set();
  const of = (name) => {
    if (depth.has(name)) return depth.get(name);
    if (visiting.has(name)) return 0; // a cycle cannot be submitted; draw it flat rather than loop
    visiting.add(name);
    const after = (steps[name]?.after || []).filter((a) => a in steps);
    const d = after.length ? 1 + Math.max(...after.map(of)) : 0;
    visiting.delete(name);
    depth.set(name, d);
    return d;
  };
  const rank = new Map(order.map((n, i) => [n, i]));
  const names = Object.keys(steps).sort((a, b) => (rank.get(a) ?? Infinity) - (rank.get(b) ?? Infinity) || a.localeCompare(b));
  const out = [];
  for (const name of names) (out[of(name)] ||= []).push(name);
  return Array.from(out, (l) => l || []);
}

/** Every `after` edge between steps that exist: [from, to] (from runs first). */
export function edges(steps) {
  const out = [];
  for (const [name, s] of Object.entries(steps)) {
    for (const a of s.after || []) if (a in steps) out.push([a, name]);
  }
  return out;
}

/**
 * A fan-out step's children in words ("" for a step that spawned none). Once its fan-in ended it the
 * pipeline document holds the outcome; while it waits, `live` is what the console counted itself.
 */
export function childrenText(step, live) {
  if (step?.children == null) return "";
  const n = step.children;
  if (step.children_succeeded != null) {
    return `${n} children: ${step.children_succeeded} succeeded, ${step.children_failed ?? 0} failed`;
  }
  if (live) return `${n} children: ${live.ended} ended, ${live.succeeded} succeeded`;
  return `${n} children`;
}

const ORDER = ["succeeded", "running", "waiting", "queued", "retrying", "failed", "dead_lettered", "cancelled", "skipped"];

/** The pipeline's `counts` in words: "2 of 4 succeeded, 1 running, 1 queued". */
export function countsText(counts) {
  if (!counts) return "";
  const total = counts.total ?? ORDER.reduce((n, k) => n + (counts[k] || 0), 0);
  const parts = ORDER.filter((k) => k !== "succeeded" && counts[k]).map((k) => `${counts[k]} ${k.replace("_", " ")}`);
  return [`${counts.succeeded || 0} of ${total} succeeded`, ...parts].join(", ");
}
