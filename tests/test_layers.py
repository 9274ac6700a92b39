"""The layering the tree promises, read from the source: every import statement of every module,
at module level or inside a function, follows core -> samplers -> train/eval -> cli, and nothing goes
back up. Model families (``migm_shortcut/<family>/``) are core; the registry imports them by name
(``BUILTIN_FAMILIES``), never the other way round."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# source folder -> the package it installs as (pyproject.toml's package-dir)
FOLDERS = {"migm_shortcut": "migm_shortcut", "samplers": "migm_shortcut.samplers", "train": "migm_shortcut.train",
           "eval": "migm_shortcut.eval"}
LAYER_OF = {"samplers": 1, "train": 2, "eval": 2, "cli": 3}
NAMES = {0: "core", 1: "samplers", 2: "train/eval", 3: "cli"}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYER_OF.get(parts[1], 0) if parts[0] == "migm_shortcut" and len(parts) > 1 else 0


def modules():
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *rel)).removesuffix(".__init__")
            yield name, path


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module ``name`` imports (absolute, relative resolved), with its line."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, node.lineno))
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                found.append((node.args[0].value, node.lineno))
    return [(t, line) for t, line in found if t.startswith("migm_shortcut")]


def upward_imports() -> list[str]:
    bad = []
    for name, path in modules():
        own = layer(name)
        for target, line in imports_of(name, path):
            if layer(target) > own and not target.startswith(f"{name}."):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({NAMES[own]}) imports {target} ({NAMES[layer(target)]})")
    return bad


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_train_and_eval_do_not_import_each_other():
    crossing = [f"{path.relative_to(ROOT)}:{line} imports {target}" for name, path in modules()
                for target, line in imports_of(name, path)
                if {name.split(".")[1:2][0] if len(name.split(".")) > 1 else "", target.split(".")[1:2][0] if
                    len(target.split(".")) > 1 else ""} == {"train", "eval"}]
    assert crossing == []


def test_families_do_not_import_the_registry_users_above_them():
    """A family imports only the core (interface, registry, io, ...) and its own folder, or a family it builds on."""
    families = {p.name for p in (ROOT / "migm_shortcut").iterdir() if (p / "__init__.py").is_file()}
    for name, path in modules():
        parts = name.split(".")
        if len(parts) > 1 and parts[1] in families:
            for target, line in imports_of(name, path):
                assert layer(target) == 0, f"{path}:{line} imports {target}"


@pytest.mark.parametrize("source, expected", [
    ("from migm_shortcut.samplers import generate\n", True),
    ("def f():\n    from ..samplers import policies\n", True),
    ("import importlib\nimportlib.import_module('migm_shortcut.eval.sweep')\n", True),
    ("from migm_shortcut.io import read_json\n", False),
])
def test_the_checker_sees_function_level_and_relative_imports(tmp_path, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    targets = imports_of("migm_shortcut.embedded.probe", path)
    assert any(layer(t) > 0 for t, _ in targets) is expected


def test_every_family_folder_is_installed_and_registered():
    """A family folder missing from pyproject.toml's packages would vanish from a non-editable install;
    one missing from BUILTIN_FAMILIES would never register its kinds."""
    import tomllib

    from migm_shortcut.registry import BUILTIN_FAMILIES

    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {f"migm_shortcut.{p.name}" for p in (ROOT / "migm_shortcut").iterdir() if (p / "__init__.py").is_file()}
    assert folders <= packages
    assert folders == set(BUILTIN_FAMILIES)


def test_nothing_outside_the_contract_probes_a_model():
    """What a model offers is the contract's (``interface.py``, with defaults); no caller asks with
    hasattr/getattr whether a loaded model or its backbone has a member."""
    probes = []
    for name, path in modules():
        if name.split(".")[1:2] in (["interface"], ["embedded"], ["amused"], ["dimoo"], ["maskgit"]):
            continue  # the contract itself, and the families reading their own published objects
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr") and node.args:
                target = ast.unparse(node.args[0])
                if target.split(".")[-1] in ("model", "loaded", "backbone", "state.backbone"):
                    probes.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert probes == []
