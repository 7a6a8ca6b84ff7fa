// Pipelines (issue 16), built to the contract on a server that may not serve them yet:
// `GET /v1/envs/{env}/pipelines` lists them, and each is a `pipelines/{id}` document that operators
// watch live: {name, status, owner, steps: {"<step>": {job_id, status, after?}}, created_at, ...}.
// `available` asks the server (a GET that writes nothing); without the route the console says
// "not available on this server".

import { collection, doc, limit, onSnapshot, orderBy, query, where } from "firebase/firestore";

import { merge, pipelinePlan } from "../pages/jobquery.js";

const known = new Map();

export async function available(api) {
  if (!known.has(api.env)) known.set(api.env, api.has("/pipelines").catch(() => false));
  return known.get(api.env);
}

/** The newest `size` pipelines, live: one listener per index shard (created_at grows with time, so
 * one index over every pipeline by it would be a hot range: docs/capacity.md), merged. */
export function watchList(db, shards, onRows, onError, size = 50) {
  const plans = pipelinePlan(shards, size);
  const lists = plans.map(() => null);
  const stops = plans.map((p, k) => onSnapshot(query(collection(db, "pipelines"),
    ...p.filters.map(([field, op, value]) => where(field, op, value)),
    ...p.orders.map(([field, dir]) => orderBy(field, dir)), limit(p.limit)), (snap) => {
    lists[k] = snap.docs.map((d) => ({ id: d.id, ...d.data() }));
    if (lists.every((l) => l !== null)) onRows(merge(lists, size).rows);
  }, onError));
  return () => stops.forEach((s) => s());
}

export function watchOne(db, id, onPipeline, onError) {
  return onSnapshot(doc(db, "pipelines", id), (snap) => onPipeline(snap.exists() ? { id: snap.id, ...snap.data() } : null), onError);
}

/** Steps in layers: a step's layer is one more than the deepest step it comes after (roots: 0). */
export function layers(steps) {
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
  const out = [];
  for (const name of Object.keys(steps).sort()) (out[of(name)] ||= []).push(name);
  return out.map((l) => l || []);
}
