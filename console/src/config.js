// The console's configuration: /console/config.json, which the API answers (in the cloud through the
// Hosting rewrite to it). {envs: [{name, project, served, api, console, firebase, muscle_concurrency,
// promotes_to}], emulator: {auth, firestore, auth_project} | null, muscle: {total_slots}, index_shards}
// (index_shards: how many queries list everyone's jobs, jobrelay/indexes.py SHARDS).

export async function loadConfig() {
  const resp = await fetch("config.json", { cache: "no-store" });
  if (!resp.ok) throw new Error(`cannot load the console's configuration (config.json: HTTP ${resp.status})`);
  const cfg = await resp.json();
  if (!Array.isArray(cfg.envs) || !cfg.envs.some((e) => e.served)) {
    throw new Error("the configuration names no env this deployment serves");
  }
  return cfg;
}

/** The env's record in the configuration, or undefined. */
export function envOf(cfg, name) {
  return cfg.envs.find((e) => e.name === name);
}
