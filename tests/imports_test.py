"""The package's import graph: no circle, no import from a higher layer, imports at module tops.

Layers, lowest first (README, "Package map"): a module imports only from its own layer or below.
"""

import ast
import os

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "spade_tf")
LAYERS = [
    ("spade_tf", "spade_tf.utils"),
    ("spade_tf.models",),
    ("spade_tf.data",),
    ("spade_tf.config",),
    ("spade_tf.serving",),
    ("spade_tf.evaluation",),
    ("spade_tf.training",),
    ("spade_tf.tools",),
    ("spade_tf.cli",),
]


def _modules():
    found = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].replace(os.sep, ".")
                found[rel.removesuffix(".__init__")] = path
    return found


def _layer(module):
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return best[0]


def _imports(path, modules):
    """[(target module, line, top level?, source line, line before)] of spade_tf imports, and other lazy ones."""
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    tree = ast.parse(text)
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{a.name}" for a in node.names]
            targets = [n if n in modules else node.module for n in names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        context = (lines[node.lineno - 1], lines[node.lineno - 2] if node.lineno > 1 else "")
        for target in targets:
            out.append((target, node.lineno, id(node) in top, context))
    return out


def test_no_circle_and_no_upward_import():
    modules = _modules()
    edges = {m: set() for m in modules}
    upward = []
    for module, path in modules.items():
        for target, line, _, _ in _imports(path, modules):
            if target not in modules or target == module:
                continue
            edges[module].add(target)
            if _layer(target) > _layer(module):
                upward.append(f"{module}:{line} imports {target}")
    assert not upward, upward

    state, circles = {}, []

    def visit(m, stack):
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                circles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = "done"

    for m in sorted(modules):
        if m not in state:
            visit(m, [])
    assert not circles, circles


def test_imports_inside_functions_say_why():
    # An import inside a function must carry a comment (on its line or the line above) saying why:
    # an optional dependency, or a deliberate per-process import.
    modules = _modules()
    silent = [
        f"{os.path.relpath(path, PACKAGE_DIR)}:{line} {target}"
        for module, path in modules.items()
        for target, line, top, (source, before) in _imports(path, modules)
        if not top and "#" not in source and not before.strip().startswith("#")
    ]
    assert not silent, silent


@pytest.mark.parametrize("layer", [p for group in LAYERS for p in group])
def test_every_layer_exists(layer):
    # A renamed folder would silently drop out of the checks above.
    assert layer in _modules()
