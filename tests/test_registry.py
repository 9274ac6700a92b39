"""The registry of folder kinds: the documented detection order, one-line refusals, and a fifth
family registered from one file (``fake_family.py``) that the whole CLI route runs on."""

import json

import pytest

from migm_shortcut import MigmError, detect_kind, load_model, model_kinds
from migm_shortcut.registry import ModelKind, register_model_kind

from cli_route import collect_and_train, run


def test_the_built_in_kinds_in_their_documented_order():
    names = [k.name for k in model_kinds() if k.name != "toy"]
    assert names == ["embedded", "weights", "maskgit", "amused-pipeline", "lumina-dimoo"]
    assert detect_kind(None).name == "embedded"


def test_a_folder_matching_two_kinds_goes_to_the_first_in_order(tmp_path):
    (tmp_path / "MaskGIT").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llada"}))
    assert detect_kind(tmp_path).name == "maskgit"  # order 20 before lumina-dimoo's 40


def test_an_unknown_folder_is_one_line_listing_the_kinds(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(MigmError, match="not a model folder this package knows; supported: embedded: .*lumina-dimoo"):
        detect_kind(tmp_path)
    code, _, err = run(capsys, "sample", "--model", tmp_path, "--prompt", "a", "--out-dir", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_an_option_another_kind_takes_is_refused_in_one_line():
    with pytest.raises(MigmError, match="height applies to lumina-dimoo models; this folder is a embedded model"):
        load_model(None, height=64)


def test_a_taken_detection_order_is_refused():
    with pytest.raises(MigmError, match="detection order 20 is taken by 'maskgit'"):
        register_model_kind(ModelKind("other", "x", lambda folder: False, lambda *a, **k: None, order=20))


def test_a_fifth_family_from_one_file_runs_sample_collect_train_head_and_a_sweep(tmp_path, capsys):
    from fake_family import ToyModel, write_toy_folder

    folder = write_toy_folder(tmp_path / "toy")
    assert isinstance(load_model(folder), ToyModel)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a bag\na sneaker\n")
    code, _, err = run(capsys, "sample", "--model", folder, "--prompts-file", prompts, "--out-dir", tmp_path / "s")
    assert code == 0, err
    run_json = json.loads((tmp_path / "s" / "run.json").read_text())
    assert run_json["model_kind"] == "toy" and run_json["steps"] == 4 and run_json["num_images"] == 2
    head = collect_and_train(capsys, ["--model", folder], prompts, tmp_path)
    code, _, err = run(capsys, "sample", "--model", folder, "--prompts-file", prompts, "--policy", "shortcut",
                       "--budget", "2", "--head", head, "--out-dir", tmp_path / "fast")
    assert code == 0, err
    assert json.loads((tmp_path / "fast" / "run.json").read_text())["mean_full_steps"] == 2
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"baseline": {"policy": "vanilla", "steps": 4}, "batch_size": 2,
                                  "settings": [{"policy": "shortcut", "steps": 4, "budget": 2, "head": str(head)}]}))
    code, _, err = run(capsys, "sweep", "--model", folder, "--config", config, "--prompts-file", prompts,
                       "--out", tmp_path / "sweep")
    assert code == 0, err
    rows = json.loads((tmp_path / "sweep" / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["vanilla", "shortcut"] and rows[1]["full_steps"] == 2
