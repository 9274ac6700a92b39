"""Every family and every policy gives the tokens recorded in golden_tokens.json (same seeds, same
prompts): restructuring the package must not change a single sampled token or full-step count.
The digests were recorded before the families became plug-ins (``python tests/golden_families.py --write``)
and were unchanged by it. One family was re-recorded since, for a stated reason:

* ``dimoo``: the LLaDA stand-in now mirrors the published ``LLaDAModelLM`` (no ``post_init``, hence no
  re-initialisation of its random weights), so the tiny checkpoint holds other weights.

The embedded, aMUSEd and MaskGIT digests are the originals (MaskGIT's temperature is now its
``sm_temp``, which multiplies the logits, and equals the old meaning at the temperature used here, 1)."""

import json

import pytest

from golden_families import GOLDEN, all_digests


@pytest.fixture(scope="module")
def digests(tmp_path_factory):
    return all_digests(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("family", sorted(json.loads(GOLDEN.read_text())))
def test_tokens_match_the_recorded_ones(digests, family):
    assert digests[family] == json.loads(GOLDEN.read_text())[family]
