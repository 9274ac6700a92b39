"""The layering the tree promises: the core never imports samplers, train or eval; samplers never
import train or eval. Each layer is imported in a fresh interpreter, so nothing else loaded it."""

import subprocess
import sys

import pytest

# The package's own import covers interface, models, pipeline, shortcut, sequence and io; the
# hook and the adapters are imported on demand, so each is checked on its own.
CORE = ["migm_shortcut", "migm_shortcut.amused.hook", "migm_shortcut.dimoo.model", "migm_shortcut.amused.model",
        "migm_shortcut.maskgit.model"]


def loaded_layers(module: str) -> set[str]:
    code = (f"import sys, {module}; print(' '.join(sorted({{m.split('.')[1] for m in sys.modules "
            "if m.startswith(('migm_shortcut.samplers', 'migm_shortcut.train', 'migm_shortcut.eval'))})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1000:]
    return set(out.stdout.split())


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_higher_layer(module):
    assert loaded_layers(module) == set()


def test_samplers_import_neither_train_nor_eval():
    assert loaded_layers("migm_shortcut.samplers") == {"samplers"}


def test_the_public_api_serves_the_sampler_on_first_access():
    code = ("import sys, migm_shortcut as m; before = 'migm_shortcut.samplers' in sys.modules; "
            "policy = m.ShortcutPolicy; print(before, 'migm_shortcut.samplers' in sys.modules, "
            "policy.__module__, hasattr(m, 'load_model'), hasattr(m, 'apply_shortcut'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "True", "migm_shortcut.samplers.shortcut", "True", "True"], out.stderr[-500:]
