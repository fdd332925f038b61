"""The package's layering: what imports what (function-level imports included)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ackd_bench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("ackd_bench"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ackd_bench"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]], within: str) -> list[str] | None:
    nodes = {n for n in graph if n.startswith(within)}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node] & nodes):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state and (found := visit(nxt, trail + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state and (found := visit(node, [])):
            return found
    return None


# The package's layers, bottom up: a module imports from its own layer or lower ones only, and no
# import (top-level, function-local or under TYPE_CHECKING: the walk sees them all) goes up.
# `home` sits with `errors`, which saves a bug's traceback there; `predictions` with the other
# file formats every part reads (`untrusted`, `models`' names); `results` above `data`, whose
# manifests a record cites; the leaderboard and the hub above the records they publish.
LAYERS = (
    ("__init__", "errors", "home", "resources", "provenance"),
    ("experiment", "models", "untrusted", "threads", "predictions"),
    ("methods", "data"),
    ("results",),
    ("leaderboard", "hub"),
    ("train",),
    ("harness",),
    ("cli",),
)


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    found = [i for i, layer in enumerate(LAYERS) if part in layer]
    assert found, f"{module}: in no layer of LAYERS; place it"
    return found[0]


def test_every_module_has_a_layer_and_no_import_goes_up():
    graph = _graph()
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                    if _layer(target) > _layer(module))
    assert upward == []


def test_the_package_has_no_import_cycle():
    assert _cycle(_graph(), "ackd_bench") is None


def test_methods_hold_losses_and_modules_only():
    graph = _graph()
    reaching_up = {(m, t) for m, targets in graph.items() if m.startswith("ackd_bench.methods")
                   for t in targets if t.startswith(("ackd_bench.train", "ackd_bench.harness", "ackd_bench.data"))}
    assert reaching_up == set()


def test_comments_cite_documents_that_ship():
    stale = [str(p) for p in PACKAGE.rglob("*.py") if "DESIGN section" in p.read_text()]
    assert stale == []
