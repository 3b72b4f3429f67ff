#!/usr/bin/env python3
"""Checks that the module graph of each crate has no circle: every dependency between modules
runs one way.

A module is a source file (`foo.rs` or `foo/mod.rs`). Module A depends on B when A's non-test
code names a path into B: a `use` item, or an inline path such as `crate::store::Cmd`,
`super::flush::Flush` or `child::Thing`. Declaring `mod b;` is ownership, not a dependency,
but a `mod.rs` that re-exports a child (`pub use self::b::X`) depends on it, so the child must
not reach back into its parent: shared items of a folder live in a sibling module. Paths
through the crate root's re-exports (`crate::Error`) count as depending on the root, so the
library's own code names items by their module.

`#[cfg(test)]` items are skipped: a test module may use whatever it tests.

    python3 scripts/modules.py            # check core, bindings and cli; exit 1 on a circle
    python3 scripts/modules.py --graph    # also print each crate's edges (`a -> b`)

`cargo modules dependencies --acyclic` (crate cargo-modules) draws the same graph with full
name resolution; this script needs nothing but Python, so the test command can run it.
"""
import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = {"core": "core/src/lib.rs", "bindings": "bindings/src/lib.rs", "cli": "cli/src/main.rs"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text):
    """Removes comments, string and char literals (kept as empty quotes)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            out.append('""')
            i = n if end < 0 else end + 1 + len(m.group(1))
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4] + "    "):
            m = re.match(r"'(\\[^']*|[^\\'])'", text[i:])
            out.append("' '")
            i += len(m.group(0)) if m else 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_items(code):
    """Removes every item under `#[cfg(test)]` (a module, a function, a `use`)."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", code)
        if not m:
            return code
        i = m.end()
        # The item ends at its matching closing brace, or at a `;` before any brace.
        depth, j = 0, i
        while j < len(code):
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif code[j] == ";" and depth == 0:
                j += 1
                break
            j += 1
        code = code[: m.start()] + code[j:]


def use_paths(tree, prefix=()):
    """Expands a `use` tree (`crate::{a::{b, c}, d as e}`) into segment tuples."""
    tree = re.sub(r"\s+", " ", tree.strip())
    m = re.match(r"^(.*?)::\s*\{(.*)\}$", tree) or re.match(r"^()\{(.*)\}$", tree)
    if m:
        head = tuple(s.strip() for s in m.group(1).split("::") if s.strip())
        return [q for p in split_top(m.group(2)) for q in use_paths(p, prefix + head)]
    tree = re.sub(r"\s+as\s+\w+$", "", tree)
    segs = tuple(s.strip() for s in tree.split("::") if s.strip())
    return [prefix + segs]


def split_top(inner):
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    return [p for p in parts if p.strip()]


def modules_of(crate_root):
    """Maps module paths (tuples) to files, following `mod x;` declarations."""
    mods = {}

    def visit(path, file, is_dir_owner):
        mods[path] = file
        code = drop_test_items(strip_code(file.read_text()))
        base = file.parent if is_dir_owner else file.parent / file.stem
        for m in re.finditer(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code):
            name = m.group(1)
            for cand, owner in ((base / f"{name}.rs", False), (base / name / "mod.rs", True)):
                if cand.exists():
                    visit(path + (name,), cand, owner)
                    break

    visit((), crate_root, True)
    return mods


def resolve(mods, here, segs):
    """The module a path names (its longest module prefix), or None for other crates."""
    if not segs:
        return None
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    elif segs[0] == "super":
        base, rest = here, segs
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif segs[0] == "self":
        base, rest = here, segs[1:]
    elif here + (segs[0],) in mods:
        base, rest = here, segs
    else:
        return None
    best = base
    for k in range(1, len(rest) + 1):
        if base + rest[:k] in mods:
            best = base + rest[:k]
        else:
            break
    return best


def edges_of(mods):
    edges = {}
    for here, file in mods.items():
        code = drop_test_items(strip_code(file.read_text()))
        targets = set()
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            for segs in use_paths(m.group(1)):
                t = resolve(mods, here, segs)
                if t is not None:
                    targets.add(t)
        children = [p[-1] for p in mods if p[:-1] == here and len(p) == len(here) + 1]
        heads = ["crate", "super", "self"] + children
        pat = r"\b(" + "|".join(map(re.escape, heads)) + r")((?:\s*::\s*" + IDENT + r")+)"
        for m in re.finditer(pat, code):
            segs = (m.group(1),) + tuple(s.strip() for s in m.group(2).split("::") if s.strip())
            # `mod x;` and `pub use self::x` are handled above; a bare `x::` inside a
            # `use` line was already expanded.
            t = resolve(mods, here, segs)
            if t is not None:
                targets.add(t)
        targets.discard(here)
        edges[here] = targets
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            strong(v)
    return out


def name(path):
    return "::".join(("crate",) + path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", action="store_true", help="print every edge")
    args = ap.parse_args()
    failed = False
    for crate, root in CRATES.items():
        mods = modules_of(ROOT / root)
        edges = edges_of(mods)
        found = cycles(edges)
        n_edges = sum(len(t) for t in edges.values())
        if args.graph:
            for a in sorted(edges):
                for b in sorted(edges[a]):
                    print(f"{crate}: {name(a)} -> {name(b)}")
        if found:
            failed = True
            for comp in found:
                members = set(comp)
                inner = sorted((a, b) for a in comp for b in edges[a] if b in members)
                print(f"{crate}: circle through {len(comp)} modules:")
                for a, b in inner:
                    print(f"    {name(a)} -> {name(b)}")
        else:
            print(f"{crate}: {len(mods)} modules, {n_edges} dependencies, no circle")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
