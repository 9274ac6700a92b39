import math

import pytest

from migm_shortcut.errors import MigmError
from migm_shortcut.samplers import committed_counts, masked_counts


@pytest.mark.parametrize("tokens,steps", [(196, 1), (196, 4), (196, 16), (196, 32), (64, 32), (16, 16), (4096, 64)])
def test_every_step_commits_and_ends_unmasked(tokens, steps):
    counts = masked_counts(tokens, steps)
    assert len(counts) == steps
    assert counts[-1] == 0
    assert all(c >= 1 for c in counts[:-1])
    assert all(c > 0 for c in committed_counts(tokens, steps))
    assert sum(committed_counts(tokens, steps)) == tokens


def test_follows_dimoo_cosine_rule_where_it_commits_tokens():
    # 4096 tokens, 64 steps: DiMOO's rule never stalls, so ours must equal it exactly.
    expected = [max(math.floor(4096 * math.cos(math.pi / 2 * (k + 1) / 64)), 1) for k in range(63)] + [0]
    assert masked_counts(4096, 64) == expected


def test_departs_from_dimoo_only_to_avoid_empty_steps():
    raw = [math.floor(64 * math.cos(math.pi / 2 * (k + 1) / 32)) for k in range(32)]
    stalls = sum(1 for a, b in zip([64] + raw[:-1], raw) if a == b)
    assert stalls == 3  # the design note's example: DiMOO's rule alone stalls three times
    assert min(committed_counts(64, 32)) == 1


@pytest.mark.parametrize("steps", [0, -3])
def test_rejects_steps_below_one(steps):
    with pytest.raises(MigmError, match="at least 1"):
        masked_counts(196, steps)


def test_rejects_more_steps_than_tokens():
    with pytest.raises(MigmError, match="cannot exceed"):
        masked_counts(16, 17)
