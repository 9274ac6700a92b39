import json

import pytest

from migm_shortcut.embedded.model import EmbeddedModel
import torch

from migm_shortcut.sequence import KVCache
from migm_shortcut.errors import MigmError
from migm_shortcut.samplers import (AdaptiveShortcutPolicy, MaskedTokenSampler, FixedIntervalPolicy, MLCachePolicy,
                                    SenCachePolicy, SensitivityTable, StepState, VanillaPolicy, calibrate, make_policy)
from migm_shortcut.samplers.sensitivity import SensitivityScore

from test_shortcut import random_head

PROMPTS = ["a photo of a sneaker", "a photo of an ankle boot", "a photo of a bag", "a photo of a dress"]
SEEDS = [3, 4, 5, 6]
N = 6


@pytest.fixture(scope="module")
def table(tiny_backbone) -> SensitivityTable:
    return calibrate(tiny_backbone, EmbeddedModel.default_prompts(None, 8), N, 4.0, 1.0, batch_size=4, progress=False)


def codes_with(backbone, policy, steps=N):
    return MaskedTokenSampler(backbone, num_steps=steps, policy=policy).generate(PROMPTS, SEEDS)


def test_no_acceleration_settings_equal_vanilla_exactly(tiny_backbone, table):
    vanilla = codes_with(tiny_backbone, VanillaPolicy()).codes
    for policy in (SenCachePolicy(eps=0.0, max_reuse=3, calibration=table), FixedIntervalPolicy(interval=1),
                   MLCachePolicy(warmup=0.0, interval=3, recompute=1.0), MLCachePolicy(warmup=0.0, interval=1),
                   AdaptiveShortcutPolicy(random_head(tiny_backbone), eps=0.0, calibration=table)):
        out = codes_with(tiny_backbone, policy)
        assert torch.equal(out.codes, vanilla), policy.describe()
        assert out.full_steps.tolist() == [N] * len(PROMPTS), policy.describe()


def test_accelerated_settings_skip_steps_and_keep_first_and_last(tiny_backbone, table):
    out = codes_with(tiny_backbone, SenCachePolicy(eps=1e9, max_reuse=2, calibration=table))
    pattern = [bool(f[0]) for f in out.step_full]
    assert pattern == [True, False, False, True, False, True]  # at most K=2 reuses in a row; last step computed
    out = codes_with(tiny_backbone, FixedIntervalPolicy(interval=4))
    assert [bool(f[0]) for f in out.step_full] == [True, False, False, False, True, False]
    out = codes_with(tiny_backbone, MLCachePolicy(warmup=0.34, interval=3, recompute=0.2))
    assert [bool(f[0]) for f in out.step_full] == [True, True, True, False, False, True]  # 0..int(6*0.34), then +3
    out = codes_with(tiny_backbone, AdaptiveShortcutPolicy(random_head(tiny_backbone), eps=1e9, calibration=table))
    assert out.full_steps.tolist() == [1] * len(PROMPTS)


def test_mlcache_partial_forward_matches_full_forward(tiny_backbone):
    torch.manual_seed(0)
    layout = tiny_backbone.layout
    ids = layout.template(torch.stack([layout.encode_prompt(p) for p in PROMPTS[:2]]))
    ids[:, layout.image_positions[:5]] = layout.code_offset + 3
    cache = KVCache()
    full = tiny_backbone.features(ids, kv_cache=cache)
    assert len(cache) == tiny_backbone.config.depth
    # Unchanged inputs: recomputed positions reproduce the full pass there.
    index = torch.stack([torch.randperm(layout.seq_len)[:7] for _ in range(2)])
    partial = tiny_backbone.features_at(ids, index, cache)
    torch.testing.assert_close(partial, full.gather(1, index[..., None].expand(-1, -1, full.shape[-1])), atol=1e-5, rtol=1e-5)
    # Changed inputs, every position recomputed (any order): the full pass of the new sequence.
    new_ids = ids.clone()
    new_ids[:, layout.image_positions[5:9]] = layout.code_offset + 1
    index = torch.stack([torch.randperm(layout.seq_len) for _ in range(2)])
    partial = tiny_backbone.features_at(new_ids, index, cache)
    expected = tiny_backbone.features(new_ids)
    torch.testing.assert_close(partial, expected.gather(1, index[..., None].expand(-1, -1, expected.shape[-1])),
                               atol=1e-5, rtol=1e-5)


def test_mlcache_recomputes_least_confident_masked_positions_first(tiny_backbone):
    policy = MLCachePolicy(warmup=0.0, interval=10, recompute=0.05)
    seen = []

    class Spy(MLCachePolicy):
        def recompute_index(self, state):
            index = super().recompute_index(state)
            seen.append((state, index))
            return index

    spy = Spy(policy.warmup, policy.interval, policy.recompute)
    codes_with(tiny_backbone, spy)
    state, index = seen[0]
    layout = tiny_backbone.layout
    image_pos = layout.image_positions
    logits = tiny_backbone.logits_from_features(state.prev_features[: state.batch_size, image_pos])
    confidence = logits.softmax(-1).amax(-1).masked_fill(~state.masked, float("inf"))
    expected = image_pos[confidence.topk(index.shape[1], dim=1, largest=False).indices]
    assert torch.equal(index[: state.batch_size].sort(1).values, expected.sort(1).values)
    assert torch.equal(index[: state.batch_size], index[state.batch_size:])  # same positions in both branches


def state_with_committed(backbone, committed: int, step: int = 2) -> StepState:
    layout = backbone.layout
    ids = layout.template(torch.stack([layout.encode_prompt(PROMPTS[0]), layout.encode_prompt(None)]))
    ids[:, layout.image_positions[:committed]] = layout.code_offset + 2
    masked_index = torch.arange(committed, layout.num_image_tokens)[None]
    return StepState(step=step, num_steps=N, backbone=backbone, input_ids=ids, num_branches=2, prev_features=None,
                     masked_index=masked_index, mask_ratio=torch.tensor([masked_index.shape[1] / layout.num_image_tokens]))


def test_sensitivity_score_grows_with_the_committed_tokens(tiny_backbone, table):
    score = SensitivityScore(table)
    reference = state_with_committed(tiny_backbone, 0)
    score.mark_full(reference, torch.tensor([True]))
    values = [score.score(state_with_committed(tiny_backbone, m)).item() for m in (0, 1, 3, 6, 10)]
    assert values[0] == 0
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_calibration_round_trips_and_is_positive(tiny_backbone, table, tmp_path):
    assert len(table.sensitivity) == N and all(v > 0 for v in table.sensitivity)
    table.save(tmp_path / "cal.json")
    assert SensitivityTable.load(tmp_path / "cal.json") == table
    again = calibrate(tiny_backbone, EmbeddedModel.default_prompts(None, 8), N, 4.0, 1.0, batch_size=4, progress=False)
    assert again == table  # same seeds, same table


def test_bad_calibration_files_and_settings_are_one_line_errors(tiny_backbone, table, tmp_path):
    with pytest.raises(MigmError, match="for N=6 steps, not 8"):
        SenCachePolicy(eps=0.1, calibration=table).reset(2, 8)
    other = SensitivityTable(**{**table.__dict__, "base_fingerprint": "mini-dimoo:other"})
    with pytest.raises(MigmError, match="another base model"):
        codes_with(tiny_backbone, SenCachePolicy(eps=0.1, calibration=other))
    (tmp_path / "bad.json").write_text(json.dumps({"type": "sensitivity-table", **{**table.__dict__, "sensitivity": [1.0]}}))
    with pytest.raises(MigmError, match="must hold 6"):
        SensitivityTable.load(tmp_path / "bad.json")
    (tmp_path / "notjson.json").write_text("{oops")
    with pytest.raises(MigmError, match="not valid JSON"):
        SensitivityTable.load(tmp_path / "notjson.json")
    for name, params, message in (("sencache", {"eps": -0.1}, "eps must be a number >= 0"),
                                  ("sencache", {"max_reuse": 0}, "max_reuse"),
                                  ("adaptive", {"eps": float("nan")}, "eps must be a number >= 0"),
                                  ("mlcache", {"interval": 0}, "refresh interval"),
                                  ("mlcache", {"recompute": 0.0}, "recompute ratio"),
                                  ("fixed", {"interval": 0}, "interval must be")):
        with pytest.raises(MigmError, match=message):
            make_policy(name, calibration=table, **params) if name in ("sencache", "adaptive") else make_policy(name, **params)


def test_per_sample_full_steps_run_the_backbone_on_just_those_samples(tiny_backbone, table):
    scores = []

    class Spy(SenCachePolicy):
        def step(self, state):
            if state.step == 1:
                scores.append(self.sensitivity.score(state))
            return super().step(state)

    codes_with(tiny_backbone, Spy(eps=1e9, max_reuse=3, calibration=table))
    eps = scores[0].median().item()  # about half the samples reuse at step 1, the others compute
    calls = []
    original = tiny_backbone.features

    def counting_features(input_ids, **kwargs):
        calls.append(input_ids.shape[0])
        return original(input_ids, **kwargs)

    tiny_backbone.features = counting_features
    try:
        out = codes_with(tiny_backbone, SenCachePolicy(eps=eps, max_reuse=3, calibration=table))
    finally:
        del tiny_backbone.features
    per_step = [int(f.sum()) for f in out.step_full]
    assert 0 < per_step[1] < len(PROMPTS), per_step
    assert calls == [2 * n for n in per_step if n]  # both branches of exactly the samples that need it


def test_sweep_and_cli_accept_every_policy(tmp_path, tiny_backbone, table):
    from migm_shortcut.eval.sweep import load_sweep_config

    table.save(tmp_path / "cal.json")
    config = {"settings": [{"policy": "sencache", "steps": N, "eps": 0.3, "calibration": str(tmp_path / "cal.json")},
                           {"policy": "mlcache", "steps": N, "warmup": 0.3, "interval": 2, "recompute": 0.2},
                           {"policy": "fixed", "steps": N, "interval": 2}]}
    (tmp_path / "sweep.json").write_text(json.dumps(config))
    cfg = load_sweep_config(tmp_path / "sweep.json")
    assert [s.policy for s in cfg.settings] == ["sencache", "mlcache", "fixed"]
    config["settings"][0]["steps"] = 5
    (tmp_path / "sweep.json").write_text(json.dumps(config))
    with pytest.raises(MigmError, match="calibration is for N=6"):
        load_sweep_config(tmp_path / "sweep.json")


def test_mlcache_refreshes_on_the_published_generators_steps():
    """Lumina-DiMOO's generate_image marks step s a refresh (full) step when s <= int(N * warmup_ratio) or
    (s - int(N * warmup_ratio)) % refresh_interval == 0; the policy's full steps are those."""
    for num_steps in (6, 16, 64):
        for warmup in (0.0, 0.2, 0.3, 0.5):
            for interval in (1, 3, 5, 8):
                warm = int(num_steps * warmup)
                published = [s <= warm or (s - warm) % interval == 0 for s in range(num_steps)]
                policy = MLCachePolicy(warmup=warmup, interval=interval)
                assert [policy.is_full(s, num_steps) for s in range(num_steps)] == published
    assert [s for s in range(16) if MLCachePolicy(0.3, 5).is_full(s, 16)] == [0, 1, 2, 3, 4, 9, 14]
