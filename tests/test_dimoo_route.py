"""A Lumina-DiMOO checkpoint folder, end to end: load by path, sample, collect, train a head, sample
with it, sweep; and the one-line refusals. The folder is a tiny random model in the real on-disk
format (tests/tiny_dimoo.py)."""

import json

import pytest
import torch

from migm_shortcut import MigmError, SamplingDefaults, ShortcutHead, detect_kind, load_model
from migm_shortcut.dimoo.model import DiMOOModel
from migm_shortcut.interface import INTERFACE_MEMBERS, OPTIONAL_MEMBERS
from migm_shortcut.modeling import SHIPPED_WEIGHTS
from migm_shortcut.samplers import MaskedTokenSampler, ShortcutPolicy, calibrate, generate
from migm_shortcut.train.head import HeadTrainConfig, train_head
from migm_shortcut.train.trajectories import CollectConfig, collect

from cli_route import collect_and_train, run

from test_head_training import torchrun
from tiny_dimoo import write_model_code, write_tiny_dimoo

SIZE = ["--height", "32", "--width", "48"]
PROMPTS = ["a red cube", "a photo of a small dog over green hills", "a blue bag"]


@pytest.fixture(scope="module")
def dimoo_folder(tmp_path_factory):
    return write_tiny_dimoo(tmp_path_factory.mktemp("dimoo") / "Lumina-DiMOO")


@pytest.fixture(scope="module")
def dimoo(dimoo_folder):
    return load_model(dimoo_folder, trust_remote_code=True, height=32, width=48)


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path




def random_head(backbone, seed: int = 1) -> ShortcutHead:
    torch.manual_seed(seed)
    head = ShortcutHead.for_base(backbone, ratio=2, heads=2)
    for p in head.parameters():  # not the zero-initialised copy predictor: every path must matter
        torch.nn.init.normal_(p, std=0.05)
    return head.eval()


def test_a_checkpoint_folder_loads_by_path_with_its_own_classes(dimoo):
    assert isinstance(dimoo, DiMOOModel) and dimoo.kind == "lumina-dimoo"
    assert type(dimoo.backbone.model).__name__ == "LLaDAForMultiModalGeneration"
    assert dimoo.backbone.layout.grid_shape == (2, 3)
    assert dimoo.defaults == SamplingDefaults(num_steps=64, guidance_scale=4.0, temperature=1.0)


def test_vanilla_sampling_is_deterministic_and_shortcut_at_b_equals_n_is_vanilla(dimoo):
    backbone = dimoo.backbone
    vanilla = MaskedTokenSampler(backbone, num_steps=4).generate(PROMPTS, seeds=[0, 1, 2])
    again = MaskedTokenSampler(backbone, num_steps=4).generate(PROMPTS[::-1], seeds=[2, 1, 0])
    assert vanilla.codes.shape == (3, 2, 3)
    assert torch.equal(vanilla.codes, again.codes.flip(0))  # same seed, same tokens, whatever the batch
    full = MaskedTokenSampler(backbone, num_steps=4, policy=ShortcutPolicy(random_head(backbone), budget=4))
    assert torch.equal(full.generate(PROMPTS, seeds=[0, 1, 2]).codes, vanilla.codes)
    images, _ = generate(dimoo, PROMPTS[:1], seeds=[0], num_steps=4)
    assert images.shape[:2] == (1, 3) and -1 <= images.min() and images.max() <= 1


class InterfaceOnly:
    """A model reduced to the interface: any component reaching past it fails here."""

    def __init__(self, backbone):
        self._backbone = backbone

    def __getattr__(self, name):
        if name in INTERFACE_MEMBERS + OPTIONAL_MEMBERS:
            return getattr(self._backbone, name)
        raise AttributeError(f"{name!r} is not part of the model interface")


def test_every_component_takes_the_model_only_through_the_interface(dimoo, tmp_path):
    model = InterfaceOnly(dimoo.backbone)
    head = random_head(dimoo.backbone)
    for policy in (None, ShortcutPolicy(head, budget=2)):
        MaskedTokenSampler(model, num_steps=4, policy=policy).generate(PROMPTS[:2], seeds=[0, 1])
    table = calibrate(model, PROMPTS[:2], num_steps=4, guidance_scale=4.0, temperature=1.0, progress=False)
    assert len(table.sensitivity) == 4
    cfg = CollectConfig(num=2, steps=4, shard_size=2, batch_size=2, prompts=PROMPTS)
    collect(model, cfg, tmp_path / "traj", progress=False, log=lambda *_: None)
    train_head(HeadTrainConfig(out=str(tmp_path / "head"), data=str(tmp_path / "traj"), steps=2, batch_size=2,
                               val_trajectories=1, device="cpu"), backbone=model)
    train_head(HeadTrainConfig(out=str(tmp_path / "online"), online=True, prompts=PROMPTS, teacher_steps=4, steps=2,
                               batch_size=2, val_trajectories=1, online_trajectories=2, device="cpu"), backbone=model)


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """The downloaded Lumina-DiMOO layout: model_index.json, no model code; the code is named apart."""
    root = tmp_path_factory.mktemp("hub")
    return write_tiny_dimoo(root / "Lumina-DiMOO", with_code=False, hub=True), write_model_code(root / "repo" / "model")


@pytest.fixture(params=["code-in-folder", "hub-folder-and-model-code"])
def route(request, dimoo_folder, hub_folder):
    """(CLI model flags, load_model arguments) for each way a Lumina-DiMOO folder arrives."""
    if request.param == "code-in-folder":
        return ["--model", dimoo_folder, "--trust-remote-code", *SIZE], (dimoo_folder, {})
    folder, code = hub_folder
    return (["--model", folder, "--model-code", code, "--trust-remote-code", *SIZE], (folder, {"model_code": code}))


def test_the_dimoo_route_from_folder_to_sweep(route, prompts_file, tmp_path, capsys):
    model, (dimoo_folder, load_options) = route
    code, out, err = run(capsys, "sample", *model, "--prompts-file", prompts_file, "--steps", "4", "--out-dir",
                         tmp_path / "vanilla")
    assert code == 0, err
    assert len(list((tmp_path / "vanilla").glob("*.png"))) == 3
    assert json.loads((tmp_path / "vanilla" / "run.json").read_text())["model_kind"] == "lumina-dimoo"

    head = collect_and_train(capsys, model, prompts_file, tmp_path)
    # the shortcut at B = N is vanilla, image for image
    code, _, err = run(capsys, "sample", *model, "--prompts-file", prompts_file, "--steps", "4", "--policy", "shortcut",
                       "--budget", "4", "--head", head, "--out-dir", tmp_path / "full")
    assert code == 0, err
    assert all((tmp_path / "full" / p.name).read_bytes() == p.read_bytes() for p in (tmp_path / "vanilla").glob("*.png"))
    # online training (no trajectories on disk), with the model's own sampling settings
    code, _, err = run(capsys, "train-head", *model, "--online", "--prompts-file", prompts_file, "--teacher-steps", "4",
                       "--online-trajectories", "2", "--steps", "2", "--batch-size", "2", "--val-trajectories", "1",
                       "--out", tmp_path / "online", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "online" / "shortcut_head" / "config.json").is_file()

    # sample with that head at B < N: the backbone runs exactly B times per generation
    loaded = load_model(dimoo_folder, trust_remote_code=True, height=32, width=48, **load_options)
    calls = []
    features = loaded.backbone.features
    loaded.backbone.features = lambda ids: calls.append(len(ids)) or features(ids)
    out = MaskedTokenSampler.for_model(loaded, 4, policy=ShortcutPolicy(head, budget=2)).generate(PROMPTS, seeds=[0, 1, 2])
    assert len(calls) == 2 and out.full_steps.tolist() == [2, 2, 2]
    code, _, err = run(capsys, "sample", *model, "--prompts-file", prompts_file, "--steps", "4", "--policy",
                       "shortcut", "--budget", "2", "--head", head, "--out-dir", tmp_path / "fast")
    assert code == 0, err
    assert json.loads((tmp_path / "fast" / "run.json").read_text())["mean_full_steps"] == 2

    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"baseline": {"policy": "vanilla", "steps": 4}, "batch_size": 3,
                                  "settings": [{"policy": "shortcut", "steps": 4, "budget": 2, "head": str(head)}]}))
    code, out, err = run(capsys, "sweep", *model, "--prompts-file", prompts_file, "--config", config,
                         "--out", tmp_path / "sweep")
    assert code == 0, err
    result = json.loads((tmp_path / "sweep" / "results.json").read_text())
    vanilla, fast = result["rows"]
    assert vanilla["speedup"] == 1.0 and fast["speedup"] > 0 and fast["full_steps"] == 2
    assert fast["fid"] is None and result["model_kind"] == "lumina-dimoo"
    assert (tmp_path / "sweep" / "pareto.png").is_file() and "speedup" in (tmp_path / "sweep" / "results.md").read_text()

    code, out, err = run(capsys, "bench-cost", *model, "--head", head, "--steps", "4", "--budgets", "2", "--repeats", "1",
                         "--device", "cpu", "--out", tmp_path / "cost.json")
    assert code == 0, err
    (row,) = json.loads((tmp_path / "cost.json").read_text())["results"]
    assert row["config"] == "model:lumina-dimoo" and 0 < row["c"] and row["num_steps"] == 4


def test_online_head_training_on_dimoo_under_torchrun(dimoo_folder, prompts_file, tmp_path):
    result = torchrun("train-head", "--online", "--model", str(dimoo_folder), "--trust-remote-code", *SIZE,
                      "--prompts-file", str(prompts_file), "--teacher-steps", "4", "--online-trajectories", "2",
                      "--steps", "2", "--batch-size", "2", "--val-trajectories", "1", "--out", str(tmp_path / "head"),
                      "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 process(es)" in (tmp_path / "head" / "train.log").read_text()
    ShortcutHead.from_pretrained(tmp_path / "head" / "shortcut_head")


# -- bad input: one line, non-zero exit, nothing written -------------------------------------------
def one_line_error(capsys, *argv, out=None):
    capsys.readouterr()  # what the test printed while writing its folders
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1, err
    if out is not None:
        assert not out.exists()
    return err


def test_unsupported_folders_list_the_kinds(tmp_path, capsys):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "empty").mkdir()
    for folder in ("bert", "empty"):
        err = one_line_error(capsys, "sample", "--prompt", "x", "--model", tmp_path / folder, "--out-dir", tmp_path / "o",
                             out=tmp_path / "o")
        assert "supported:" in err and "Lumina-DiMOO" in err


def test_checkpoint_code_runs_only_with_trust_remote_code(dimoo_folder, tmp_path, capsys):
    err = one_line_error(capsys, "sample", "--prompt", "a red cube", "--model", dimoo_folder, *SIZE,
                         "--out-dir", tmp_path / "o", out=tmp_path / "o")
    assert "--trust-remote-code" in err and "modeling_xllmx_dimoo.py" in err
    with pytest.raises(MigmError, match="trust_remote_code=True"):
        load_model(dimoo_folder)


def test_the_hub_folder_needs_its_code_named_and_trusted(hub_folder, tmp_path, capsys):
    folder, code = hub_folder
    assert detect_kind(folder).name == "lumina-dimoo"  # its model_index.json names a LuminaDiMOOPipeline
    err = one_line_error(capsys, "sample", "--prompt", "a red cube", "--model", folder, "--trust-remote-code", *SIZE,
                         "--out-dir", tmp_path / "o", out=tmp_path / "o")
    assert "no model code" in err and "--model-code DIR" in err
    err = one_line_error(capsys, "sample", "--prompt", "a red cube", "--model", folder, "--model-code", code, *SIZE,
                         "--out-dir", tmp_path / "o", out=tmp_path / "o")
    assert f"--model-code {code}: loading it runs that code" in err and "--trust-remote-code" in err
    for bad, what in ((tmp_path / "nowhere", "is not a folder"), (folder, "not a Python package")):
        err = one_line_error(capsys, "sample", "--prompt", "a red cube", "--model", folder, "--model-code", bad,
                             "--trust-remote-code", *SIZE, "--out-dir", tmp_path / "o", out=tmp_path / "o")
        assert what in err
    with pytest.raises(MigmError, match="model_code applies to lumina-dimoo models"):
        load_model(None, model_code=code)


def test_the_published_class_loads_unedited_on_this_transformers(dimoo_folder):
    """The stand-in, like the published LLaDAModelLM, never calls post_init and overrides tie_weights
    without arguments: transformers 5 fails on both unless the compatibility step runs."""
    import inspect

    from migm_shortcut.dimoo import loading

    cls = loading.model_class(dimoo_folder, None, trust_remote_code=True)
    assert "post_init" not in inspect.getsource(cls.__mro__[1].__init__)
    assert list(inspect.signature(cls.tie_weights).parameters) == ["self"]
    model = load_model(dimoo_folder, trust_remote_code=True, height=32, width=48).backbone.model
    from safetensors.torch import load_file

    saved = load_file(str(dimoo_folder / "model.safetensors"))
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert type(model).__name__ == "LLaDAForMultiModalGeneration" and type(model).__mro__[1] is cls


def test_special_ids_that_disagree_with_dimoo_are_named(tmp_path, capsys):
    folder = write_tiny_dimoo(tmp_path / "odd", uncondition_id=126352, mask_token_id=7)
    err = one_line_error(capsys, "sample", "--prompt", "a red cube", "--model", folder, "--trust-remote-code", *SIZE,
                         "--out-dir", tmp_path / "o", out=tmp_path / "o")
    assert "mask_token_id 7" in err and "<uncondition> 126352" in err


def test_too_long_prompts_and_foreign_heads_are_refused(dimoo_folder, tmp_path, capsys):
    model = ["--model", dimoo_folder, "--trust-remote-code", *SIZE]
    err = one_line_error(capsys, "sample", *model, "--max-prompt-tokens", "20", "--prompt",
                         "a photo of a small dog over green hills", "--out-dir", tmp_path / "o", out=tmp_path / "o")
    assert "at most 20 fit" in err
    err = one_line_error(capsys, "sample", *model, "--prompt", "a red cube", "--policy", "shortcut", "--head",
                         SHIPPED_WEIGHTS / "shortcut_head", "--steps", "4", "--out-dir", tmp_path / "o", out=tmp_path / "o")
    assert "train a head for this model" in err
    err = one_line_error(capsys, "sample", *model, "--prompt", "a red cube", "--policy", "shortcut", "--steps", "4",
                         "--out-dir", tmp_path / "o", out=tmp_path / "o")
    assert "needs a shortcut head" in err
    err = one_line_error(capsys, "sample", *model, "--height", "40", "--prompt", "a red cube", "--out-dir", tmp_path / "o",
                         out=tmp_path / "o")
    assert "multiple of 16" in err
