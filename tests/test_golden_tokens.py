"""Every family and every policy gives the tokens recorded in golden_tokens.json (same seeds, same
prompts): restructuring the package must not change a single sampled token or full-step count.
The digests were recorded before the families became plug-ins (``python tests/golden_families.py --write``)."""

import json

import pytest

from golden_families import GOLDEN, all_digests


@pytest.fixture(scope="module")
def digests(tmp_path_factory):
    return all_digests(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("family", sorted(json.loads(GOLDEN.read_text())))
def test_tokens_match_the_recorded_ones(digests, family):
    assert digests[family] == json.loads(GOLDEN.read_text())[family]
