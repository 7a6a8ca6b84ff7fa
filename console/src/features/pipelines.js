// Pipelines (docs/pipelines.md) as the console reads them: the env's newest `pipelines` documents,
// live (the rules let an admin list them), and the children of a waiting fan-out step counted with
// two aggregation queries on `jobs` (index parent_id, status), since the pipeline document holds a
// fan-out's outcome only once its fan-in ends it. One pipeline is watched with @jobrelay/client's
// watchPipeline; cancel and retry go through the API (the client's cancelPipeline / retryPipeline).

import { FINAL_STATUSES } from "@jobrelay/client";
import { collection, getCountFromServer, limit, onSnapshot, orderBy, query, where } from "firebase/firestore";

export const STATUSES = ["running", "succeeded", "failed", "cancelled"];

/** The newest pipelines (of one status, or all), live; the order the API's list and its indexes use. */
export function watchList(db, { status, size = 50 }, onRows, onError) {
  const q = query(collection(db, "pipelines"), ...(status ? [where("status", "==", status)] : []),
    orderBy("created_at", "desc"), orderBy("id", "desc"), limit(size));
  return onSnapshot(q, (snap) => onRows(snap.docs.map((d) => ({ id: d.id, ...d.data() }))), onError);
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
