"""A real AmusedPipeline folder end to end: load by path, sample, collect, train a head, sample with it,
and the same head inside the pipeline's own __call__ through the hook."""

import pytest
import torch

from migm_shortcut.samplers import generate

from migm_shortcut import ShortcutHead, load_model
from migm_shortcut import ShortcutConfig, apply_shortcut
from migm_shortcut.amused.hook import disable_shortcut
from migm_shortcut.samplers import MaskedTokenSampler, ShortcutPolicy

from cli_route import collect_and_train, run

from tiny_amused_pipeline import write_tiny_amused_pipeline

PROMPTS = ["a red cube", "a blue bag", "a photo of a dog"]


@pytest.fixture(scope="module")
def pipeline_folder(tmp_path_factory):
    return write_tiny_amused_pipeline(tmp_path_factory.mktemp("amused") / "pipeline")


def random_head(backbone, seed: int = 1) -> ShortcutHead:
    torch.manual_seed(seed)
    head = ShortcutHead.for_base(backbone, ratio=2, heads=2)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return head.eval()




def test_a_bf16_load_keeps_the_fingerprint_of_the_weights_as_saved(pipeline_folder):
    # A head trained on the fp32 load must still load when the pipeline is sampled in bf16.
    full, half = load_model(pipeline_folder), load_model(pipeline_folder, dtype=torch.bfloat16)
    assert half.pipe.transformer.dtype == torch.bfloat16
    assert half.backbone.fingerprint == full.backbone.fingerprint
    random_head(full.backbone).check_base(half.backbone)


def test_the_pipeline_loads_by_path_and_prompts_go_through_its_clip(pipeline_folder):
    model = load_model(pipeline_folder)
    assert model.kind == "amused-pipeline" and model.backbone.layout.grid_shape == (4, 4)
    lay = model.backbone.layout
    ids = lay.encode_prompt("a red cube")
    assert torch.equal(ids, model.pipe.tokenizer("a red cube", padding="max_length", truncation=True,
                                                 max_length=16, return_tensors="pt").input_ids[0])
    assert torch.equal(lay.encode_prompt(None), lay.encode_prompt(""))  # the pipeline's default negative prompt
    hidden, pooled = model.backbone.text_states(ids[None])
    out = model.pipe.text_encoder(ids[None], return_dict=True, output_hidden_states=True)
    assert torch.allclose(hidden, out.hidden_states[-2]) and torch.allclose(pooled, out.text_embeds)


def test_vanilla_shortcut_at_b_equals_n_and_b_transformer_passes(pipeline_folder):
    model = load_model(pipeline_folder)
    backbone = model.backbone
    vanilla = MaskedTokenSampler(backbone, num_steps=4).generate(PROMPTS, [0, 1, 2])
    head = random_head(backbone)
    full = MaskedTokenSampler(backbone, num_steps=4, policy=ShortcutPolicy(head, budget=4)).generate(PROMPTS, [0, 1, 2])
    assert torch.equal(full.codes, vanilla.codes)
    calls = []
    handle = model.pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    out = MaskedTokenSampler(backbone, num_steps=4, policy=ShortcutPolicy(head, budget=2)).generate(PROMPTS, [0, 1, 2])
    handle.remove()
    assert len(calls) == 2 and out.full_steps.tolist() == [2, 2, 2]
    images, _ = generate(model, PROMPTS[:1], [0], num_steps=4)
    assert images.shape[:2] == (1, 3) and -1 <= images.min() and images.max() <= 1


def test_collect_train_sample_and_the_same_head_in_the_pipeline(pipeline_folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    m = ["--model", pipeline_folder]
    head_dir = collect_and_train(capsys, m, prompts, tmp_path)
    code, _, err = run(capsys, "sample", *m, "--prompts-file", prompts, "--steps", "4", "--policy", "shortcut", "--budget",
                       "2", "--head", head_dir, "--out-dir", tmp_path / "fast")
    assert code == 0, err
    assert len(list((tmp_path / "fast").glob("*.png"))) == 3

    code, _, err = run(capsys, "validate-head", *m, "--data", tmp_path / "traj", "--head", head_dir, "--num", "1",
                       "--split", "train", "--out", tmp_path / "val.json")
    assert code == 0, err
    code, _, err = run(capsys, "calibrate", *m, "--prompts-file", prompts, "--num", "2", "--steps", "4",
                       "--out", tmp_path / "calibration.json")
    assert code == 0, err
    code, _, err = run(capsys, "sample", *m, "--prompts-file", prompts, "--steps", "4", "--policy", "adaptive", "--head",
                       head_dir, "--calibration", tmp_path / "calibration.json", "--out-dir", tmp_path / "adaptive")
    assert code == 0, err

    pipe = load_model(pipeline_folder).pipe
    hook = apply_shortcut(pipe.transformer, ShortcutConfig(head=head_dir, budget=2, num_steps=4))
    try:
        pipe(prompt=PROMPTS[:2], num_inference_steps=4, output_type="latent", generator=torch.Generator().manual_seed(0))
    finally:
        disable_shortcut(pipe.transformer)
    assert hook.full_calls == 2


def test_a_sweep_of_any_model_scores_fid_against_a_folder_and_clipscore(pipeline_folder, tmp_path, capsys):
    import json

    from tiny_amused_pipeline import write_reference_images, write_tiny_clip

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    reference = write_reference_images(tmp_path / "real")
    clip = write_tiny_clip(tmp_path / "clip")
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"baseline": {"policy": "vanilla", "steps": 4}, "batch_size": 3,
                                  "settings": [{"policy": "vanilla", "steps": 2}]}))
    capsys.readouterr()
    code, _, err = run(capsys, "sweep", "--model", pipeline_folder, "--prompts-file", prompts, "--config", config,
                       "--reference", reference, "--clip", clip, "--out", tmp_path / "sweep")
    assert code == 0, err
    result = json.loads((tmp_path / "sweep" / "results.json").read_text())
    row = result["rows"][0]
    assert len(result["rows"]) == 2 and row["fid"] > 0 and row["clip_score"] >= 0 and result["reference_images"] == 6
    assert "CLIPScore" in (tmp_path / "sweep" / "results.md").read_text()

    (tmp_path / "empty").mkdir()
    for flags, message in ((["--reference", tmp_path / "empty"], "holds 0 image(s)"),
                           (["--clip", tmp_path / "no_clip"], "CLIP folder not found"),
                           (["--reference", tmp_path / "missing"], "reference folder not found")):
        code, _, err = run(capsys, "sweep", "--model", pipeline_folder, "--prompts-file", prompts, "--config", config,
                           *flags, "--out", tmp_path / "bad")
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_pipeline_rows_the_hook_and_cache_dit_side_by_side_on_the_same_pipeline(pipeline_folder, tmp_path, capsys):
    """Sweep rows inside AmusedPipeline.__call__: timed against the plain pipeline at the baseline's N, the
    hook running exactly B transformer passes with the head saved in the folder, cache-dit when installed."""
    import importlib.util
    import json
    import shutil

    folder = tmp_path / "pipeline"
    shutil.copytree(pipeline_folder, folder)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    head_dir = collect_and_train(capsys, ["--model", folder], prompts, tmp_path)
    shutil.copytree(head_dir, folder / "shortcut_head")  # the folder's own head: the default for pipeline-shortcut
    have_cache_dit = importlib.util.find_spec("cache_dit") is not None
    settings = [{"policy": "pipeline", "steps": 2}, {"policy": "pipeline-shortcut", "steps": 4, "budget": 2}]
    if have_cache_dit:
        settings.append({"policy": "cache-dit", "steps": 4, "threshold": 0.5, "warmup": 1})
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"baseline": {"policy": "vanilla", "steps": 4}, "batch_size": 3, "settings": settings}))
    reference = __import__("tiny_amused_pipeline").write_reference_images(tmp_path / "real")
    code, _, err = run(capsys, "sweep", "--model", folder, "--prompts-file", prompts, "--config", config,
                       "--reference", reference, "--out", tmp_path / "sweep")
    assert code == 0, err
    rows = {r["setting"]: r for r in json.loads((tmp_path / "sweep" / "results.json").read_text())["rows"]}
    assert set(rows) >= {"vanilla N=4", "pipeline N=4", "pipeline N=2", "pipeline-shortcut N=4 (budget=2)"}
    assert rows["pipeline N=4"]["speedup"] == 1.0 and rows["pipeline N=4"]["full_steps"] == 4
    assert rows["pipeline-shortcut N=4 (budget=2)"]["full_steps"] == 2 and rows["pipeline N=2"]["fid"] > 0
    assert rows["pipeline-shortcut N=4 (budget=2)"]["gflops"] < rows["pipeline N=4"]["gflops"]
    if have_cache_dit:
        row = rows["cache-dit N=4 (threshold=0.5, warmup=1)"]
        assert 1 <= row["full_steps"] <= 4 and row["fid"] > 0 and row["temperature"] is None

    bad = tmp_path / "bad.json"
    for setting, message in (({"policy": "pipeline-shortcut", "steps": 4, "budget": 5}, "budget in 1..4"),
                             ({"policy": "cache-dit", "steps": 4}, "needs a threshold"),
                             ({"policy": "pipeline", "steps": 4, "budget": 2}, "takes no parameters")):
        bad.write_text(json.dumps({"settings": [setting]}))
        code, _, err = run(capsys, "sweep", "--model", folder, "--prompts-file", prompts, "--config", bad,
                           "--out", tmp_path / "bad")
        assert code == 2 and err.count("\n") == 1 and message in err, err
    bad.write_text(json.dumps({"settings": [{"policy": "pipeline", "steps": 4}], "baseline": {"policy": "vanilla", "steps": 4}}))
    code, _, err = run(capsys, "sweep", "--config", bad, "--out", tmp_path / "bad", "--per-class", "1")
    assert code == 2 and "has none (pass --model PIPELINE_FOLDER" in err, err


def test_cache_dit_rows_without_cache_dit_say_how_to_install_it(tmp_path, capsys, monkeypatch):
    import builtins
    import json

    real_import = builtins.__import__

    def no_cache_dit(name, *args, **kwargs):
        if name == "cache_dit" or name.startswith("cache_dit."):
            raise ImportError("No module named 'cache_dit'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cache_dit)
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"settings": [{"policy": "cache-dit", "steps": 4, "threshold": 0.1}]}))
    code, _, err = run(capsys, "sweep", "--config", config, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "pip install" in err and "cache-dit" in err, err
