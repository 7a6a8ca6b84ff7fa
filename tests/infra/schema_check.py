"""Checks every argument a `.tf` file sets against the pinned provider's own schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.infra.tfmodel import MARKERS, Module, is_block_list, unquote

SCHEMA_FILE = Path(__file__).resolve().parent / "provider_schema.json"

# Terraform's own meta-arguments, valid at the top of any resource or data block.
META = {"count", "for_each", "depends_on", "provider", "lifecycle"}
LIFECYCLE = {
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
    "precondition",
    "postcondition",
}
DYNAMIC = {"for_each", "iterator", "labels", "content"}


def load_schema(path: Path = SCHEMA_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _check(raw: dict[str, Any], node: dict[str, Any], where: str, top: bool) -> list[str]:
    problems: list[str] = []
    for key, value in raw.items():
        if key in MARKERS:
            continue
        if top and key in META:
            if key == "lifecycle":
                for block in value if is_block_list(value) else []:
                    problems += [
                        f"{where}: lifecycle has no {k!r}" for k in block if k not in MARKERS and k not in LIFECYCLE
                    ]
            continue
        if key == "dynamic":
            for dyn in value:
                for label, inner in dyn.items():
                    if label in MARKERS:
                        continue
                    name = unquote(label)
                    if name not in node["blocks"]:
                        problems.append(f"{where}: dynamic {name!r} is not a block of the provider schema")
                        continue
                    problems += [
                        f"{where}.{name}: dynamic has no {k!r}" for k in inner if k not in MARKERS and k not in DYNAMIC
                    ]
                    for content in inner.get("content", []):
                        problems += _check(content, node["blocks"][name], f"{where}.{name}", False)
            continue
        if is_block_list(value):
            if key not in node["blocks"]:
                hint = " (it is an attribute: write `=`)" if key in node["attributes"] else ""
                problems.append(f"{where}: unknown block {key!r}{hint}")
                continue
            for block in value:
                problems += _check(block, node["blocks"][key], f"{where}.{key}", False)
        elif key not in node["attributes"]:
            hint = " (it is a block: drop the `=`)" if key in node["blocks"] else ""
            problems.append(f"{where}: unknown argument {key!r}{hint}")
    return problems


def check_module(module: Module, schema: dict[str, Any]) -> list[str]:
    """Every problem with the arguments of `module`'s resources and data sources."""
    problems: list[str] = []
    for kind, table in (("resource", module.resources), ("data", module.data)):
        known = schema.get(kind, {})
        for (rtype, name), body in sorted(table.items()):
            where = f"{module.name}: {'data.' if kind == 'data' else ''}{rtype}.{name}"
            if rtype not in known:
                problems.append(f"{where}: {kind} type not in the allow-list of the pinned provider")
                continue
            problems += _check(body.raw, known[rtype], where, True)
    return problems


def pinned_versions(module: Module) -> list[tuple[str, str]]:
    """(source, version) of every google provider requirement in the module."""
    out = []
    for tf in module.terraform:
        for req in tf.blocks("required_providers"):
            google = req.attr("google")
            if google:
                out.append((google.get("source", ""), google.get("version", "")))
    return out
