"""The package's layers: no module imports (at module level or inside a function) from a layer
above its own; read from the source with ``ast``, so a new upward import fails here."""

import ast
from pathlib import Path

import rtseg

ROOT = Path(rtseg.__file__).parent

# Bottom to top; a module may import from its own layer's packages or from lower layers.
LAYERS = [
    {"errors"},
    {"utils", "registry"},
    {"layers", "outputs", "viz", "distributed"},
    {"complexity", "data", "upsample", "backbones", "losses"},
    {"models"},
    {"inference"},
    {"segmenter"},
    {"training"},
    {"deploy", "convert"},
    {"api", "predict", "bench"},
    {"demo", "__init__"},
    {"cli", "engine", "backends", "quantize"},  # the CLI; one-release aliases of moved modules
    {"__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def part_of(module: str) -> str:
    """``rtseg.training.trainer`` → ``training``; ``rtseg`` → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute rtseg module imported, line) for every import in ``path``."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if path.name == "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            found += [(t, node.lineno) for t in names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(t, line) for t, line in found if t == "rtseg" or t.startswith("rtseg.")]


def test_every_module_has_a_layer() -> None:
    parts = {part_of(".".join(p.relative_to(ROOT.parent).with_suffix("").parts))
             for p in ROOT.rglob("*.py")}
    assert parts - set(LEVEL) == set()


def test_no_import_runs_to_a_higher_layer() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        source = part_of(".".join(path.relative_to(ROOT.parent).with_suffix("").parts))
        for target, line in imports(path):
            if part_of(target) == "__version__":  # the version string, in rtseg/__init__.py
                continue
            if LEVEL[part_of(target)] > LEVEL[source]:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path) -> None:
    # the test above can fail: a data module importing the trainer is reported
    bad = ROOT / "data" / "_layer_probe.py"
    try:
        bad.write_text("def f():\n    from ..training.trainer import run_training\n")
        with __import__("pytest").raises(AssertionError, match="_layer_probe.py:2 imports "
                                         "rtseg.training.trainer"):
            test_no_import_runs_to_a_higher_layer()
    finally:
        bad.unlink()
