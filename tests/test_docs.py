"""The README and docs keep their promises: tables generated from committed JSON, a short README that
opens with the two commands."""

import importlib.util
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_results_table_in_readme_and_docs_is_generated_from_its_json():
    tables = _script("docs_tables")
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = sum(len(tables.BLOCK.findall(f.read_text())) for f in files)
    assert blocks >= 8
    stale = [f.name for f in files if tables.regenerate(f.read_text()) != f.read_text()]
    assert not stale, f"run python scripts/docs_tables.py: {stale}"


def test_the_readme_is_short_and_opens_with_the_demo_and_the_tests():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220
    assert "make demo" in lines[3] and "make test" in lines[4]
