"""Data-parallel evaluation under torchrun (gloo on this CPU): the images of K processes are the images of
one, byte for byte, and a run cut off resumes with nothing lost."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_route import run
from test_head_training import torchrun

SAMPLE = ["sample", "--prompt", "a photo of a bag", "--prompt", "a photo of a sneaker", "--per-prompt", "3",
          "--steps", "4", "--batch-size", "2"]


def pngs(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def one_process(*args, cwd):
    """The command in one process with the threads torchrun's processes get (thread counts change round-off)."""
    exe = Path(sys.executable).parent / "migm-shortcut"
    return subprocess.run([str(exe), *args], cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)


def test_two_process_sample_writes_the_images_of_one(tiny_weights, tmp_path):
    one = one_process(*SAMPLE, "--weights", str(tiny_weights), "--out-dir", str(tmp_path / "one"), cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun(*SAMPLE, "--weights", str(tiny_weights), "--out-dir", str(tmp_path / "two"), cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-4000:]
    assert len(pngs(tmp_path / "one")) == 6 and pngs(tmp_path / "one") == pngs(tmp_path / "two")
    one_run, two_run = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("one", "two"))
    assert two_run["processes"] == 2 and one_run["processes"] == 1
    assert two_run["full_steps"] == one_run["full_steps"] == [4] * 6
    assert two_run["throughput_images_per_s"] > 0


def test_a_sample_run_cut_off_resumes_and_other_settings_are_refused(tiny_weights, tmp_path, capsys):
    out = tmp_path / "s"
    assert run(capsys, *SAMPLE, "--weights", tiny_weights, "--out-dir", out)[0] == 0
    whole = pngs(out)
    for name in ("000001.png", "000004.png"):  # as if the run had been killed before these
        (out / name).unlink()
    code, printed, err = run(capsys, *SAMPLE, "--weights", tiny_weights, "--out-dir", out, "--resume")
    assert code == 0 and "wrote 2 of 6 images" in printed, err
    assert pngs(out) == whole
    assert json.loads((out / "run.json").read_text())["full_steps"] == [4] * 6
    code, _, err = run(capsys, *SAMPLE[:-4], "--steps", "6", "--batch-size", "2", "--weights", tiny_weights,
                       "--out-dir", out, "--resume")
    assert code == 2 and "holds images of other settings" in err and len(err.strip().splitlines()) == 1


def sweep_config(path):
    path.write_text(json.dumps({"per_class": 1, "quick_per_class": 1, "batch_size": 2, "reference_size": None,
                                "quick_reference_size": None, "inception": True,
                                "baseline": {"policy": "vanilla", "steps": 3},
                                "settings": [{"policy": "vanilla", "steps": 2}]}))
    return path


SCORES = ("fid", "domain_fid", "prompt_accuracy", "num_images", "full_steps", "gflops")


def test_two_process_sweep_gives_the_scores_of_one_and_resumes(tiny_weights, fake_fashion_mnist, tmp_path):
    config = sweep_config(tmp_path / "sweep.json")
    env_args = ["sweep", "--config", str(config), "--weights", str(tiny_weights)]
    one = one_process(*env_args, "--out", str(tmp_path / "one"), cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun(*env_args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-4000:]
    rows = {d: json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two")}
    assert rows["two"]["processes"] == 2
    for a, b in zip(rows["one"]["rows"], rows["two"]["rows"]):
        assert a["setting"] == b["setting"]
        for key in SCORES:
            if a[key] is None:  # the real images' row has no speed
                assert b[key] is None
            else:
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (a["setting"], key)
    assert rows["two"]["rows"][1]["throughput_images_per_s"] > 0
    # cut off after its first setting row: the rerun under torchrun measures only the rest
    cut = rows["two"]
    cut["rows"] = cut["rows"][:2]
    (tmp_path / "two" / "results.json").write_text(json.dumps(cut))
    again = torchrun(*env_args, "--out", str(tmp_path / "two"), "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads((tmp_path / "two" / "results.json").read_text())
    assert [r["setting"] for r in resumed["rows"]] == [r["setting"] for r in rows["one"]["rows"]]
    assert resumed["rows"][0] == cut["rows"][0]  # kept; the baseline is timed again beside the new row, as in one process
    assert resumed["rows"][2]["fid"] == pytest.approx(rows["one"]["rows"][2]["fid"], rel=1e-6)


def test_two_process_calibration_writes_the_table_of_one(tiny_weights, tmp_path):
    args = ["calibrate", "--num", "6", "--steps", "4", "--batch-size", "2", "--weights", str(tiny_weights)]
    one = one_process(*args, "--out", str(tmp_path / "one.json"), cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun(*args, "--out", str(tmp_path / "two.json"), cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-4000:]
    tables = [json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json")]
    assert tables[0]["sensitivity"] == pytest.approx(tables[1]["sensitivity"], rel=1e-9)
    assert tables[0]["num_samples"] == tables[1]["num_samples"] == 6


def test_two_process_inception_score_and_image_reward_are_those_of_one(tiny_weights, tmp_path, monkeypatch):
    """The prompts route's metrics synced over the processes: FID, Inception Score (its shuffle the same for
    any split of the images) and ImageReward (the stand-in package) equal one process's."""
    from migm_shortcut.eval.fid import InceptionFeatures

    from image_reward_standin import write_package, write_weights_folder
    from test_inception_score import fidelity_weights
    from tiny_amused_pipeline import write_reference_images

    weights = tmp_path / "inception.pth"
    fidelity_weights(weights, InceptionFeatures().net)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(write_package(tmp_path / "site")),
                                                      os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MIGM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "prompts.txt").write_text("a photo of a bag\na photo of a dress\n")
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"batch_size": 2, "baseline": {"policy": "vanilla", "steps": 3},
                                  "settings": [{"policy": "vanilla", "steps": 2}]}))
    args = ["sweep", "--config", str(config), "--weights", str(tiny_weights), "--prompts-file",
            str(tmp_path / "prompts.txt"), "--per-prompt", "6", "--reference", str(write_reference_images(tmp_path / "real", 12)),
            "--inception-weights", str(weights), "--image-reward", str(write_weights_folder(tmp_path / "reward"))]
    one = one_process(*args, "--out", str(tmp_path / "one"), cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = torchrun(*args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-4000:]
    rows = {d: json.loads((tmp_path / d / "results.json").read_text())["rows"] for d in ("one", "two")}
    for a, b in zip(rows["one"], rows["two"]):
        for key in ("fid", "inception_score", "image_reward"):
            assert a[key] is not None and a[key] == pytest.approx(b[key], rel=1e-6), (a["setting"], key)
