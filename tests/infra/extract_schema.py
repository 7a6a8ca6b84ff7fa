"""Rebuild `provider_schema.json`: the arguments the pinned hashicorp/google provider accepts.

The allow-list the static tests check every `.tf` argument against comes from the provider's own
schema, as published in the prebuilt Terraform CDK bindings for that exact provider version (their
`package.json` names it: `cdktf.provider.version`). Each binding's `synthesizeAttributes()` and
`...ToTerraform()` functions list the settable arguments of a resource and of each nested block,
snake_case, exactly as Terraform spells them. The registry's documentation pages for the same version
were read alongside (see docs/adr/0010) and agree for every resource used here.

Run by hand when the provider pin moves (needs npm and the network to the npm registry):

    npm pack @cdktf/provider-google@16.12.1     # binds hashicorp/google 6.50.0
    tar xzf cdktf-provider-google-16.12.1.tgz
    python tests/infra/extract_schema.py package > tests/infra/provider_schema.json

Only the resource types `terraform/` uses (or is about to) are kept, to keep the file small.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

WANTED = {
    "google_artifact_registry_repository",
    "google_artifact_registry_repository_iam_member",
    "google_cloud_run_v2_service",
    "google_cloud_run_v2_service_iam_member",
    "google_cloud_scheduler_job",
    "google_cloud_tasks_queue",
    "google_cloudbuild_trigger",
    "google_compute_autoscaler",
    "google_compute_firewall",
    "google_compute_instance_group_manager",
    "google_compute_instance_template",
    "google_compute_network",
    "google_compute_router",
    "google_compute_router_nat",
    "google_compute_subnetwork",
    "google_eventarc_trigger",
    "google_firebaserules_release",
    "google_firebaserules_ruleset",
    "google_firestore_database",
    "google_firestore_field",
    "google_firestore_index",
    "google_logging_metric",
    "google_monitoring_alert_policy",
    "google_monitoring_dashboard",
    "google_monitoring_monitored_project",
    "google_project",
    "google_project_iam_member",
    "google_project_service",
    "google_pubsub_subscription",
    "google_pubsub_subscription_iam_member",
    "google_pubsub_topic",
    "google_pubsub_topic_iam_member",
    "google_service_account",
    "google_service_account_iam_member",
    "google_storage_bucket",
}

# `key: someFunction(`, `key: cdktf.listMapper(someFunction, true)(`, `key: cdktf.hashMapper(...)`
ENTRY = re.compile(r"^\s+(\w+): (?:cdktf\.(?:listMapper|hashMapper)\()?([\w.]+)", re.M)


def _body(js: str, start: int) -> str:
    """The text of the first `return { ... }` object inside the function or method at `start`."""
    end = js.find("\n}\n", start)
    i = js.find("return {", start, end)
    if i == -1:
        return ""
    j = js.find("};", i, end)
    return js[i:j]


def _tree(js: str, functions: dict[str, int], body: str) -> dict[str, Any]:
    attributes: list[str] = []
    blocks: dict[str, Any] = {}
    for key, fn in ENTRY.findall(body):
        if fn.startswith("cdktf.") or fn not in functions:
            attributes.append(key)
            continue
        fbody = _body(js, functions[fn])
        blocks[key] = _tree(js, functions, fbody)
    return {"attributes": sorted(set(attributes)), "blocks": dict(sorted(blocks.items()))}


def extract(package: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for js_path in sorted((package / "lib").glob("*/index.js")):
        js = js_path.read_text()
        m = re.search(r'\.tfResourceType = "(\w+)";', js)
        if not m or m.group(1) not in WANTED:
            continue
        kind = "data" if js_path.parent.name.startswith("data-") else "resource"
        functions = {f.group(1): f.start() for f in re.finditer(r"^function (\w+ToTerraform)\(struct\)", js, re.M)}
        start = js.index("synthesizeAttributes() {")
        out.setdefault(kind, {})[m.group(1)] = _tree(js, functions, _body(js, start))
    meta = json.loads((package / "package.json").read_text())["cdktf"]["provider"]
    return {"provider": meta, **out}


if __name__ == "__main__":
    json.dump(extract(Path(sys.argv[1])), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
