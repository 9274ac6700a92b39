import json
import sys
from pathlib import Path

import pytest
import torch

from migm_shortcut.embedded.classifier import ClassifierConfig, ImageClassifier
from migm_shortcut.cli import main
from migm_shortcut.errors import MigmError
from migm_shortcut.embedded.model import ClassifierJudge
from migm_shortcut.eval.fid import CachedFID, InceptionFeatures, JudgeFeatures
from migm_shortcut.eval.sweep import load_sweep_config


@pytest.fixture(scope="module")
def inception():
    return InceptionFeatures()


def blobs(n: int, seed: int, bright: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    if bright:
        base[:, :, 8:20, 8:20] += 1.2
    return base * 2 - 1


def test_inception_fid_self_near_zero_and_different_sets_far(inception):
    a, b = blobs(24, 0, True), blobs(24, 1, False)
    fid = CachedFID(inception, a, "test:a", progress=False)
    same = fid.score(a)
    different = fid.score(b)
    assert abs(same) < 0.5
    assert different > 50 * max(abs(same), 1.0)


def test_reference_cache_used_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGM_CACHE", str(tmp_path))
    torch.manual_seed(0)
    features = JudgeFeatures(ClassifierJudge(ImageClassifier(ClassifierConfig(channels=8, feature_dim=16))))
    ref = blobs(30, 0, True)
    CachedFID(features, ref, "r", progress=False)
    files = list((tmp_path / "fid").glob("*.safetensors"))
    assert len(files) == 1
    # Same data, same extractor: the cache is read, not recomputed.
    first = CachedFID(features, ref, "r", progress=False)
    assert first.metric.real_features_num_samples.item() == 30
    # Changed data -> new key.
    ref2 = ref.clone()
    ref2[0, 0, 0, 0] = 0.123
    CachedFID(features, ref2, "r", progress=False)
    assert len(list((tmp_path / "fid").glob("*.safetensors"))) == 2
    # Changed extractor (other weights) -> new key.
    torch.manual_seed(1)
    other = JudgeFeatures(ClassifierJudge(ImageClassifier(ClassifierConfig(channels=8, feature_dim=16))))
    CachedFID(other, ref, "r", progress=False)
    assert len(list((tmp_path / "fid").glob("*.safetensors"))) == 3


def test_fid_rejects_bad_images(inception):
    fid = CachedFID(JudgeFeatures(ClassifierJudge(ImageClassifier(ClassifierConfig(channels=8, feature_dim=16)))),
                    blobs(10, 0, True), "r", progress=False)
    with pytest.raises(MigmError, match="shape"):
        fid.score(torch.zeros(4, 28, 28))
    bad = blobs(4, 0, True)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(MigmError, match="NaN"):
        fid.score(bad)


def write_config(path, **overrides):
    config = {"per_class": 1, "quick_per_class": 1, "batch_size": 5, "reference_size": None,
              "quick_reference_size": None, "inception": True, "baseline": {"policy": "vanilla", "steps": 3},
              "settings": [{"policy": "vanilla", "steps": 2}, {"policy": "vanilla", "steps": 3},
                           {"policy": "vanilla", "steps": 3, "guidance_scale": 0}]}
    config.update(overrides)
    path.write_text(json.dumps(config))
    return path


def test_tiny_sweep_writes_all_three_files(tmp_path, capsys, tiny_weights, fake_fashion_mnist):
    config = write_config(tmp_path / "sweep.json")
    code = main(["sweep", "--config", str(config), "--out", str(tmp_path / "out"), "--weights", str(tiny_weights)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["setting"] for r in result["rows"]] == ["real train images", "vanilla N=3", "vanilla N=2",
                                                      "vanilla N=3 (s=0.0)"]
    assert result["rows"][0]["fid"] is not None and result["rows"][0]["latency_s"] is None
    result["rows"] = result["rows"][1:]
    for row in result["rows"]:
        assert {"method", "params", "latency_s", "speedup", "full_steps", "gflops", "fid", "domain_fid",
                "prompt_accuracy", "num_images"} <= set(row)
        assert row["num_images"] == 10 and row["fid"] is not None and row["gflops"] > 0
    assert result["rows"][0]["speedup"] == pytest.approx(1.0)
    assert result["rows"][1]["full_steps"] == 2
    # a per-setting guidance scale overrides the sweep's own, and only for that row
    assert [r["guidance_scale"] for r in result["rows"]] == [4.0, 4.0, 0.0]
    assert "| vanilla | vanilla N=2 |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 1000


def test_sweep_scores_vq_reconstructions_between_real_images_and_samples(tmp_path, capsys, tiny_weights,
                                                                        fake_fashion_mnist):
    config = write_config(tmp_path / "sweep.json", reconstruction_baseline=True, settings=[{"policy": "vanilla", "steps": 2}])
    code = main(["sweep", "--config", str(config), "--out", str(tmp_path / "out"), "--weights", str(tiny_weights)])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [r["setting"] for r in rows[:2]] == ["real train images", "VQ reconstructions of them"]
    # an untrained tokenizer loses information: its reconstructions score worse than the images themselves
    assert rows[1]["domain_fid"] > rows[0]["domain_fid"]
    assert rows[1]["latency_s"] is None and rows[1]["num_images"] == rows[0]["num_images"]


def test_resumed_sweep_rescores_reconstructions_only_for_another_tokenizer(tmp_path, capsys, monkeypatch, tiny_weights,
                                                                          fake_fashion_mnist):
    import shutil

    import migm_shortcut.eval.sweep as sweep
    from migm_shortcut.embedded.tokenizer import VQTokenizer

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    config = write_config(tmp_path / "sweep.json", reconstruction_baseline=True, inception=False,
                          settings=[{"policy": "vanilla", "steps": 2}])
    scored, real_rows = [], sweep.real_images_rows
    monkeypatch.setattr(sweep, "real_images_rows", lambda *a, **k: scored.append(1) or real_rows(*a, **k))
    args = ["sweep", "--config", str(config), "--out", str(tmp_path / "out"), "--weights", str(weights), "--resume"]
    assert main(args) == 0, capsys.readouterr().err
    first = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert main(args) == 0 and len(scored) == 1  # same tokenizer: both real-image rows reused
    # a retrained tokenizer beside the same backbone (same fingerprint, so the run signature matches)
    torch.manual_seed(5)
    VQTokenizer.new(block_out_channels=(32, 32), latent_channels=32, vq_embed_dim=4,
                    num_vq_embeddings=16).save_pretrained(weights / "vq")
    assert main(args) == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert len(scored) == 2 and rows[0] == first[0]  # the real images score the same; their reconstructions anew
    assert rows[1]["inputs"]["tokenizer"] != first[1]["inputs"]["tokenizer"]
    assert rows[1]["domain_fid"] != first[1]["domain_fid"]


@pytest.mark.parametrize("overrides,match", [
    ({"settings": [{"policy": "warp", "steps": 4}]}, "unknown policy 'warp'"),
    ({"settings": [{"policy": "vanilla"}]}, "lacks the field 'steps'"),
    ({"settings": []}, "at least one"),
    ({"settings": [{"policy": "vanilla", "steps": 0}]}, "steps must be"),
    ({"speed": 3}, "unknown field 'speed'"),
    ({"settings": [{"policy": "vanilla", "steps": 4, "guidance_scale": -1}]}, "guidance_scale must be"),
    ({"settings": [{"policy": "vanilla", "steps": 4, "temperature": -1}]}, "temperature must be"),
    ({"baseline": {"policy": "vanilla", "steps": 4, "bogus": 1}}, "policy 'vanilla' takes no 'bogus'"),
])
def test_bad_sweep_config_is_one_line(tmp_path, capsys, overrides, match):
    config = write_config(tmp_path / "bad.json", **overrides)
    with pytest.raises(MigmError, match=match):
        load_sweep_config(config)
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_shipped_default_config_is_valid():
    from migm_shortcut.eval.sweep import default_config_path

    cfg = load_sweep_config(default_config_path())
    assert cfg.baseline.policy == "vanilla" and len(cfg.settings) >= 4


def test_fid_command_on_a_folder(tmp_path, capsys, tiny_weights, fake_fashion_mnist):
    from migm_shortcut.images import save_pngs

    save_pngs(blobs(6, 3, True), tmp_path / "imgs")
    code = main(["fid", "--images", str(tmp_path / "imgs"), "--weights", str(tiny_weights), "--out", str(tmp_path / "s.json")])
    assert code == 0, capsys.readouterr().err
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["num_images"] == 6 and scores["fid"] > 0 and scores["reference_images"] == 20


def test_fid_reports_a_missing_image_folder_before_loading_any_model(tmp_path, capsys):
    # The weights folder does not exist either: the images are checked first, so that is what the user hears.
    code = main(["fid", "--images", str(tmp_path / "no_such_folder"), "--weights", str(tmp_path / "no_weights")])
    err = capsys.readouterr().err
    assert code == 2 and "no_such_folder is not a folder" in err and "no_weights" not in err and err.count("\n") == 1


def test_cleanfid_missing_is_one_clear_line(tmp_path, capsys, monkeypatch, fake_fashion_mnist):
    monkeypatch.setitem(sys.modules, "cleanfid", None)
    (tmp_path / "imgs").mkdir()
    code = main(["fid", "--images", str(tmp_path / "imgs"), "--backend", "clean-fid"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'migm-shortcut[cleanfid]'" in err and err.count("\n") == 1


def test_every_shipped_sweep_config_parses(monkeypatch, tmp_path):
    import importlib.util
    from importlib.resources import files

    from migm_shortcut.eval.sweep import load_sweep_config

    example = Path(__file__).resolve().parent.parent / "docs" / "examples" / "head_ablation.json"
    monkeypatch.chdir(tmp_path)  # relative head paths resolve against an empty folder
    configs = sorted(Path(str(files("migm_shortcut") / "configs")).glob("*.json"))
    assert {"default_sweep.json", "fid_check.json", "amused_pipeline_sweep.json"} <= {p.name for p in configs}
    for path in configs:
        if '"cache-dit"' in path.read_text() and importlib.util.find_spec("cache_dit") is None:
            continue  # cache-dit rows need the cachedit extra (its own one-line error is tested elsewhere)
        assert load_sweep_config(path).settings, path.name
    # the example's fine-tuned heads are trained by the commands in its description; until then, one clear line
    with pytest.raises(MigmError, match="folder not found: runs/head/shortcut_head"):
        load_sweep_config(example)
    assert "--out runs/head " in json.loads(example.read_text())["description"]


def _tiny_head(weights, path, seed):
    from migm_shortcut.embedded.backbone import MiniDiMOO
    from migm_shortcut.shortcut import ShortcutHead

    torch.manual_seed(seed)
    ShortcutHead.for_base(MiniDiMOO.from_pretrained(weights / "backbone")).save_pretrained(path)


def test_sweep_resume_reruns_only_what_changed(tmp_path, capsys, monkeypatch, tiny_weights, fake_fashion_mnist):
    import migm_shortcut.eval.sweep as sweep

    head = tmp_path / "head"
    _tiny_head(tiny_weights, head, seed=0)
    config = write_config(tmp_path / "sweep.json", inception=False, settings=[
        {"policy": "vanilla", "steps": 2}, {"policy": "shortcut", "steps": 3, "budget": 2, "head": str(head)}])
    ran, real_run = [], sweep.run_setting

    def counted(model, setting, *args, **kwargs):
        ran.append(setting.name)
        if setting.policy == "shortcut" and "kill" in ran:
            raise KeyboardInterrupt  # the sweep is killed while sampling this row
        return real_run(model, setting, *args, **kwargs)

    monkeypatch.setattr(sweep, "run_setting", counted)
    out = tmp_path / "out"
    args = ["sweep", "--config", str(config), "--out", str(out), "--weights", str(tiny_weights)]
    assert main(args) == 0, capsys.readouterr().err
    first = json.loads((out / "results.json").read_text())
    assert len(ran) == 3 and first["rows"][-1]["inputs"]["head"]

    ran.clear()
    assert main(args + ["--resume"]) == 0, capsys.readouterr().err
    assert ran == []  # nothing changed: every row is reused, the same numbers to the last digit
    assert json.loads((out / "results.json").read_text())["rows"] == first["rows"]

    _tiny_head(tiny_weights, head, seed=1)  # a retrained head at the same path
    ran[:] = ["kill"]
    assert main(args + ["--resume"]) == 130
    # killed after re-timing the baseline: what it had measured, and every reused row, is on disk
    assert ran == ["kill", "vanilla N=3", "shortcut N=3 (budget=2, head=%s)" % head]
    assert [r["setting"] for r in json.loads((out / "results.json").read_text())["rows"]] == \
        ["real train images", "vanilla N=3", "vanilla N=2"]

    ran.clear()
    assert main(args + ["--resume"]) == 0, capsys.readouterr().err
    assert ran == ["vanilla N=3", "shortcut N=3 (budget=2, head=%s)" % head]  # the baseline is timed with the new row
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["setting"] for r in rows] == [r["setting"] for r in first["rows"]]
    assert rows[2] == first["rows"][2]  # vanilla N=2 was reused untouched
    assert rows[3]["inputs"]["head"] != first["rows"][3]["inputs"]["head"]
    table = (out / "results.md").read_text()  # the table tells reused rows from those timed against this baseline
    assert "| vanilla N=2 † |" in table and "| vanilla N=3 |" in table and "†Reused from an earlier run" in table

    # another sweep's rows can stand in too, but only if measured the same way
    other = tmp_path / "other"
    ran.clear()
    assert main(args[:4] + [str(other), *args[5:], "--reuse-from", str(out / "results.json")]) == 0
    assert ran == []
    ran.clear()
    write_config(config, inception=False, batch_size=4, settings=[{"policy": "vanilla", "steps": 2}])
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # (after the reference's progress bar)
    assert "was measured with batch_size=5, this sweep uses 4" in err and ran == []
    assert main(args[:-2] + ["--reuse-from", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err


def test_pareto_front_keeps_only_undominated_settings_and_the_plot_is_written(tmp_path):
    from migm_shortcut.eval.report import pareto_front, write_pareto

    points = [(1.0, 50.0), (2.0, 52.0), (2.0, 60.0), (3.0, 51.0), (4.0, 70.0)]
    assert pareto_front(points, higher_is_better=False) == [(1.0, 50.0), (3.0, 51.0), (4.0, 70.0)]
    assert pareto_front([(1.0, 0.5), (2.0, 0.9), (3.0, 0.4)], higher_is_better=True) == [(2.0, 0.9), (3.0, 0.4)]
    row = lambda method, setting, speedup, fid: {"method": method, "setting": setting, "speedup": speedup,  # noqa: E731
                                                 "latency_s": 0.1 / speedup, "fid": fid, "full_steps": 4}
    result = {"num_images_per_setting": 10, "rows": [
        {"method": "real", "setting": "real train images", "speedup": None, "latency_s": None, "fid": 18.0},
        row("vanilla", "vanilla N=12", 1.0, 60.0), row("shortcut", "shortcut N=12 (budget=4)", 2.5, 62.0),
        row("cache-dit", "cache-dit N=12 (threshold=0.2)", 1.4, 61.0)]}
    write_pareto(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_frontier_says_which_method_wins_where(tmp_path, capsys):
    def row(method, setting, speedup, fid, acc):
        return {"method": method, "setting": setting, "speedup": speedup, "fid": fid, "prompt_accuracy": acc}

    rows = [{"method": "real", "setting": "real train images", "speedup": None, "fid": 18.0, "prompt_accuracy": 1.0},
            row("vanilla", "vanilla N=16", 1.0, 50.0, 0.99), row("vanilla", "vanilla N=4", 3.5, 70.0, 0.95),
            row("shortcut", "shortcut N=16 (budget=4)", 3.2, 52.0, 0.985), row("fixed", "fixed N=16 (interval=3)", 2.3, 60.0, 0.99),
            row("hybrid", "hybrid N=16 (budget=6)", 2.0, 51.0, 0.99), row("sencache", "sencache N=16 (eps=0.3)", 1.5, 50.5, 0.99),
            row("shortcut", "shortcut N=16 (budget=3)", 4.0, 53.0, 0.97)]  # fast, but 2 points of accuracy lost
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"baseline": "vanilla N=16", "rows": rows}))
    assert main(["report", str(path), "--frontier", "--out", str(tmp_path / "frontier.json")]) == 0
    summary = json.loads((tmp_path / "frontier.json").read_text())
    assert [r["setting"] for r in summary["fastest_keeping_quality"]] == [
        "shortcut N=16 (budget=4)", "hybrid N=16 (budget=6)", "sencache N=16 (eps=0.3)"]
    duels = {d["baseline"]["setting"]: d for d in summary["head_vs_baselines"]}
    assert set(duels) == {"fixed N=16 (interval=3)", "vanilla N=4"}  # sencache is under 2x
    assert duels["fixed N=16 (interval=3)"]["head"]["setting"] == "shortcut N=16 (budget=4)"
    assert duels["fixed N=16 (interval=3)"]["head_wins"] and duels["vanilla N=4"]["head_wins"]  # budget 3 is faster, FID 53 < 70
    assert [r["setting"] for r in summary["pareto"]] == ["vanilla N=16", "sencache N=16 (eps=0.3)", "hybrid N=16 (budget=6)",
                                                         "shortcut N=16 (budget=4)", "shortcut N=16 (budget=3)"]
    out = capsys.readouterr().out
    assert "| fixed N=16 (interval=3) | 2.30x | 60.00 | shortcut N=16 (budget=4) | 3.20x | 52.00 | yes |" in out
    # the summary is itself a results file: report prints it, so docs tables can be generated from it
    assert main(["report", str(tmp_path / "frontier.json")]) == 0
    assert "Reference: vanilla N=16, FID 50.00" in capsys.readouterr().out


def test_fid_command_between_two_rgb_folders_reads_colour_at_inception_size(tmp_path, capsys):
    from migm_shortcut.eval.fid import FolderFID, load_rgb
    from migm_shortcut.images import save_pngs

    torch.manual_seed(0)
    real = torch.rand(24, 3, 40, 40) * 2 - 1
    save_pngs(real, tmp_path / "real")
    fake = real.clone()
    fake[:, 0] = -fake[:, 0]  # the red channel flipped: a grayscale reading would miss most of it
    save_pngs(fake, tmp_path / "fake")
    code = main(["fid", "--images", str(tmp_path / "fake"), "--reference", str(tmp_path / "real"),
                 "--out", str(tmp_path / "s.json")])
    assert code == 0, capsys.readouterr().err
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["num_images"] == 24 and scores["reference_images"] == 24 and scores["precision"] is not None
    # the same number as scoring the RGB images read the way sweeps read a reference folder
    direct = FolderFID(tmp_path / "real", progress=False)
    files = sorted((tmp_path / "fake").glob("*.png"))
    assert direct.score(torch.stack([load_rgb(p) for p in files])) == pytest.approx(scores["fid"], rel=1e-6)
    assert scores["fid"] > 1
