"""The code's shape, checked: layers import one way, no import cycle, and every URL a page
links to is built by app/render/urls.py."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

from tests.support import url_module_paths

APP = Path(__file__).resolve().parents[1] / "app"

# A layer may import the ones listed after it, never the ones before.
LAYERS = ("http", "pages", "model", "render", "bmdb")


def _imports() -> dict[str, set[str]]:
    """module -> the app modules it imports (at any depth of its code)."""
    modules = {}
    for path in APP.rglob("*.py"):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app"):
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    found.add(candidate if candidate in modules else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("app")}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else None


def test_no_page_imports_another_page():
    """Page modules are views side by side: what two pages share lives below them."""
    shared = sorted(
        (module, dependency)
        for module, dependencies in _imports().items()
        for dependency in dependencies
        if _layer(module) == "pages" and _layer(dependency) == "pages"
    )
    assert shared == []


def test_every_page_module_is_a_view():
    """app/pages holds only modules with routes; anything else belongs below them."""
    for path in (APP / "pages").glob("*.py"):
        if path.name != "__init__.py":
            assert "router = APIRouter()" in path.read_text(), path.name


def test_pages_get_the_app_state_through_dependencies():
    """Handlers name what they need (app/deps.py); none reaches into request.app.state."""
    for path in (APP / "pages").glob("*.py"):
        assert "app.state" not in path.read_text(), path.name


def test_no_import_cycle():
    graph = _imports()
    visiting, done, cycles = set(), set(), []

    def visit(module: str, path: list[str]) -> None:
        if module in visiting:
            cycles.append(path[path.index(module) :])
            return
        if module in done:
            return
        visiting.add(module)
        for dependency in sorted(graph[module]):
            visit(dependency, [*path, dependency])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert cycles == []


def test_layers_import_downwards_only():
    upward = [
        (module, dependency)
        for module, dependencies in _imports().items()
        for dependency in dependencies
        if _layer(module) and _layer(dependency)
        and LAYERS.index(_layer(dependency)) < LAYERS.index(_layer(module))
    ]
    assert upward == []


def _route_paths() -> set[str]:
    """The path of every route the app serves: its own (the OpenAPI document, /static,
    /metrics) and those of every page module's router."""
    from fastapi import APIRouter

    from app.main import create_app

    paths = {route.path for route in create_app().routes if hasattr(route, "path")}
    for module in pkgutil.iter_modules([str(APP / "pages")]):
        router = getattr(importlib.import_module(f"app.pages.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            paths |= {route.path for route in router.routes}
    return paths


def test_every_route_is_declared_with_a_path_of_the_url_module():
    assert _route_paths() - url_module_paths() == set()


def _spelling(path: str) -> re.Pattern[str]:
    """What a string spelling a URL of this route starts with: the path up to its first
    parameter, then (unless that ends with "/") the end, a "/", "?" or "#". The list's
    "/" only with a query or fragment: alone, it is also every path's separator."""
    fixed = path.split("{")[0]
    if fixed == "/":
        return re.compile(r"/[?#]")
    return re.compile(re.escape(fixed) + ("" if fixed.endswith("/") else r"(?:$|[/?#])"))


def _code_strings(path: Path) -> list[str]:
    """The string constants of a module's code (f-string parts too), docstrings aside."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_page_url_is_spelled_outside_the_url_module():
    literal = re.compile(r"""(?:href|action|hx-get|hx-post|src)="/""")
    for template in [*APP.glob("templates/*.html"), *APP.glob("partials/*.html")]:
        assert not literal.search(template.read_text()), template.name
    spellings = [_spelling(path) for path in url_module_paths()]
    for path in APP.rglob("*.py"):
        if path == APP / "render" / "urls.py" or "demo" in path.parts:
            continue
        spelled = [s for s in _code_strings(path) if any(p.match(s) for p in spellings)]
        assert spelled == [], path


MAX_HANDLER_LINES = 40


def test_page_handlers_fit_on_a_screen():
    """A handler parses its input, calls one loader, builds the page model and responds:
    anything longer belongs in app/model or app/bmdb."""
    long = []
    for path in (APP / "pages").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            routed = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "attr", "") in ("get", "post")
                for d in node.decorator_list
            )
            if routed and node.end_lineno - node.lineno + 1 > MAX_HANDLER_LINES:
                long.append(f"{path.name}:{node.name}")
    assert long == []


def test_the_stylesheet_closes_every_block_it_opens():
    """A brace lost in a merge silently drops every rule after it (the list's one-line rows
    went once): each block of webug.css is closed, and no more."""
    css = re.sub(r"/\*.*?\*/", "", (APP / "static" / "webug.css").read_text(), flags=re.S)
    depth = 0
    for char in css:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0, f"{depth} block(s) left open"
