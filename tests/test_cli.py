import json

import pytest
from PIL import Image

from migm_shortcut import MigmError
from migm_shortcut.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sample_writes_pngs_in_prompt_order_and_run_json(tmp_path, capsys, tiny_weights):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a sneaker\n# a comment\n\na photo of a dress\n")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "sample", "--prompts-file", str(prompts), "--per-prompt", "2", "--steps", "3",
                            "--seed", "5", "--batch-size", "3", "--out-dir", str(out), "--grid", str(tmp_path / "g.png"),
                            "--weights", str(tiny_weights))
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:06d}.png" for i in range(4)]
    assert Image.open(out / "000000.png").size == (28, 28)
    info = json.loads((out / "run.json").read_text())
    assert info["steps"] == 3 and info["seed"] == 5 and info["policy"] == "vanilla"
    assert info["prompts"] == ["a photo of a sneaker", "a photo of a dress"] and info["num_images"] == 4
    assert info["loop_seconds"] > 0
    assert (tmp_path / "g.png").is_file()


def test_same_seed_same_images(tmp_path, capsys, tiny_weights):
    for name in ("a", "b"):
        assert run(capsys, "sample", "--prompt", "a bag", "--per-prompt", "2", "--steps", "2", "--seed", "3",
                   "--out-dir", str(tmp_path / name), "--weights", str(tiny_weights))[0] == 0
    for i in range(2):
        assert (tmp_path / "a" / f"{i:06d}.png").read_bytes() == (tmp_path / "b" / f"{i:06d}.png").read_bytes()


def test_unknown_prompt_word_is_one_line_and_writes_nothing(tmp_path, capsys, tiny_weights):
    code, _, err = run(capsys, "sample", "--prompt", "a photo of a giraffe", "--out-dir", str(tmp_path / "o"),
                       "--weights", str(tiny_weights))
    assert code == 2
    assert err.count("\n") == 1 and "giraffe" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,value", [("--steps", "0"), ("--batch-size", "0"), ("--per-prompt", "-1")])
def test_counts_below_one_are_rejected(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--prompt", "a bag", "--out-dir", str(tmp_path), flag, value])
    assert exc.value.code == 2
    assert "at least 1" in capsys.readouterr().err


def test_missing_weights_and_prompts(tmp_path, capsys):
    code, _, err = run(capsys, "sample", "--prompt", "a bag", "--out-dir", str(tmp_path / "o"),
                       "--weights", str(tmp_path / "none"))
    assert code == 2 and "train-base" in err
    code, _, err = run(capsys, "sample", "--out-dir", str(tmp_path / "o"))
    assert code == 2 and "no prompts" in err


def test_unknown_policy(tmp_path, capsys, tiny_weights):
    code, _, err = run(capsys, "sample", "--prompt", "a bag", "--policy", "magic", "--out-dir", str(tmp_path / "o"),
                       "--weights", str(tiny_weights))
    assert code == 2 and "unknown policy 'magic'" in err


def test_demo_writes_a_labelled_grid(tmp_path, capsys, tiny_weights):
    code, out, err = run(capsys, "demo", "--out-dir", str(tmp_path), "--per-class", "1", "--steps", "2",
                         "--weights", str(tiny_weights))
    assert code == 0, err
    assert (tmp_path / "demo_grid.png").is_file() and "demo grid" in out


def test_demo_refuses_a_single_policy_it_would_ignore(tmp_path, capsys):
    # the demo compares --methods; a --policy flag would otherwise be dropped without a word
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--policy", "shortcut", "--out-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "unrecognized arguments: --policy shortcut" in capsys.readouterr().err
    assert not (tmp_path / "demo_grid.png").exists()


def test_train_base_on_tiny_data_then_resume(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), labels=np.arange(40) % 10)
    args = ["train-base", "--out", str(tmp_path / "w"), "--data", str(tmp_path / "d.npz"), "--device", "cpu",
            "--classifier-steps", "3", "--vq-steps", "3", "--backbone-steps", "3"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    metrics = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert set(metrics) == {"classifier", "vq", "backbone"}
    assert {"test_psnr_db", "classifier_accuracy_on_reconstructions"} <= set(metrics["vq"])
    # Resuming a finished run does no more steps and reproduces the same weights.
    before = (tmp_path / "w" / "backbone" / "model.safetensors").read_bytes()
    assert run(capsys, *args, "--resume", "--stages", "backbone")[0] == 0
    assert (tmp_path / "w" / "backbone" / "model.safetensors").read_bytes() == before


def test_a_long_run_continues_on_a_new_machine_from_its_milestone(tmp_path, capsys):
    import numpy as np

    from migm_shortcut.train.base import export_milestone

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), labels=np.arange(40) % 10)
    common = ["--data", str(tmp_path / "d.npz"), "--device", "cpu", "--classifier-steps", "2", "--vq-steps", "2",
              "--backbone-steps", "6", "--checkpoint-every", "2", "--curve-images", "4"]
    assert run(capsys, "train-base", "--out", str(tmp_path / "a"), *common, "--stop-at", "4")[0] == 0
    info = export_milestone(tmp_path / "a", tmp_path / "milestone")
    assert info["step"] == 4 and info["backbone_steps"] == 6 and info["backbone_batch_size"] == 64
    assert (tmp_path / "milestone" / "backbone" / "model.safetensors").is_file()

    # A fresh folder (the old machine gone) continues the schedule from step 4, keeping the curve.
    code, out, err = run(capsys, "train-base", "--out", str(tmp_path / "b"), *common, "--stages", "backbone",
                         "--resume", "--continue-from", str(tmp_path / "milestone"))
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "curve.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    log = (tmp_path / "b" / "train.log").read_text()
    assert "continuing the schedule at step 4" in log and "backbone: step 6/6" in log
    assert "backbone: step 2/6" in log  # the milestone's own history came along
    assert (tmp_path / "b" / "backbone" / "model.safetensors").is_file()

    # Another schedule cannot continue it: one line, non-zero.
    code, out, err = run(capsys, "train-base", "--out", str(tmp_path / "c"), *common[:-6], "--backbone-steps", "8",
                         "--stages", "backbone", "--continue-from", str(tmp_path / "milestone"))
    assert code == 2 and "used backbone-steps 6, this one 8" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def weights_with_head(tmp_path, tiny_weights):
    import shutil

    from migm_shortcut.embedded.backbone import MiniDiMOO
    from migm_shortcut.shortcut import ShortcutHead

    root = tmp_path / "weights"
    shutil.copytree(tiny_weights, root)
    ShortcutHead.for_base(MiniDiMOO.from_pretrained(root / "backbone")).save_pretrained(root / "shortcut_head")
    return root


def test_on_policy_collect_uses_the_weights_head_and_refuses_bad_students(tmp_path, capsys, weights_with_head):
    w = str(weights_with_head)
    code, out, err = run(capsys, "collect", "--num", "2", "--steps", "3", "--shard-size", "2", "--out",
                         str(tmp_path / "op"), "--student-budget", "2", "--weights", w)
    assert code == 0, err
    manifest = json.loads((tmp_path / "op" / "collection.json").read_text())
    assert manifest["student_budget"] == 2 and manifest["student_head"] == str(weights_with_head / "shortcut_head")
    for argv, match in ((["--student-head", str(weights_with_head / "shortcut_head")], "--student-head needs --student-budget"),
                        (["--student-budget", "4"], "--student-budget must be between 1 and --steps (3), got 4")):
        code, out, err = run(capsys, "collect", "--num", "2", "--steps", "3", "--out", str(tmp_path / "bad"),
                             "--weights", w, *argv)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()


def test_validate_head_prints_the_per_step_table_and_writes_json(tmp_path, capsys, weights_with_head):
    w = str(weights_with_head)
    assert run(capsys, "collect", "--num", "4", "--steps", "3", "--shard-size", "2", "--out", str(tmp_path / "traj"),
               "--weights", w)[0] == 0
    code, out, err = run(capsys, "validate-head", "--data", str(tmp_path / "traj"), "--split", "train", "--num", "3",
                         "--out", str(tmp_path / "v.json"), "--weights", w)
    assert code == 0, err
    assert "train trajectories" in out and out.splitlines()[-2].startswith("mean |")
    saved = json.loads((tmp_path / "v.json").read_text())
    assert saved["trajectories"] == 3 and [r["step"] for r in saved["rows"]] == [0, 1]
    assert saved["head"] == str(weights_with_head / "shortcut_head")
    # the WEIGHTS/head of an untrained head is the copy predictor
    assert saved["mean"]["mse_head"] == saved["mean"]["mse_copy"]

    code, out, err = run(capsys, "validate-head", "--data", str(tmp_path / "traj"), "--rollout", "2", "--weights", w)
    assert code == 0 and "head rolled 2 steps" in out and out.splitlines()[2].startswith("   0 |")
    code, out, err = run(capsys, "validate-head", "--data", str(tmp_path / "traj"), "--rollout", "3", "--weights", w)
    assert code == 2 and "rollout must be between 1 and 2" in err and len(err.strip().splitlines()) == 1

    code, out, err = run(capsys, "validate-head", "--data", str(tmp_path / "nowhere"), "--weights", w)
    assert code == 2 and "trajectory folder not found" in err and len(err.strip().splitlines()) == 1


def test_demo_compares_vanilla_and_shortcut_when_a_head_exists(tmp_path, capsys, weights_with_head):
    code, out, err = run(capsys, "demo", "--out-dir", str(tmp_path / "d"), "--per-class", "1", "--steps", "4",
                         "--budget", "2", "--weights", str(weights_with_head))
    assert code == 0, err
    assert "shortcut B=2" in out and "speedup" in out and "2.0 full steps" in out


def test_sample_with_the_shortcut_policy_records_it(tmp_path, capsys, weights_with_head):
    code, out, err = run(capsys, "sample", "--prompt", "a photo of a bag", "--per-prompt", "2", "--steps", "4",
                         "--policy", "shortcut", "--budget", "2", "--out-dir", str(tmp_path / "o"),
                         "--weights", str(weights_with_head))
    assert code == 0, err
    meta = json.loads((tmp_path / "o" / "run.json").read_text())
    assert meta["policy"] == "shortcut" and meta["policy_params"]["budget"] == 2 and meta["mean_full_steps"] == 2
    assert "shortcut_guidance" not in meta["policy_params"]
    code, out, err = run(capsys, "sample", "--prompt", "a photo of a bag", "--steps", "4", "--policy", "shortcut",
                         "--shortcut-guidance", "2", "--out-dir", str(tmp_path / "g"), "--weights", str(weights_with_head))
    assert code == 0, err
    assert json.loads((tmp_path / "g" / "run.json").read_text())["policy_params"]["shortcut_guidance"] == 2.0


def test_sample_with_explicit_full_steps(tmp_path, capsys, weights_with_head):
    code, out, err = run(capsys, "sample", "--prompt", "a photo of a bag", "--steps", "4", "--policy", "shortcut",
                         "--full-steps", "0,3", "--out-dir", str(tmp_path / "o"), "--weights", str(weights_with_head))
    assert code == 0, err
    meta = json.loads((tmp_path / "o" / "run.json").read_text())
    assert meta["policy_params"]["full_steps"] == [0, 3] and meta["mean_full_steps"] == 2
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it before any work
        main(["sample", "--prompt", "a photo of a bag", "--policy", "shortcut", "--full-steps", "0,x",
              "--out-dir", str(tmp_path / "p"), "--weights", str(weights_with_head)])
    assert exit_info.value.code == 2 and "like 0,7,10,13" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("budget", ["5", "0"])
def test_sample_rejects_a_budget_outside_1_to_n(tmp_path, capsys, weights_with_head, budget):
    code, _, err = run(capsys, "sample", "--prompt", "a photo of a bag", "--steps", "4", "--policy", "shortcut",
                       "--budget", budget, "--out-dir", str(tmp_path / "o"), "--weights", str(weights_with_head))
    assert code == 2 and "budget" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_sample_rejects_a_head_of_another_model(tmp_path, capsys, weights_with_head, tiny_backbone):
    from migm_shortcut.shortcut import ShortcutHead

    ShortcutHead.for_base(tiny_backbone).save_pretrained(tmp_path / "other_head")
    code, _, err = run(capsys, "sample", "--prompt", "a photo of a bag", "--steps", "4", "--policy", "shortcut",
                       "--head", str(tmp_path / "other_head"), "--out-dir", str(tmp_path / "o"),
                       "--weights", str(weights_with_head))
    assert code == 2 and ("width" in err or "trained for base model" in err)


def test_calibrate_then_sample_with_every_policy(tmp_path, capsys, weights_with_head):
    cal = tmp_path / "cal.json"
    code, out, err = run(capsys, "calibrate", "--out", str(cal), "--num", "4", "--steps", "4", "--batch-size", "2",
                         "--weights", str(weights_with_head))
    assert code == 0, err
    assert json.loads(cal.read_text())["num_steps"] == 4 and "sensitivity J_k" in out
    for policy, flags, full in (("sencache", ["--eps", "0", "--calibration", str(cal)], 4),
                                ("adaptive", ["--eps", "0", "--calibration", str(cal)], 4),
                                ("mlcache", ["--warmup", "0.5", "--interval", "3", "--recompute", "0.1"], 3),  # steps 0..int(4*0.5)
                                ("fixed", ["--interval", "2"], 2),
                                ("hybrid", ["--budget", "2", "--recompute", "0.1"], 2)):
        code, _, err = run(capsys, "sample", "--prompt", "a photo of a bag", "--per-prompt", "2", "--steps", "4",
                           "--policy", policy, *flags, "--out-dir", str(tmp_path / policy), "--weights", str(weights_with_head))
        assert code == 0, err
        meta = json.loads((tmp_path / policy / "run.json").read_text())
        assert meta["policy"] == policy and meta["mean_full_steps"] == full, (policy, meta)


@pytest.mark.parametrize("flags, message", [
    (["--policy", "sencache", "--eps", "-1"], "eps must be a number >= 0"),
    (["--policy", "sencache", "--max-reuse", "0"], "max_reuse (K) must be"),
    (["--policy", "mlcache", "--interval", "0"], "refresh interval"),
    (["--policy", "fixed", "--interval", "0"], "interval must be"),
    (["--policy", "hybrid", "--recompute", "0"], "recompute ratio must be in"),
    (["--policy", "sencache", "--steps", "5"], "calibration"),
    (["--policy", "shortcut", "--shortcut-guidance", "-1"], "shortcut_guidance must be a number >= 0"),
])
def test_bad_policy_settings_are_one_line_errors(tmp_path, capsys, tiny_weights, flags, message):
    code, _, err = run(capsys, "sample", "--prompt", "a photo of a bag", *flags, "--out-dir", str(tmp_path / "o"),
                       "--weights", str(tiny_weights))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_demo_compares_every_policy_it_can_run(tmp_path, capsys, weights_with_head):
    code, out, err = run(capsys, "calibrate", "--out", str(weights_with_head / "calibration.json"), "--num", "2",
                         "--steps", "4", "--weights", str(weights_with_head))
    assert code == 0, err
    code, out, err = run(capsys, "demo", "--out-dir", str(tmp_path / "d"), "--per-class", "1", "--steps", "4",
                         "--weights", str(weights_with_head))
    assert code == 0, err
    for label in ("vanilla", "shortcut B=4", "adaptive eps=0.4", "sencache eps=0.3 K=3", "mlcache w=0.3 k=5 r=0.1",
                  "fixed k=2"):
        assert f"{label}: 10 images" in out, label
    # methods by classes: a row per method, a column per class, so the grid is wider than tall
    from PIL import Image

    width, height = Image.open(tmp_path / "d" / "demo_grid.png").size
    assert width > height


@pytest.mark.parametrize("argv,what", [
    (["sample", "--prompt", "a bag", "--out-dir", "o", "--steps", "0"], "--steps must be at least 1"),
    (["sample", "--prompt", "a bag", "--out-dir", "o", "--guidance-scale", "nan"], "expected a finite number"),
    (["sample", "--prompt", "a bag", "--out-dir", "o", "--eps", "inf"], "expected a finite number"),
    (["sample", "--prompt", "a bag"], "required: --out-dir"),
])
def test_usage_errors_are_one_line_without_the_usage_block(tmp_path, capsys, monkeypatch, argv, what):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and what in err and "usage:" not in err
    assert not (tmp_path / "o").exists()


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_non_finite_config_values_are_refused(tmp_path):
    from migm_shortcut.eval.sweep import load_sweep_config
    from migm_shortcut.train.head import HeadTrainConfig

    (tmp_path / "s.json").write_text('{"settings": [{"policy": "vanilla", "steps": 4, "guidance_scale": NaN}]}')
    with pytest.raises(MigmError, match="guidance_scale must be a finite number"):
        load_sweep_config(tmp_path / "s.json")
    with pytest.raises(MigmError, match="--lr must be a finite number"):
        HeadTrainConfig(out=str(tmp_path), online=True, lr=float("nan")).check()


@pytest.mark.parametrize("methods", ["shortcut", "vanilla,bogus", ","])
def test_demo_methods_that_do_not_start_with_vanilla_or_name_no_policy_are_one_line(tmp_path, capsys, methods):
    code, _, err = run(capsys, "demo", "--out-dir", str(tmp_path / "d"), "--methods", methods, "--steps", "2")
    assert code == 2 and "--methods must start with vanilla and name policies from vanilla, shortcut" in err
    assert len(err.strip().splitlines()) == 1
