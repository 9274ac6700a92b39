"""The dependency floors pyproject.toml states are the versions the `make test` lower-bound stage runs.

`make test` runs the model-format tests a second time with diffusers, transformers and their hub at
the lowest versions pyproject.toml allows (an overlay, `.venv/min-deps`); this test fails there if
the overlay and the stated floors drift apart, so a floor is never claimed without being tested.
"""

import os
import re
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def stated_floor(package: str) -> str:
    match = re.search(rf'"{package}>=([0-9.]+)"', PYPROJECT.read_text())
    assert match, f"pyproject.toml states no floor for {package}"
    return match.group(1)


@pytest.mark.skipif(os.environ.get("MIGM_LOWER_BOUNDS") != "1", reason="runs in make test's lower-bound stage")
@pytest.mark.parametrize("package", ["diffusers", "transformers", "accelerate"])
def test_the_lower_bound_stage_imports_the_stated_floor(package):
    version, floor = __import__(package).__version__, stated_floor(package)
    assert version.split(".")[: len(floor.split("."))] == floor.split("."), f"{package} {version}, floor {floor}"


def test_the_makefile_pins_the_stated_floors():
    makefile = (PYPROJECT.parent / "Makefile").read_text()
    for package in ("diffusers", "transformers", "accelerate"):
        floor = stated_floor(package)
        assert re.search(rf"{package}=={re.escape(floor)}(\.0)*\b", makefile), (package, floor)
