#!/usr/bin/env python3
"""Print the module graph of a crate's `src/` and fail if it has a cycle.

Usage: scripts/module-graph.py [SRC_DIR] [--depth N] [--quiet]

Every `crate::…` and `super::…` path in a file (use trees with braces included) is an edge from the file's module to the module it names. Modules are cut to the first
N path segments (default 2: `ca::service`); an edge between a module and its own ancestor (a
folder's `mod.rs` and its files) is not a dependency of one part on another and is left out.
Code under `#[cfg(test)]` (test modules, test-only files) is left out, as `cargo modules`
does by default: a test may drive its module through the CLI parser without that being a
dependency of the module. Exit status 1 and the modules of each cycle are printed when the graph is not a one-way tree.
"""
import pathlib
import re
import sys

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|::|[{},*;]")


def module_of(src: pathlib.Path, file: pathlib.Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return parts


def strip_comments_and_strings(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def strip_test_code(text: str) -> tuple[str, set[str]]:
    """Removes every item under `#[cfg(test)]`; returns the text and the test-only `mod x;` names."""
    test_mods = set()
    out = []
    i = 0
    marker = "#[cfg(test)]"
    while True:
        j = text.find(marker, i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        k = j + len(marker)
        decl = re.match(r"(?:\s*#\[[^\]]*\])*\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+)\s*;", text[k:])
        if decl:
            test_mods.add(decl.group(1))
            i = k + decl.end()
            continue
        brace = text.find("{", k)
        semi = text.find(";", k)
        if brace < 0 or (0 <= semi < brace):
            i = semi + 1 if semi >= 0 else len(text)
            continue
        depth = 0
        for n in range(brace, len(text)):
            if text[n] == "{":
                depth += 1
            elif text[n] == "}":
                depth -= 1
                if depth == 0:
                    break
        i = n + 1
    return "".join(out), test_mods


def expand(tokens: list[str], i: int, prefix: list[str], out: list[list[str]]) -> int:
    """Reads one use-tree starting at tokens[i]; appends every full path to out."""
    path = list(prefix)
    while i < len(tokens):
        tok = tokens[i]
        if tok == "{":
            i += 1
            while i < len(tokens) and tokens[i] != "}":
                i = expand(tokens, i, path, out)
                if i < len(tokens) and tokens[i] == ",":
                    i += 1
            return i + 1
        if tok == "::":
            i += 1
            continue
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok) and tok != "as":
            path.append(tok)
            i += 1
            if i < len(tokens) and tokens[i] == "::":
                continue
            out.append(path)
            # skip an `as name`
            if i + 1 < len(tokens) and tokens[i] == "as":
                i += 2
            return i
        out.append(path)
        return i
    out.append(path)
    return i


def references(src: pathlib.Path, file: pathlib.Path) -> set[tuple[str, ...]]:
    here = module_of(src, file)
    text, _ = strip_test_code(strip_comments_and_strings(file.read_text()))
    tokens = TOKEN.findall(text)
    found: set[tuple[str, ...]] = set()
    for i, tok in enumerate(tokens):
        if tok not in ("crate", "super") or i + 1 >= len(tokens) or tokens[i + 1] != "::":
            continue
        if i > 0 and tokens[i - 1] == "::":
            continue  # the middle of `super::super::x`, handled from its start
        base = [] if tok == "crate" else here[:-1]
        j = i + 2
        while tok == "super" and j + 1 < len(tokens) and tokens[j] == "super" and tokens[j + 1] == "::":
            base = base[:-1]
            j += 2
        paths: list[list[str]] = []
        expand(tokens, j, base, paths)
        found.update(tuple(p) for p in paths if p)
    return found


def main() -> int:
    args = sys.argv[1:]
    depth = 2
    quiet = "--quiet" in args
    if "--depth" in args:
        depth = int(args[args.index("--depth") + 1])
    positional = [a for a in args if not a.startswith("--") and not a.isdigit()]
    src = pathlib.Path(positional[0] if positional else "host/src")
    test_only: set[tuple[str, ...]] = set()
    for f in src.rglob("*.rs"):
        _, names = strip_test_code(strip_comments_and_strings(f.read_text()))
        parent = tuple(module_of(src, f))
        test_only.update(parent + (name,) for name in names)

    def is_test_only(f: pathlib.Path) -> bool:
        m = tuple(module_of(src, f))
        return any(m[: len(t)] == t for t in test_only)

    files = [f for f in sorted(src.rglob("*.rs")) if not is_test_only(f)]
    modules = {tuple(module_of(src, f)) for f in files}
    modules.discard(())

    def node(path: tuple[str, ...]) -> tuple[str, ...]:
        # The longest module that is a prefix of the path, cut to `depth` segments.
        for n in range(len(path), 0, -1):
            if path[:n] in modules:
                return path[: min(n, depth)]
        return ()

    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for file in files:
        here = node(tuple(module_of(src, file)))
        if not here:
            continue
        for ref in references(src, file):
            there = node(ref)
            if not there or there == here:
                continue
            if here[: len(there)] == there or there[: len(here)] == here:
                continue  # a folder and its own files
            edges.setdefault(here, set()).add(there)

    name = "::".join
    if not quiet:
        for here in sorted(edges):
            print(f"{name(here)} -> {', '.join(sorted(name(t) for t in edges[here]))}")

    # Tarjan's strongly connected components: every component larger than one node is a cycle.
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    cycles: list = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(set(edges) | {t for ts in edges.values() for t in ts}):
        if v not in index:
            visit(v)
    for component in cycles:
        members = set(component)
        print(f"cycle: {', '.join(name(m) for m in component)}")
        for here in component:
            inner = sorted(name(t) for t in edges.get(here, ()) if t in members)
            print(f"    {name(here)} -> {', '.join(inner)}")
    if cycles:
        return 1
    print(f"{src}: {len(edges)} modules with dependencies, no cycle (depth {depth})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
