"""How the package's modules import each other, read from the source with ast (nothing is imported).

Every import of a skillscale module counts, at module level and inside functions: a cycle hidden
in a function-local import still ties the two modules together, and breaks as soon as either
import moves to the top. evaluate/tasks/ is left out: lm-eval loads those helpers by file path."""

import ast
import functools
import io
import sys
import tokenize
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "skillscale"
SKIP = PACKAGE / "evaluate" / "tasks"


@dataclass(frozen=True)
class Import:
    where: str  # path:line
    text: str  # the statement, on one line
    line: int
    end_line: int
    targets: tuple  # the skillscale modules it makes Python run (packages included)
    external: str | None  # a third-party top-level package, else None
    local: bool  # inside a function


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if SKIP not in p.parents}


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports(name: str, path: Path, known) -> list[Import]:
    """Every import statement of a module, with the skillscale modules it makes Python run.

    `import skillscale.a.b` runs skillscale.a's __init__ and then b; `from skillscale.a import b`
    runs b when b is a submodule, else only skillscale.a. A parent package the importing module
    sits in is left out when only implied: Python imported it before this module started."""
    source = path.read_text()
    tree, lines = ast.parse(source, str(path)), source.splitlines()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    own = set(ancestors(name))
    found = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(resolve(child, local))
            visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    def resolve(node, local):
        named, implied = [], []
        if isinstance(node, ast.Import):
            sources = [a.name for a in node.names]
            named += sources
        else:
            origin = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            sources = [origin]
            subs = [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in known]
            named += subs
            (implied if len(subs) == len(node.names) else named).append(origin)
        for s in named + implied[:]:
            implied += ancestors(s)
        ours = [s for s in named if s.split(".")[0] == "skillscale"]
        ours += [s for s in implied if s.split(".")[0] == "skillscale" and s not in own and s not in ours]
        outside = {s.split(".")[0] for s in sources} - {"skillscale"} - set(sys.stdlib_module_names) - {""}
        text = " ".join(" ".join(lines[node.lineno - 1 : node.end_lineno]).split())
        return Import(
            f"{path.relative_to(REPO)}:{node.lineno}",
            text,
            node.lineno,
            node.end_lineno,
            tuple(dict.fromkeys(t for t in ours if t != name)),
            min(outside, default=None),
            local,
        )

    visit(tree, False)
    return found


@functools.cache
def package_imports() -> dict[str, list[Import]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def graph():
    """module -> {module it imports: where (the first import statement that does)}."""
    edges = defaultdict(dict)
    for name, found in package_imports().items():
        edges[name]
        for imp in found:
            for target in imp.targets:
                edges[name].setdefault(target, imp.where)
    return edges


def strongly_connected(edges) -> list[list[str]]:
    """Tarjan's components, each in the order first reached."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component, key=index.get))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def shortest_path(edges, start, goal, within) -> list[str]:
    paths, seen = {start: [start]}, {start}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w in within and w not in seen:
                    seen.add(w)
                    paths[w] = paths[v] + [w]
                    if w == goal:
                        return paths[w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no path {start} -> {goal}")


def cycles(edges) -> list[list[str]]:
    """For each edge inside a component, the shortest cycle through it: together they cover the
    component, one line each, without listing every combination of a large one."""
    found = {}
    for component in strongly_connected(edges):
        if len(component) < 2:
            continue
        within = set(component)
        for u in component:
            for v in sorted(edges[u]):
                if v in within:
                    cycle = [u] + shortest_path(edges, v, u, within)
                    i = cycle.index(min(cycle[:-1]))
                    canonical = cycle[i:-1] + cycle[:i]
                    found.setdefault(tuple(canonical), canonical + [canonical[0]])
    return list(found.values())


def test_no_import_cycles():
    edges = graph()
    lines = [" -> ".join(c) + "  (" + ", ".join(edges[a][b] for a, b in zip(c, c[1:])) + ")" for c in cycles(edges)]
    if lines:
        pytest.fail(f"{len(lines)} import cycle(s) between skillscale modules:\n" + "\n".join(lines), pytrace=False)


def commented_lines(path: Path) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return {t.start[0] for t in tokens if t.type == tokenize.COMMENT}


def run_start(line: int, import_lines: set[int], blank: set[int]) -> int:
    """First line of the run of imports (blank lines between isort's groups allowed) that ends
    at `line`: one comment above a function's block of deferred imports covers the block."""
    while line - 1 in import_lines or (line - 1 in blank and line - 2 in import_lines):
        line -= 1
    return line


def test_deferred_imports_say_why():
    # an import inside a function hides a dependency from the top of the module; the comment
    # says what it avoids (a cycle, a slow or optional package), so that it can be revisited
    known = modules()
    offenders = []
    for name, found in package_imports().items():
        text = known[name].read_text().split("\n")
        blank = {i + 1 for i, t in enumerate(text) if not t.strip()}
        import_lines = {n for imp in found if imp.local for n in range(imp.line, imp.end_line + 1)}
        comments = None
        for imp in found:
            if not imp.local or not (imp.targets or imp.external):
                continue  # module level, or only the standard library
            comments = comments if comments is not None else commented_lines(known[name])
            first = run_start(imp.line, import_lines, blank)
            if not comments & set(range(first - 1, imp.end_line + 1)):
                offenders.append(f"{imp.where}  {imp.text}")
    if offenders:
        pytest.fail(
            f"{len(offenders)} import(s) inside a function without a comment (same line, or the line above"
            " it or above its block of imports) saying why they are deferred:\n" + "\n".join(offenders),
            pytrace=False,
        )
