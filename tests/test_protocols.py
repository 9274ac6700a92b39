"""The papers' evaluations as shipped configs: the published settings, one command on a downloaded
folder, the published numbers beside ours in the report, and one-line refusals; ImageReward from a
local folder."""

import json
import shutil
import sys

import pytest
import torch

from migm_shortcut import MigmError, load_model
from migm_shortcut.eval.protocols import resolve_config, shipped_protocols
from migm_shortcut.eval.sweep import load_sweep_config
from migm_shortcut.maskgit.transformer import MaskTransformer

from cli_route import run
from image_reward_standin import write_package, write_weights_folder
from taming_standin import write_taming_vqgan
from test_inception_score import fidelity_weights
from test_maskgit import random_head
from tiny_amused_pipeline import write_reference_images


def test_the_shipped_protocols_hold_the_published_settings():
    assert shipped_protocols() == ["dimoo-1024", "maskgit-512"]
    maskgit = load_sweep_config("maskgit-512")
    shortcut = sorted((s.steps, s.params["budget"]) for s in maskgit.settings if s.policy == "shortcut")
    assert shortcut == [(15, 7), (15, 8), (32, 8), (32, 9), (32, 12)]  # MaskGIT-Shortcut/eval.sh
    assert maskgit.baseline.steps == 15 and maskgit.per_class == 50 and maskgit.class_prompts
    assert maskgit.protocol["grid"] == [32, 32] and "inception_score" in maskgit.protocol["metrics"]
    dimoo = load_sweep_config("dimoo-1024")
    assert dimoo.baseline.steps == 64 and dimoo.protocol["grid"] == [64, 64] and dimoo.batch_size == 1
    assert {s.params.get("budget") for s in dimoo.settings if s.policy == "shortcut"} == {14, 11, 9}
    assert {"image_reward", "clip_score"} == set(dimoo.protocol["metrics"])
    with pytest.raises(MigmError, match="a shipped protocol: dimoo-1024, maskgit-512"):
        load_sweep_config("maskgit-1024")


def test_a_protocol_whose_published_row_names_no_setting_is_refused(tmp_path):
    raw = json.loads(resolve_config("maskgit-512").read_text())
    raw["protocol"]["published"]["rows"].append({"setting": "shortcut N=15 B=6", "fid": 9.0})
    (tmp_path / "p.json").write_text(json.dumps(raw))
    with pytest.raises(MigmError, match="'shortcut N=15 B=6' names no setting"):
        load_sweep_config(tmp_path / "p.json")
    raw["protocol"]["metrics"] = ["kid"]
    (tmp_path / "p.json").write_text(json.dumps(raw))
    with pytest.raises(MigmError, match="metric 'kid' is unknown"):
        load_sweep_config(tmp_path / "p.json")


# A MaskGIT at the 512 model's token grid (32 x 32), tiny otherwise, in the released layout.
GRID32 = dict(img_size=512, hidden_dim=16, codebook_size=16, f_factor=32, depth=1, heads=2, mlp_dim=32, dropout=0.0,
              nclass=5)


@pytest.fixture(scope="module")
def maskgit_512(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maskgit512") / "pretrained_maskgit"
    (folder / "MaskGIT").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"model_state_dict": MaskTransformer(**GRID32).state_dict(), "iter": 1, "global_epoch": 1},
               folder / "MaskGIT" / "MaskGIT_ImageNet_512.pth")
    (folder / "MaskGIT" / "config.json").write_text(json.dumps(GRID32))
    write_taming_vqgan(folder / "VQGAN")
    random_head(load_model(folder).backbone).save_pretrained(folder / "shortcut_head")  # the folder's own head
    return folder


def test_the_maskgit_protocol_runs_as_one_command_and_reports_beside_the_published(maskgit_512, tmp_path, capsys,
                                                                                   monkeypatch):
    from migm_shortcut.eval.fid import InceptionFeatures

    monkeypatch.setenv("MIGM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    fidelity_weights(weights, InceptionFeatures().net)
    reference = write_reference_images(tmp_path / "imagenet_val", count=12, size=16)
    common = ["sweep", "--config", "maskgit-512", "--model", maskgit_512, "--per-class", "2", "--out", tmp_path / "run"]
    code, _, err = run(capsys, *common, "--reference", reference)  # no classifier, none cached
    assert code == 2 and err.count("\n") == 1 and "pass --inception-weights FILE" in err, err
    code, _, err = run(capsys, *common[:-2], "--out", tmp_path / "run")  # no reference
    assert code == 2 and "pass --reference FOLDER" in err, err
    code, out, err = run(capsys, *common, "--reference", reference, "--inception-weights", weights)
    assert code == 0, err
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {r["setting"]: r for r in result["rows"]}
    assert list(rows)[0] == "vanilla N=15" and len(rows) == 8 and result["num_images_per_setting"] == 10
    assert rows["shortcut N=32 B=12"]["full_steps"] == 12 and rows["vanilla N=32"]["full_steps"] == 32
    assert all(r["fid"] > 0 and r["inception_score"] >= 1 for r in rows.values())
    assert result["protocol"]["name"] == "maskgit-512" and "--config maskgit-512" in result["command"]
    report = (tmp_path / "run" / "results.md").read_text()
    assert "published and measured" in report and "| vanilla N=15 | fid | 7.600 |" in report
    assert "| shortcut N=32 B=12 | speedup | 1.09x |" in report  # 0.050 / 0.046, the published ratio
    code, printed, _ = run(capsys, "report", tmp_path / "run" / "results.json")
    assert code == 0 and printed == report


def test_the_protocol_refuses_a_model_it_is_not_for(maskgit_512, tmp_path, capsys):
    code, _, err = run(capsys, "sweep", "--config", "maskgit-512", "--out", tmp_path / "x")  # the embedded model
    assert code == 2 and err.count("\n") == 1 and "is for a maskgit model" in err, err
    small = tmp_path / "small"
    shutil.copytree(maskgit_512, small)
    (small / "MaskGIT" / "MaskGIT_ImageNet_512.pth").rename(small / "MaskGIT" / "MaskGIT_ImageNet_256.pth")
    torch.save({"model_state_dict": MaskTransformer(**{**GRID32, "f_factor": 16, "img_size": 256}).state_dict()},
               small / "MaskGIT" / "MaskGIT_ImageNet_256.pth")
    (small / "MaskGIT" / "config.json").write_text(json.dumps({**GRID32, "f_factor": 16, "img_size": 256}))
    shutil.rmtree(small / "shortcut_head")
    code, _, err = run(capsys, "sweep", "--config", "maskgit-512", "--model", small, "--out", tmp_path / "x")
    assert code == 2 and "samples a 32x32 token grid; this model's is 16x16" in err, err
    code, _, err = run(capsys, "sweep", "--config", "dimoo-1024", "--model", small, "--out", tmp_path / "x")
    assert code == 2 and "is for a dimoo model" in err, err


def test_image_reward_from_a_local_folder_scores_a_sweep(tmp_path, capsys, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of an ankle boot\na photo of a dress\n")
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"baseline": {"policy": "vanilla", "steps": 4}, "batch_size": 2,
                                  "settings": [{"policy": "vanilla", "steps": 2}]}))
    folder = write_weights_folder(tmp_path / "ImageReward")
    args = ["sweep", "--prompts-file", prompts, "--config", config, "--out", tmp_path / "sweep"]
    monkeypatch.setitem(sys.modules, "ImageReward", None)  # the package is not installed
    code, _, err = run(capsys, *args, "--image-reward", folder)
    assert code == 2 and err.count("\n") == 1 and "pip install 'migm-shortcut[image-reward]'" in err, err
    monkeypatch.delitem(sys.modules, "ImageReward")
    monkeypatch.syspath_prepend(str(write_package(tmp_path / "site")))
    code, _, err = run(capsys, *args, "--image-reward", tmp_path / "nowhere")
    assert code == 2 and "ImageReward folder not found" in err, err
    cwd = tmp_path.cwd()
    code, _, err = run(capsys, *args, "--image-reward", folder)
    assert code == 0, err
    assert tmp_path.cwd() == cwd  # built inside the folder, then back
    result = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert result["image_reward"] == str(folder)
    assert all(isinstance(r["image_reward"], float) for r in result["rows"])
    assert "ImageReward" in (tmp_path / "sweep" / "results.md").read_text()


def test_image_reward_refusals_are_one_line(tmp_path, monkeypatch):
    from migm_shortcut.eval.image_reward import LocalImageReward

    monkeypatch.syspath_prepend(str(write_package(tmp_path / "site")))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    no_tokenizer = write_weights_folder(tmp_path / "no_tok", with_tokenizer=False)
    with pytest.raises(MigmError, match="needs the bert-base-uncased tokenizer"):
        LocalImageReward(no_tokenizer)
    partial = write_weights_folder(tmp_path / "partial")
    (partial / "med_config.json").unlink()
    with pytest.raises(MigmError, match="lacks med_config.json"):
        LocalImageReward(partial)
    wrong = write_weights_folder(tmp_path / "wrong")
    torch.save({"something.else": torch.zeros(1)}, wrong / "ImageReward.pt")
    with pytest.raises(MigmError, match="lacks 2 of the reward model's weights"):
        LocalImageReward(wrong)
    scorer = LocalImageReward(write_weights_folder(tmp_path / "good"))
    images = torch.rand(3, 3, 8, 8) * 2 - 1
    value = scorer.score(images, ["a photo of a bag"] * 3)
    assert value == pytest.approx(sum(scorer.metric.reward_model.score("a photo of a bag", im)
                                      for im in _pil(images)) / 3, abs=1e-6)
    with pytest.raises(MigmError, match="class-conditional"):
        scorer.score(images, [1, 2, 3])


def _pil(images):
    from PIL import Image

    pixels = images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(p) for p in pixels]
