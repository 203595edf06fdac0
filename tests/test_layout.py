"""The house's shape: four rooms whose imports run one way, and no import cycle anywhere.

Read from the source (every `import`, at module level or inside a function), so a lazy import
that closes a loop counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"

# Who may import whom: web -> learning -> storage -> cnn, and the shared vocabulary at the top
# (settings, errors, schemas) below every room but the engine.
ROOMS = ("cnn", "storage", "learning", "web")
TOP = "top"
ALLOWED = {
    "cnn": {"cnn"},
    TOP: {TOP, "cnn"},
    "storage": {"storage", TOP, "cnn"},
    "learning": {"learning", "storage", TOP, "cnn"},
    "web": {"web", "learning", "storage", TOP, "cnn"},
}
ENGINE_MAY_IMPORT = {"numpy", "__future__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module this file imports, absolute (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # `from app.web import render` imports the module app.web.render
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in APP.rglob("*.py")}
    return {name: {m for m in imports(p) if m in files} for name, p in files.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else TOP


def test_rooms_import_only_downwards() -> None:
    wrong = [
        f"{module} ({room(module)}) imports {target} ({room(target)})"
        for module, targets in graph().items()
        for target in targets
        if room(target) not in ALLOWED[room(module)] and module != "app"
    ]
    assert wrong == []


def test_the_engine_imports_nothing_but_numpy_and_the_standard_library() -> None:
    import sys

    foreign = []
    for path in (APP / "cnn").rglob("*.py"):
        for module in imports(path):
            top = module.split(".")[0]
            if top in ("app", "") or top in sys.stdlib_module_names or top in ENGINE_MAY_IMPORT:
                continue
            foreign.append(f"{module_name(path)} imports {module}")
    assert foreign == []


def test_no_import_cycle() -> None:
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            # a package's __init__ importing its own submodules is not a cycle with them
            if node.startswith(target + "."):
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_at_most_a_handful_of_modules_at_the_top_of_app() -> None:
    top = sorted(p.stem for p in APP.glob("*.py") if p.stem != "__init__")
    assert top == ["errors", "schemas", "settings", "train_schemas"]
