"""The `.tf` files under terraform/, parsed with python-hcl2 into something tests can query.

python-hcl2 (v7+) keeps HCL's own spelling: block labels and string literals come back quoted
(`'"google_pubsub_topic"'`, `'"180s"'`), expressions come back as `'${...}'`, nested blocks as lists
of dicts marked `__is_block__`, attribute objects as plain dicts. `Body` hides that: `.attr(name)`
gives the source text of an argument with the quoting removed, `.blocks(name)` the nested blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
INFRA = REPO / "infra"

MARKERS = ("__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__")


def unquote(value: Any) -> Any:
    """`'"x"'` -> `x`; `'${expr}'` -> `expr`; anything else unchanged."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            return value[1:-1]
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
    return value


def plain(value: Any) -> Any:
    """Deep `unquote` of a parsed object or tuple literal (keys and values)."""
    if isinstance(value, dict):
        return {unquote(k): plain(v) for k, v in value.items() if k not in MARKERS}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return unquote(value)


def is_block_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


@dataclass
class Body:
    """One resource, data source, module call or nested block."""

    raw: dict[str, Any]

    def names(self) -> list[str]:
        return [k for k in self.raw if k not in MARKERS]

    def has(self, name: str) -> bool:
        return name in self.raw

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.raw.get(name, default)
        if isinstance(value, dict) and not value.get("__is_block__"):
            return {unquote(k): unquote(v) for k, v in value.items() if k not in MARKERS}
        if isinstance(value, list) and not is_block_list(value):
            return [unquote(v) for v in value]
        return unquote(value)

    def blocks(self, name: str) -> list[Body]:
        value = self.raw.get(name, [])
        return [Body(v) for v in value] if is_block_list(value) else []

    def block(self, name: str) -> Body:
        found = self.blocks(name)
        if len(found) != 1:
            raise AssertionError(f"expected one {name!r} block, found {len(found)}")
        return found[0]

    def dynamic(self, name: str) -> list[Body]:
        """The `content` blocks of `dynamic "name"` blocks."""
        out: list[Body] = []
        for dyn in self.raw.get("dynamic", []):
            for label, inner in dyn.items():
                if label not in MARKERS and unquote(label) == name:
                    out.extend(Body(inner).blocks("content"))
        return out

    def dynamic_for_each(self, name: str) -> list[str]:
        return [
            unquote(inner.get("for_each"))
            for dyn in self.raw.get("dynamic", [])
            for label, inner in dyn.items()
            if label not in MARKERS and unquote(label) == name
        ]

    def comments(self) -> list[str]:
        return [c.get("value", "") for c in self.raw.get("__comments__", [])]


@dataclass
class Module:
    """Every `.tf` file of one directory."""

    path: Path
    resources: dict[tuple[str, str], Body] = field(default_factory=dict)
    data: dict[tuple[str, str], Body] = field(default_factory=dict)
    modules: dict[str, Body] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Body] = field(default_factory=dict)
    outputs: dict[str, Body] = field(default_factory=dict)
    terraform: list[Body] = field(default_factory=list)
    providers: dict[str, Body] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(TERRAFORM))

    def of_type(self, kind: str) -> dict[str, Body]:
        return {name: body for (t, name), body in self.resources.items() if t == kind}

    def one(self, kind: str, name: str) -> Body:
        try:
            return self.resources[(kind, name)]
        except KeyError:
            raise AssertionError(f"{self.name}: no resource {kind}.{name}") from None

    def local(self, name: str) -> Any:
        """A local's value, deep-unquoted (expressions stay as their source text)."""
        if name not in self.locals:
            raise AssertionError(f"{self.name}: no local {name!r}")
        return plain(self.locals[name])

    def files_read(self, expr: str) -> list[Path]:
        """The files an expression reads with file(...), `path.module` and locals substituted."""
        out: list[Path] = []
        for arg in re.findall(r'file\(\\?"([^"\\]+)\\?"\)', expr):
            for _ in range(5):  # locals may refer to locals
                arg = re.sub(r"\$\{local\.(\w+)\}", lambda m: str(self.local(m.group(1))), arg)
            arg = arg.replace("${path.module}", str(self.path))
            out.append(Path(arg).resolve())
        return out

    def decodes(self, local_name: str, file_name: str) -> bool:
        """Whether local `local_name` yamldecode/jsondecode-s the repo's infra/<file_name>."""
        expr = str(self.local(local_name))
        return bool(re.search(r"(yaml|json)decode\(file\(", expr)) and (INFRA / file_name) in self.files_read(expr)


def _labelled(items: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in items:
        for label, body in item.items():
            if label not in MARKERS:
                yield unquote(label), body


def parse_text(text: str, path: Path) -> dict[str, Any]:
    return hcl2.loads(text)  # type: ignore[no-any-return]


def load_module(directory: Path, texts: dict[str, str] | None = None) -> Module:
    """Parse every `.tf` file of `directory` (or the given {file name: text} instead)."""
    module = Module(path=directory)
    sources = texts if texts is not None else {p.name: p.read_text() for p in sorted(directory.glob("*.tf"))}
    for fname, text in sources.items():
        doc = parse_text(text, directory / fname)
        for kind, labelled in _labelled(doc.get("resource", [])):
            for name, body in labelled.items():
                if name not in MARKERS:
                    module.resources[(kind, unquote(name))] = Body(body)
        for kind, labelled in _labelled(doc.get("data", [])):
            for name, body in labelled.items():
                if name not in MARKERS:
                    module.data[(kind, unquote(name))] = Body(body)
        for name, body in _labelled(doc.get("module", [])):
            module.modules[name] = Body(body)
        for name, body in _labelled(doc.get("variable", [])):
            module.variables[name] = Body(body)
        for name, body in _labelled(doc.get("output", [])):
            module.outputs[name] = Body(body)
        for name, body in _labelled(doc.get("provider", [])):
            module.providers[name] = Body(body)
        for block in doc.get("locals", []):
            module.locals.update({k: v for k, v in block.items() if k not in MARKERS})
        module.terraform.extend(Body(b) for b in doc.get("terraform", []))
    return module


def all_modules() -> dict[str, Module]:
    """Every directory under terraform/ that holds `.tf` files, by path relative to terraform/."""
    dirs = sorted({p.parent for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts})
    return {str(d.relative_to(TERRAFORM)): load_module(d) for d in dirs}
