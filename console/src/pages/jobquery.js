// The job list's (and the pipelines list's) Firestore queries as plain data, without the SDK: jobs.js
// and features/pipelines.js build them from this, and tests/infra/test_capacity.py runs it under Node
// to hold them to jobrelay/indexes.py.
// created_at grows with time, so an index over every job by it is a hot range (docs/capacity.md):
// an owner's list is one query on the owner's own range, everyone's runs once per index shard `ix`
// (the config's index_shards) and the pages are merged here, newest first.

export const LABEL = /^([a-z][a-z0-9_-]{0,62})=(.{1,256})$/;
export const NEWEST_FIRST = [["created_at", "desc"], ["id", "desc"]];

/**
 * The queries of one page: [{filters: [[field, op, value]], orders, after, limit}]. `after` is the
 * last row of the page before ([created_at, id], or null); each query reads one more row than a
 * page, so a merged page longer than `size` says an older page exists.
 */
export function plan(f, shards, after = null) {
  const base = [];
  if (f.status) base.push(["status", "==", f.status]);
  if (f.type) base.push(["type", "==", f.type]);
  if (f.label) {
    const m = LABEL.exec(f.label);
    if (!m) throw new Error("a label filter is key=value (a lower-case key of letters, digits, _ or -)");
    base.push([`labels.${m[1]}`, "==", m[2]]);
  }
  if (!(Number.isInteger(shards) && shards > 0)) throw new Error(`the console's config has no index_shards (${shards})`);
  const firsts = f.owner ? [["owner", "==", f.owner]] : Array.from({ length: shards }, (_, k) => ["ix", "==", k]);
  return firsts.map((first) => ({ filters: [first, ...base], orders: NEWEST_FIRST, after, limit: f.size + 1 }));
}

/** The pipelines page's queries: the newest `size` of each index shard (merged as the jobs are). */
export function pipelinePlan(shards, size) {
  if (!(Number.isInteger(shards) && shards > 0)) throw new Error(`the console's config has no index_shards (${shards})`);
  return Array.from({ length: shards }, (_, k) => ({ filters: [["ix", "==", k]], orders: NEWEST_FIRST, after: null, limit: size }));
}

function seconds(t) {
  // A Firestore Timestamp ({seconds, nanoseconds}), or a Date / millisecond number in tests.
  if (t && typeof t.seconds === "number") return [t.seconds, t.nanoseconds || 0];
  const ms = t instanceof Date ? t.getTime() : Number(t);
  return [Math.floor(ms / 1000), (ms % 1000) * 1e6];
}

/** Compares two rows ({created_at, id}) in the queries' order: newest first, then id descending. */
export function newestFirst(a, b) {
  const [as, an] = seconds(a.created_at);
  const [bs, bn] = seconds(b.created_at);
  if (as !== bs) return bs - as;
  if (an !== bn) return bn - an;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** One page from every query's rows: merged newest first, `size` of them, and whether more exist. */
export function merge(lists, size, rowOf = (x) => x) {
  // Each item's sort key is read once (a snapshot's get() is not free), then compared as numbers.
  const keyed = lists.flat().map((x) => {
    const r = rowOf(x);
    return [...seconds(r.created_at), r.id, x];
  });
  keyed.sort((a, b) => b[0] - a[0] || b[1] - a[1] || (a[2] < b[2] ? 1 : a[2] > b[2] ? -1 : 0));
  return { rows: keyed.slice(0, size).map((k) => k[3]), more: keyed.length > size };
}
