// Pipelines (docs/pipelines.md) as the console reads them: the env's newest `pipelines` documents,
// live (the rules let an admin list them; one listener per index shard, merged: docs/capacity.md), and the children of a waiting fan-out step counted with
// two aggregation queries on `jobs` (index parent_id, status), since the pipeline document holds a
// fan-out's outcome only once its fan-in ends it. One pipeline is watched with @jobrelay/client's
// watchPipeline; cancel and retry go through the API (the client's cancelPipeline / retryPipeline).

import { FINAL_STATUSES } from "@jobrelay/client";
import { collection, getCountFromServer, limit, onSnapshot, orderBy, query, where } from "firebase/firestore";

import { merge, pipelinePlan } from "../pages/jobquery.js";

export const STATUSES = ["running", "succeeded", "failed", "cancelled"];

/** The newest `size` pipelines (of one status, or all), live: one listener per index shard (created_at
 * grows with time, so one index over every pipeline by it would be a hot range), merged newest first. */
export function watchList(db, { status, size = 50, shards }, onRows, onError) {
  const plans = pipelinePlan(shards, size);
  const lists = plans.map(() => null);
  const stops = plans.map((p, k) => onSnapshot(query(collection(db, "pipelines"),
    ...p.filters.map(([field, op, value]) => where(field, op, value)),
    ...(status ? [where("status", "==", status)] : []),
    ...p.orders.map(([field, dir]) => orderBy(field, dir)), limit(p.limit)), (snap) => {
    lists[k] = snap.docs.map((d) => ({ id: d.id, ...d.data() }));
    if (lists.every((l) => l !== null)) onRows(merge(lists, size).rows);
  }, onError));
  return () => stops.forEach((s) => s());
}

/** {ended, succeeded} of the children of fan-out job `parentId`. */
export async function childCounts(db, parentId) {
  const children = collection(db, "jobs");
  const [ended, succeeded] = await Promise.all([
    getCountFromServer(query(children, where("parent_id", "==", parentId), where("status", "in", [...FINAL_STATUSES]))),
    getCountFromServer(query(children, where("parent_id", "==", parentId), where("status", "==", "succeeded"))),
  ]);
  return { ended: ended.data().count, succeeded: succeeded.data().count };
}
