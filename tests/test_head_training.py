import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file, save_file

from migm_shortcut.embedded.backbone import MiniDiMOO
from migm_shortcut.errors import MigmError
from migm_shortcut.samplers import MaskedTokenSampler
from migm_shortcut.samplers.shortcut import ShortcutPolicy
from migm_shortcut.io import load_torch
from migm_shortcut.shortcut import ShortcutHead
from migm_shortcut.train.head import HeadTrainConfig, train_head
from migm_shortcut.embedded.model import EmbeddedModel
from migm_shortcut.train.trajectories import CollectConfig, TrajectoryStore, trajectory_seed
from migm_shortcut.train.trajectories import collect as collect_with

FM_PROMPTS = EmbeddedModel.trajectory_prompt  # the embedded model's own prompt source


def collect(backbone, cfg, out, **kwargs):
    return collect_with(backbone, cfg, out, model_prompts=FM_PROMPTS, **kwargs)

TINY = dict(num=10, steps=4, shard_size=4, batch_size=4, seed=1)


def shard_contents(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: load_file(p) for p in sorted(folder.glob("shard-*.safetensors"))}


def quiet(message: str) -> None:
    pass


def test_collection_stores_what_training_needs(tiny_backbone, tmp_path):
    summary = collect(tiny_backbone, CollectConfig(**TINY), tmp_path / "traj", progress=False, log=quiet)
    assert summary["shards_written"] == 3
    shards = shard_contents(tmp_path / "traj")
    first = shards["shard-00000.safetensors"]
    L, C = tiny_backbone.layout.seq_len, tiny_backbone.width
    assert first["features"].shape == (4, 4, 2, L, C) and first["features"].dtype == torch.float16
    assert first["commit_step"].min() == 0 and first["commit_step"].max() == 3
    assert torch.allclose(first["mask_ratio"][:, 0], torch.ones(4))
    assert sum(len(s["codes"]) for s in shards.values()) == 10
    # every trajectory has its own seed: no duplicates across shards
    seeds = torch.cat([s["seed"] for s in shards.values()])
    assert len(seeds.unique()) == 10


def test_collection_resume_gives_the_same_trajectories(tiny_backbone, tmp_path):
    cfg = CollectConfig(**TINY)
    collect(tiny_backbone, cfg, tmp_path / "full", progress=False, log=quiet)
    reference = shard_contents(tmp_path / "full")
    # A run killed after the first shard: one whole shard, plus a half-written one that never got renamed.
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(tmp_path / "full" / "collection.json", part)
    shutil.copy(tmp_path / "full" / "shard-00000.safetensors", part)
    (part / "shard-00001.safetensors").write_bytes((tmp_path / "full" / "shard-00001.safetensors").read_bytes()[:500])
    summary = collect(tiny_backbone, cfg, part, progress=False, log=quiet)
    assert summary == {"rank": 0, "shards_skipped": 1, "shards_written": 2, "shards": 3}
    resumed = shard_contents(part)
    assert resumed.keys() == reference.keys()
    for name in reference:
        for key in reference[name]:
            assert torch.equal(reference[name][key], resumed[name][key]), (name, key)


def test_collection_refuses_to_mix_settings(tiny_backbone, tmp_path):
    collect(tiny_backbone, CollectConfig(**TINY), tmp_path / "t", progress=False, log=quiet)
    with pytest.raises(MigmError, match="different steps"):
        collect(tiny_backbone, CollectConfig(**{**TINY, "steps": 3}), tmp_path / "t", progress=False, log=quiet)


def test_corrupt_shard_is_skipped_with_a_warning(tiny_backbone, tmp_path):
    collect(tiny_backbone, CollectConfig(**TINY), tmp_path / "t", progress=False, log=quiet)
    bad = tmp_path / "t" / "shard-00001.safetensors"
    bad.write_bytes(bad.read_bytes()[:-1000])
    with pytest.warns(UserWarning, match="shard-00001.safetensors"):
        store = TrajectoryStore.from_folder(tmp_path / "t", log=quiet)
    assert len(store) == 6 and store.skipped == ["shard-00001.safetensors"]


def saved_random_head(backbone, folder: Path, seed: int = 0) -> str:
    torch.manual_seed(seed)
    head = ShortcutHead.for_base(backbone)
    with torch.no_grad():  # away from the zero-initialised "copy" state, so the student really differs
        for p in head.parameters():
            p.add_(0.5 * torch.randn_like(p))
    head.save_pretrained(folder)
    return str(folder)


def test_on_policy_collection_follows_the_shortcut_sampler_with_true_features(tiny_backbone, tmp_path):
    head = saved_random_head(tiny_backbone, tmp_path / "student")
    cfg = CollectConfig(**{**TINY, "num": 4}, student_budget=2, student_head=head)
    collect(tiny_backbone, cfg, tmp_path / "op", progress=False, log=quiet)
    shard = load_file(tmp_path / "op" / "shard-00000.safetensors")
    prompts = [FM_PROMPTS(cfg.seed, i)[0] for i in range(4)]
    seeds = [trajectory_seed(cfg.seed, i) for i in range(4)]
    # The tokens are the shortcut sampler's, seed for seed ...
    student = MaskedTokenSampler(tiny_backbone, cfg.steps, policy=ShortcutPolicy(head, budget=2)).generate(list(prompts), list(seeds))
    assert torch.equal(shard["codes"], student.codes.flatten(1))
    assert torch.equal(shard["commit_step"], student.commit_step)
    teacher = MaskedTokenSampler(tiny_backbone, cfg.steps).generate(list(prompts), list(seeds))
    assert not torch.equal(shard["codes"], teacher.codes.flatten(1))
    # ... and the features at every step are the backbone's own for the tokens committed before it.
    layout = tiny_backbone.layout
    base = MaskedTokenSampler(tiny_backbone, cfg.steps).initial_sequences(list(prompts))
    codes = shard["codes"].repeat(2, 1)
    for k in range(cfg.steps):
        committed = (shard["commit_step"] < k).repeat(2, 1)
        true = tiny_backbone.features(layout.with_codes(base, codes, committed))
        recorded = rearrange(shard["features"][:, k], "b r l c -> (r b) l c").float()
        assert torch.allclose(recorded, true, atol=2e-2), k


def test_on_policy_collection_at_full_budget_is_the_teacher_collection(tiny_backbone, tmp_path):
    head = saved_random_head(tiny_backbone, tmp_path / "student")
    collect(tiny_backbone, CollectConfig(**TINY), tmp_path / "teacher", progress=False, log=quiet)
    collect(tiny_backbone, CollectConfig(**TINY, student_budget=TINY["steps"], student_head=head), tmp_path / "op",
            progress=False, log=quiet)
    teacher, on_policy = shard_contents(tmp_path / "teacher"), shard_contents(tmp_path / "op")
    for name in teacher:
        for key in teacher[name]:
            assert torch.equal(teacher[name][key], on_policy[name][key]), (name, key)


@pytest.mark.parametrize("overrides, match", [
    (dict(student_budget=5), "--student-budget must be between 1 and --steps \\(4\\), got 5"),
    (dict(student_budget=0), "--student-budget must be between 1"),
    (dict(student_head="somewhere"), "--student-head needs --student-budget"),
])
def test_bad_student_settings_are_one_line(tiny_backbone, tmp_path, overrides, match):
    with pytest.raises(MigmError, match=match):
        collect(tiny_backbone, CollectConfig(**TINY, **overrides), tmp_path / "op", progress=False, log=quiet)
    assert not (tmp_path / "op").exists()


def test_on_policy_collection_refuses_a_foreign_or_changed_student(tiny_backbone, tmp_path):
    torch.manual_seed(7)
    other = MiniDiMOO(tiny_backbone.config).eval()
    foreign = saved_random_head(other, tmp_path / "foreign")
    with pytest.raises(MigmError, match="trained for base model"):
        collect(tiny_backbone, CollectConfig(**TINY, student_budget=2, student_head=foreign), tmp_path / "op",
                progress=False, log=quiet)
    assert not (tmp_path / "op").exists()
    head = saved_random_head(tiny_backbone, tmp_path / "student")
    collect(tiny_backbone, CollectConfig(**TINY, student_budget=2, student_head=head), tmp_path / "op", progress=False,
            log=quiet)
    saved_random_head(tiny_backbone, tmp_path / "student", seed=1)  # the same folder, other weights
    with pytest.raises(MigmError, match="different student_head_digest"):
        collect(tiny_backbone, CollectConfig(**TINY, student_budget=2, student_head=head), tmp_path / "op",
                progress=False, log=quiet)


def tiny_train_config(tmp_path, data, **overrides) -> HeadTrainConfig:
    base = dict(out=str(tmp_path / "head_run"), data=str(data), steps=6, batch_size=4, warmup=2, checkpoint_every=3,
                val_every=3, val_trajectories=2, device="cpu", lr=1e-3, ema_decay=0.5)
    return HeadTrainConfig(**{**base, **overrides})


@pytest.fixture
def trajectories(tiny_backbone, tmp_path):
    collect(tiny_backbone, CollectConfig(**TINY), tmp_path / "traj", progress=False, log=quiet)
    return tmp_path / "traj"


def test_training_saves_the_ema_head_and_validation_per_step(tiny_backbone, trajectories, tmp_path):
    result = train_head(tiny_train_config(tmp_path, trajectories, kl_weight=0.5, rollout=2), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    head = ShortcutHead.from_pretrained(tmp_path / "head_run" / "shortcut_head")
    head.check_base(tiny_backbone)
    assert [r["step"] for r in result["validation"]] == [0, 1, 2]
    assert {"cos_head", "cos_copy", "mse_head", "mse_copy"} <= set(result["validation"][0])
    assert (tmp_path / "head_run" / "validation.json").is_file()


def test_training_resume_continues_exactly(tiny_backbone, trajectories, tmp_path):
    train_head(tiny_train_config(tmp_path / "a", trajectories), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    straight = load_torch(tmp_path / "a" / "head_run" / "checkpoints" / "head.pt")
    train_head(tiny_train_config(tmp_path / "b", trajectories, steps=3), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    train_head(tiny_train_config(tmp_path / "b", trajectories, resume=True), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    resumed = load_torch(tmp_path / "b" / "head_run" / "checkpoints" / "head.pt")
    assert resumed["step"] == straight["step"] == 6
    for key in straight["ema"]:
        assert torch.equal(straight["ema"][key], resumed["ema"][key]), key
    log_a = (tmp_path / "a" / "head_run" / "train.log").read_text()
    log_b = (tmp_path / "b" / "head_run" / "train.log").read_text()
    loss_line = lambda text: [line.split("head: ")[1] for line in text.splitlines() if "head: step 6/6" in line]
    assert loss_line(log_a) == loss_line(log_b)


def test_guided_kl_is_taken_of_the_logits_the_sampler_draws_from(tiny_backbone):
    from migm_shortcut.samplers.sampler import guided_logits
    from migm_shortcut.train.head import masked_logits

    torch.manual_seed(0)
    layout = tiny_backbone.layout
    features = torch.randn(6, layout.seq_len, tiny_backbone.width)  # 3 samples x (cond, uncond)
    still = torch.rand(3, layout.num_image_tokens) < 0.5
    rows = masked_logits(tiny_backbone, features, still.repeat(2, 1), 2, 3.0)
    # what the sampler computes over the whole image, read at each sample's still-masked positions
    full = tiny_backbone.logits_from_features(features[:, layout.image_positions])
    expected = guided_logits(full, 2, 3.0)[still]
    assert rows.shape == (int(still.sum()), full.shape[-1])
    assert torch.allclose(rows, expected, atol=1e-5)
    assert masked_logits(tiny_backbone, features, still.repeat(2, 1), 2, None).shape[0] == 2 * rows.shape[0]


def test_kl_target_changes_the_loss_and_a_wrong_one_is_refused(tiny_backbone, trajectories, tmp_path):
    from migm_shortcut.train.head import ExampleBatch, TrajectoryStore, rollout_loss

    store = TrajectoryStore.from_folder(trajectories, log=quiet)
    assert store.guidance_scale == CollectConfig(**TINY).guidance_scale
    torch.manual_seed(0)
    head = ShortcutHead.for_base(tiny_backbone)
    torch.nn.init.normal_(head.out.weight, std=0.1)  # not the copy predictor, so the KL terms are not 0
    batch = ExampleBatch.collate([store.example(i, 1, 1) for i in range(4)], torch.full((4,), 1), "cpu")
    loss = lambda **kw: rollout_loss(head, tiny_backbone, batch, tiny_train_config(tmp_path, trajectories, **kw),
                                     store.guidance_scale).item()
    mse_only, branches, guided = loss(), loss(kl_weight=1.0), loss(kl_weight=1.0, kl_target="guided")
    assert mse_only < branches and mse_only < guided and branches != pytest.approx(guided)
    with pytest.raises(MigmError, match="--kl-target must be one of branches, guided"):
        train_head(tiny_train_config(tmp_path, trajectories, kl_target="cfg"), backbone=tiny_backbone, model_prompts=FM_PROMPTS)


def test_fine_tuning_starts_from_the_given_head(tiny_backbone, trajectories, tmp_path):
    train_head(tiny_train_config(tmp_path / "a", trajectories, num_blocks=2), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    start = tmp_path / "a" / "head_run" / "shortcut_head"
    # zero steps of learning: the fine-tuned head must be the starting head, architecture included
    train_head(tiny_train_config(tmp_path / "b", trajectories, init_head=str(start), lr=1e-12, ema_decay=0.0),
               backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    before = ShortcutHead.from_pretrained(start)
    after = ShortcutHead.from_pretrained(tmp_path / "b" / "head_run" / "shortcut_head")
    assert after.config.num_blocks == 2
    for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-3), name


def test_fine_tuning_can_add_the_direct_token_path_to_a_trained_head(tiny_backbone, trajectories, tmp_path):
    train_head(tiny_train_config(tmp_path / "a", trajectories), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    start = tmp_path / "a" / "head_run" / "shortcut_head"
    train_head(tiny_train_config(tmp_path / "b", trajectories, init_head=str(start), direct_token_path=True, lr=1e-12,
                                 ema_decay=0.0), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    before = ShortcutHead.from_pretrained(start)
    after = ShortcutHead.from_pretrained(tmp_path / "b" / "head_run" / "shortcut_head")
    assert after.config.direct_token_path and not before.config.direct_token_path
    assert "extended with the direct token path" in (tmp_path / "b" / "head_run" / "train.log").read_text()
    for name, a in before.state_dict().items():  # the head it started from, plus a path at (about) zero
        assert torch.allclose(a.float(), after.state_dict()[name].float(), atol=1e-3), name
    assert after.token_at_position.weight.abs().max() < 1e-3


def test_fine_tuning_refuses_a_head_of_another_model(tiny_backbone, trajectories, tmp_path):
    from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO

    torch.manual_seed(5)
    other = MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=4, width=32, depth=2, heads=2)).eval()
    ShortcutHead.for_base(other).save_pretrained(tmp_path / "other_head")
    with pytest.raises(MigmError, match="trained for base model|expects features of width"):
        train_head(tiny_train_config(tmp_path, trajectories, init_head=str(tmp_path / "other_head")),
                   backbone=tiny_backbone, model_prompts=FM_PROMPTS)


def test_a_head_of_another_checkpoint_is_fine_tuned_only_when_asked(tiny_backbone, trajectories, tmp_path):
    from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO

    torch.manual_seed(5)  # the same architecture, other weights: an earlier checkpoint of a base being retrained
    earlier = MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=4, width=32, depth=2, heads=2)).eval()
    ShortcutHead.for_base(earlier).save_pretrained(tmp_path / "earlier_head")
    train_head(tiny_train_config(tmp_path / "run", trajectories, init_head=str(tmp_path / "earlier_head"),
                                 rebind_init_head=True), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    tuned = ShortcutHead.from_pretrained(tmp_path / "run" / "head_run" / "shortcut_head")
    assert tuned.config.base_fingerprint == tiny_backbone.fingerprint != earlier.fingerprint
    tuned.check_base(tiny_backbone)
    # another architecture is refused even when asked
    wider = MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=4, width=32, depth=3, heads=2)).eval()
    ShortcutHead.for_base(wider).save_pretrained(tmp_path / "wider_head")
    with pytest.raises(MigmError, match="another architecture"):
        train_head(tiny_train_config(tmp_path / "bad", trajectories, init_head=str(tmp_path / "wider_head"),
                                     rebind_init_head=True), backbone=tiny_backbone, model_prompts=FM_PROMPTS)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_backbone, trajectories, tmp_path):
    train_head(tiny_train_config(tmp_path, trajectories, steps=3), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    for shard in trajectories.glob("shard-*.safetensors"):
        tensors = load_file(shard)
        tensors["features"][:] = float("nan")
        save_file(tensors, shard, metadata={"format": "migm-shortcut-trajectories/1",
                                            "base_fingerprint": tiny_backbone.fingerprint, "steps": "4"})
    with pytest.raises(MigmError, match="loss became nan .* last good checkpoint"):
        train_head(tiny_train_config(tmp_path, trajectories, resume=True), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    assert load_torch(tmp_path / "head_run" / "checkpoints" / "head.pt")["step"] == 3


def test_validate_head_recomputes_validation_and_scores_the_training_split(tiny_backbone, trajectories, tmp_path):
    from migm_shortcut.train.head import evaluate_head

    # An untrained head has a zero output layer: it is the copy predictor, to the digit.
    copy = evaluate_head(ShortcutHead.for_base(tiny_backbone), tiny_backbone, trajectories, num=2, log=quiet)
    assert copy["trajectories"] == 1  # 10 trajectories: train-head holds out min(2, 10 // 10)
    for row in copy["rows"]:
        assert row["mse_head"] == row["mse_copy"] and row["agree_head"] == row["agree_copy"]
        assert row["kl_head"] == row["kl_copy"] > 0

    result = train_head(tiny_train_config(tmp_path, trajectories, steps=3), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    trained = ShortcutHead.from_pretrained(tmp_path / "head_run" / "shortcut_head")
    held_out = evaluate_head(trained, tiny_backbone, trajectories, "held-out", num=2, log=quiet)
    # the saved head is the fp16 copy of the EMA head training validated
    for mine, logged in zip(held_out["rows"], result["validation"]):
        assert mine["step"] == logged["step"]
        assert mine["mse_copy"] == pytest.approx(logged["mse_copy"], rel=1e-6)
        assert mine["mse_head"] == pytest.approx(logged["mse_head"], rel=1e-2)
    seen = evaluate_head(trained, tiny_backbone, trajectories, "train", num=4, log=quiet)
    assert seen["trajectories"] == 4 and seen["rows"] != held_out["rows"]

    # rolled J steps: rows for k = 0 .. N-1-J, each scored against step k+J; copy is h_k held J steps
    rolled = evaluate_head(trained, tiny_backbone, trajectories, num=2, log=quiet, rollout=2)
    assert [r["step"] for r in rolled["rows"]] == [0, 1]
    assert rolled["rows"][0]["mse_copy"] != held_out["rows"][0]["mse_copy"]
    rolled_copy = evaluate_head(ShortcutHead.for_base(tiny_backbone), tiny_backbone, trajectories, num=2, log=quiet,
                                rollout=2)
    for row, copy_row in zip(rolled_copy["rows"], rolled["rows"]):
        assert row["mse_head"] == row["mse_copy"] == copy_row["mse_copy"]
    with pytest.raises(MigmError, match="rollout must be between 1 and 3"):
        evaluate_head(trained, tiny_backbone, trajectories, log=quiet, rollout=4)

    with pytest.raises(MigmError, match="split must be"):
        evaluate_head(trained, tiny_backbone, trajectories, "test", log=quiet)
    from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO

    other = MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=4, width=32, depth=2, heads=2)).eval()
    with pytest.raises(MigmError, match="trained for base model"):
        evaluate_head(trained, other, trajectories, log=quiet)


def test_trajectories_of_another_model_are_refused(trajectories, tmp_path):
    torch.manual_seed(5)
    from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO

    other = MiniDiMOO(BackboneConfig(codebook_size=16, grid_size=4, width=32, depth=2, heads=2)).eval()
    with pytest.raises(MigmError, match="another base model"):
        train_head(tiny_train_config(tmp_path, trajectories), backbone=other)


def test_online_training_needs_no_disk_and_resumes_exactly(tiny_backbone, tmp_path):
    opts = dict(online=True, teacher_steps=4, online_trajectories=3, online_steps_per_round=2)
    train_head(tiny_train_config(tmp_path / "a", None, **opts), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    train_head(tiny_train_config(tmp_path / "b", None, steps=3, **opts), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    train_head(tiny_train_config(tmp_path / "b", None, resume=True, **opts), backbone=tiny_backbone, model_prompts=FM_PROMPTS)
    a = load_torch(tmp_path / "a" / "head_run" / "checkpoints" / "head.pt")["ema"]
    b = load_torch(tmp_path / "b" / "head_run" / "checkpoints" / "head.pt")["ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "a").rglob("shard-*"))


def torchrun(*args, cwd):
    exe = Path(sys.executable).parent
    cmd = [str(exe / "torchrun"), "--standalone", "--nproc-per-node", "2", str(exe / "migm-shortcut"), "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_two_process_torchrun_collection_and_training(tiny_weights, tmp_path):
    out = tmp_path / "traj"
    run = torchrun("collect", "--num", "8", "--steps", "3", "--shard-size", "2", "--batch-size", "2",
                   "--out", str(out), "--weights", str(tiny_weights), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(list(out.glob("shard-*.safetensors"))) == 4
    assert (out / "collect.log").is_file() and (out / "collect.rank1.log").is_file()
    run = torchrun("train-head", "--data", str(out), "--out", str(tmp_path / "head"), "--weights", str(tiny_weights),
                   "--steps", "4", "--batch-size", "2", "--val-trajectories", "1", "--device", "cpu", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 process(es)" in (tmp_path / "head" / "train.log").read_text()
    ShortcutHead.from_pretrained(tmp_path / "head" / "shortcut_head")


def test_collection_says_what_it_will_write_and_refuses_what_cannot_fit(tiny_backbone, tmp_path, monkeypatch):
    import shutil as shutil_module

    from migm_shortcut.train import trajectories

    cfg = CollectConfig(num=4, steps=3, shard_size=2, batch_size=2)
    said = []
    collect(tiny_backbone, cfg, tmp_path / "ok", progress=False, log=said.append)
    per = trajectories.trajectory_bytes(tiny_backbone, cfg)
    # 3 steps x 2 CFG branches x L positions x C channels in fp16, plus the small tensors
    assert per > 3 * 2 * tiny_backbone.layout.seq_len * tiny_backbone.width * 2
    assert any(f"4 trajectories to write, {trajectories.human_bytes(per)} each" in line for line in said)
    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(trajectories.shutil, "disk_usage", lambda path: usage._replace(free=per))
    with pytest.raises(MigmError, match="collecting 4 trajectories needs .* free; train online instead"):
        collect(tiny_backbone, cfg, tmp_path / "full", progress=False, log=said.append)
    assert not (tmp_path / "full").exists()
