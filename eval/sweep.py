"""``migm-shortcut sweep``: quality vs latency for a list of sampler settings, side by side.

Every setting runs on the same prompts (100 per class by default, the canonical
"a photo of a/an <class>") and the same seeds, in one process, after the vanilla baseline;
speedups are ratios to that baseline's latency. Writes ``results.json`` (one row per
setting), ``results.md`` (a table) and ``pareto.png`` (quality vs latency, one line per method).
Rows are written as they finish, so a killed sweep keeps what it measured.

``resume=True`` (``--resume``) reuses the rows already in ``OUT/results.json``, and
``reuse_from`` (``--reuse-from FILE``) those of other sweeps' results files. A row is reused
only if the run matches (images, seeds, reference, backbone fingerprint, device, threads,
sampling) and so does the row: policy, steps, parameters and a content hash of the head and
calibration files it used. So swapping in a new head reruns only the rows that use it.
When anything has to be measured, the vanilla baseline is timed again with it, because a
speedup is only meaningful against a baseline timed in the same run; reused rows keep the
latency and speedup of the run that measured them.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from migm_shortcut.checks import check_number, check_whole
from migm_shortcut.distributed import gather_objects, my_batches, rank_and_world
from migm_shortcut.errors import MigmError
from migm_shortcut.io import file_digest, read_json, tensor_digest, write_json
from migm_shortcut.registry import load_model
from migm_shortcut.rules import rule_record
from migm_shortcut.samplers import POLICIES, MaskedTokenSampler, build_policy, policy_class, policy_files

from .pipeline_rows import (PIPELINE_METHODS, check_blocks, check_pipeline_setting, pipeline_head, pipeline_of,
                            run_pipeline_setting)
from .quality import MODEL_REFERENCE, SampleEvaluator, reference_images
from .speed import flops_per_image, median_latency


def default_config_path() -> Path:
    from importlib.resources import files

    return Path(str(files("migm_shortcut") / "configs" / "default_sweep.json"))


@dataclass
class Setting:
    policy: str
    steps: int
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    guidance_scale: float | None = None  # None: the sweep's own value
    temperature: float | None = None
    rule: dict[str, Any] | None = None  # settings of the model's sampling rule (MaskGIT: choice_temperature, schedule)

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        shown = dict(self.params)
        if self.guidance_scale is not None:
            shown["s"] = self.guidance_scale
        if self.temperature is not None:
            shown["T"] = self.temperature
        shown.update(self.rule or {})
        extra = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"{self.policy} N={self.steps}" + (f" ({extra})" if extra else "")

    def sampling(self, cfg: "SweepConfig") -> tuple[float, float]:
        """(guidance scale, temperature) for this setting: its own values, else the sweep's."""
        return (cfg.guidance_scale if self.guidance_scale is None else self.guidance_scale,
                cfg.temperature if self.temperature is None else self.temperature)


@dataclass
class SweepConfig:
    settings: list[Setting]
    baseline: Setting
    per_class: int = 100
    quick_per_class: int = 10
    seed: int = 0
    batch_size: int = 50
    guidance_scale: float | None = None  # None: the model's own (LoadedModel.defaults)
    temperature: float | None = None
    reference: str = MODEL_REFERENCE  # "model": the model's own real images; else a folder or .npz
    reference_size: int | None = None
    quick_reference_size: int | None = 1000
    inception: bool = True
    real_baseline: bool = True  # also score as many real training images, the floor FID can reach at this count
    reconstruction_baseline: bool = False  # and their VQ reconstructions: the floor for any sampler of this tokenizer
    class_prompts: bool = False  # a class-conditional model: every class, per_class times (LoadedModel.class_prompts)
    protocol: dict | None = None  # a paper's evaluation: the model it is for, its metrics, its published rows (eval.protocols)


_TOP_LEVEL = {f.name for f in fields(SweepConfig)} | {"description"}


def _parse_setting(raw: Any, where: str) -> Setting:
    if not isinstance(raw, dict):
        raise MigmError(f"{where} must be an object like {{\"policy\": \"vanilla\", \"steps\": 8}}")
    for key in ("policy", "steps"):
        if key not in raw:
            raise MigmError(f"{where} lacks the field {key!r}")
    if raw["policy"] not in POLICIES and raw["policy"] not in PIPELINE_METHODS:
        raise MigmError(f"{where}: unknown policy {raw['policy']!r}; choose one of: "
                        f"{', '.join(sorted(POLICIES) + list(PIPELINE_METHODS))}")
    try:
        check_whole(raw["steps"], "steps")
        sampling = {key: check_number(key, raw[key]) for key in ("guidance_scale", "temperature") if key in raw}
    except MigmError as exc:
        raise MigmError(f"{where}: {exc}") from None
    if "rule" in raw and not isinstance(raw["rule"], dict):
        raise MigmError(f"{where}: rule must be an object of rule settings, like {{\"choice_temperature\": 7}}")
    params = {k: v for k, v in raw.items() if k not in ("policy", "steps", "label", "guidance_scale", "temperature", "rule")}
    setting = Setting(raw["policy"], raw["steps"], params, raw.get("label"), **sampling, rule=raw.get("rule") or None)
    if setting.policy in PIPELINE_METHODS:
        check_pipeline_setting(setting.policy, setting.steps, setting.params, where)
        return setting
    # Bad parameters fail before any work; a policy whose head or calibration comes from the
    # model (not named here) is checked once the model is loaded (``setting_policy``).
    try:
        if all(setting.params.get(key) is not None for key in policy_class(setting.policy).files):
            build_policy(setting.policy, steps=setting.steps, **setting.params)
    except MigmError as exc:
        raise MigmError(f"{where}: {exc}") from None
    return setting


def load_sweep_config(path: str | Path) -> SweepConfig:
    from .protocols import resolve_config

    path = resolve_config(path)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise MigmError(f"{path}: a sweep config is a JSON object with 'settings'")
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise MigmError(f"{path}: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(_TOP_LEVEL))}")
    if not raw.get("settings"):
        raise MigmError(f"{path}: 'settings' must list at least one sampler setting")
    settings = [_parse_setting(s, f"{path}: settings[{i}]") for i, s in enumerate(raw["settings"])]
    # No baseline: vanilla at the model's own N (filled in once the model is loaded).
    baseline = _parse_setting(raw["baseline"], f"{path}: baseline") if "baseline" in raw else None
    if baseline is not None and baseline.policy != "vanilla":
        raise MigmError(f"{path}: the baseline must be a vanilla setting (speedups are ratios to vanilla)")
    scalars = {k: v for k, v in raw.items() if k not in ("settings", "baseline", "description")}
    if "protocol" in raw:
        from .protocols import check_protocol

        labels = [s.name for s in ([baseline] if baseline else []) + settings]
        scalars["protocol"] = check_protocol(raw["protocol"], f"{path}", labels)
    return SweepConfig(settings=settings, baseline=baseline, **scalars)


def setting_policy(model, setting: Setting):
    """The setting's policy on ``model`` (its head and calibration unless the setting names them),
    checked against the model and the setting's N: a bad setting fails before any work.
    Pipeline rows have no policy (None); their pipeline and cache-dit's block counts are checked."""
    if setting.policy in PIPELINE_METHODS:
        pipe = pipeline_of(model)
        if setting.policy == "cache-dit":
            check_blocks(pipe, setting.params)
        return None
    return build_policy(setting.policy, model, steps=setting.steps, **setting.params)


def run_setting(model, setting: Setting, cfg: SweepConfig, prompts: list, seeds: list[int],
                progress: bool = True, decode: bool = True) -> tuple[torch.Tensor | None, dict]:
    policy = setting_policy(model, setting)
    rule = model.rule.replace(**setting.rule) if setting.rule else model.rule
    sampler = MaskedTokenSampler.for_model(model, setting.steps, *setting.sampling(cfg), policy, rule=rule)
    sampler.generate(prompts[: min(4, len(prompts))], seeds[: min(4, len(prompts))])  # warm-up, untimed
    images, seconds, sizes, full = [], [], [], []
    for i in tqdm(range(0, len(prompts), cfg.batch_size), desc=setting.name, unit="batch", disable=not progress, leave=False):
        out = sampler.generate(prompts[i : i + cfg.batch_size], seeds[i : i + cfg.batch_size])
        seconds.append(out.loop_seconds)
        sizes.append(len(out.codes))
        full.append(out.full_steps)
        if decode:
            images.append(model.decode(out.codes))
    speed = {
        "latency_s": median_latency(seconds, sizes),
        "full_steps": torch.cat(full).float().mean().item(),
        "gflops": flops_per_image(sampler, prompts[0], seeds[0]) / 1e9,
        "batch_seconds": seconds, "batch_sizes": sizes,
    }
    return (torch.cat(images) if decode else None), speed


def shard_of(num: int, batch_size: int) -> list[int]:
    """The (prompt, seed) indices this process samples under torchrun (``my_batches``); every process
    must have some, since each scores its own images in every row's collective metrics."""
    world, batches = rank_and_world()[1], -(-num // batch_size)
    if batches < world:
        raise MigmError(f"{num} images per setting make {batches} batches of {batch_size}, fewer than the {world} "
                        "processes; lower batch_size in the config or start fewer processes")
    return [i for index in my_batches(num, batch_size) for i in index]


def combined_speed(speed: dict) -> dict:
    """A row's speed over every rank's batches: the median per-image latency of all of them, backbone passes
    weighted by images, and the throughput of all processes (images over the slowest one's loop time)."""
    shares = gather_objects({"seconds": speed["batch_seconds"], "sizes": speed["batch_sizes"],
                             "full_steps": speed["full_steps"]})
    seconds = [t for share in shares for t in share["seconds"]]
    sizes = [n for share in shares for n in share["sizes"]]
    images = sum(sizes)
    slowest = max(sum(share["seconds"]) for share in shares)
    return {"latency_s": median_latency(seconds, sizes),
            "full_steps": sum(share["full_steps"] * sum(share["sizes"]) for share in shares) / images,
            "gflops": speed["gflops"], "throughput_images_per_s": images / slowest if slowest > 0 else None}


# What must agree between two sweeps for one's rows to stand in for the other's.
RUN_SIGNATURE = ("num_images_per_setting", "prompts", "clip", "reference", "reference_images", "backbone", "device", "torch_threads",
                 "guidance_scale", "temperature", "seed", "batch_size", "inception", "inception_weights", "image_reward")


CLASS_PROMPTS = "class prompts"
# Values of signature fields that sweeps written before the field existed had implicitly.
SIGNATURE_DEFAULTS = {"prompts": CLASS_PROMPTS, "clip": None, "inception_weights": None, "image_reward": None}


def setting_inputs(setting: Setting, model=None) -> dict[str, str]:
    """Content hashes of the files a setting samples with (its head, its calibration table)."""
    if setting.policy in PIPELINE_METHODS:
        head = pipeline_head(model, setting.params)
        if setting.policy != "pipeline-shortcut" or head is None:
            return {}
        return {"head": file_digest(Path(head) / "model.safetensors")}
    return {key: file_digest(path) for key, path in policy_files(setting.policy, model, **setting.params).items()
            if isinstance(path, (str, Path))}


def _row_key(row: dict) -> str:
    fields_ = ("method", "setting", "steps", "params", "guidance_scale", "temperature", "inputs", "rule")
    return json.dumps({k: row.get(k) for k in fields_}, sort_keys=True, default=str)


def reusable_rows(result: dict, sources: list[Path]) -> dict[str, dict]:
    """Rows of earlier results files that were measured exactly like this run would, by row key."""
    rows = {}
    for path in sources:
        old = read_json(path)
        if not isinstance(old, dict) or not isinstance(old.get("rows"), list):
            raise MigmError(f"{path} is not a sweep results file (no 'rows'); pass the results.json a sweep wrote")
        differs = [k for k in RUN_SIGNATURE if old.get(k, SIGNATURE_DEFAULTS.get(k)) != result[k]]
        if differs:
            k = differs[0]
            was = repr(old[k]) if k in old else "(not recorded: written before sweeps could resume)"
            raise MigmError(f"{path} was measured with {k}={was}, this sweep uses {result[k]!r}; "
                            f"its rows cannot be reused: drop --resume/--reuse-from or use another --out")
        for row in old["rows"]:
            if row.get("method") == "real" or "inputs" in row:  # rows from before input hashing are not trusted
                rows.setdefault(_row_key(row), row)
    return rows


RECONSTRUCTIONS = "VQ reconstructions of them"


def reconstruction_inputs(tokenizer) -> dict[str, str]:
    """What the reconstruction row depends on beyond the run signature: the tokenizer's weights
    (the backbone's fingerprint does not cover them, so a retrained tokenizer must not reuse it)."""
    return {"tokenizer": tensor_digest(*tokenizer.model.state_dict().values())}


def real_images_rows(evaluator: SampleEvaluator, model, per_class: int, reference: str, real: bool = True,
                     tokenizer=None, inputs: dict[str, dict] | None = None) -> list[dict]:
    """Real training images (never in the test-split reference), scored exactly like samples.

    With a ``tokenizer``, also their encode-decode reconstructions: no sampler that emits this
    tokenizer's codes can beat that row, so it separates tokenizer error from sampler error.
    ``inputs`` (row name -> what it depends on) is stored with the rows it names, for resuming.
    """
    inputs = inputs or {}
    real_set = reference_images(model, reference, 10 * per_class, split="train")
    rank, world = rank_and_world()  # under torchrun each rank scores its share; the scores are of all
    images, labels = real_set.images[rank::world], real_set.prompts[rank::world]
    cases = [("real train images", images)] if real else []
    if tokenizer is not None:
        with torch.no_grad():
            rebuilt = torch.cat([tokenizer.decode(tokenizer.encode(images[i : i + 250])) for i in range(0, len(images), 250)])
        cases.append((RECONSTRUCTIONS, rebuilt.clamp(-1, 1)))
    return [{"method": "real", "setting": setting, "steps": None, "params": {}, "latency_s": None, "full_steps": None,
             "gflops": None, "speedup": None, **evaluator.score(batch, labels).as_dict(),
             **({"inputs": inputs[setting]} if setting in inputs else {})}
            for setting, batch in cases]


def run_sweep(config_path: str | Path, out_dir: str | Path, quick: bool = False, model: str | None = None,
              device: str = "cpu", progress: bool = True, per_class: int | None = None, resume: bool = False,
              reuse_from: list[str | Path] = (), prompts: list[str] | None = None, per_prompt: int = 1,
              load_options: dict | None = None, reference: str | Path | None = None,
              clip: str | Path | None = None, inception_weights: str | Path | None = None,
              image_reward: str | Path | None = None, command: str | None = None) -> dict:
    """Run a sweep on ``load_model(model, **load_options)``.

    The embedded model without ``prompts`` is scored on its class prompts (FID, domain FID,
    prompt accuracy); with ``prompts`` (any model) each prompt is sampled ``per_prompt`` times
    and the rows report latency, speedup, backbone passes and FLOPs, plus Inception FID against
    the images in ``reference`` (a folder), its precision and recall, Inception Score with the classifier
    of ``inception_weights`` (a file), CLIPScore with the CLIP model in ``clip`` and ImageReward with the
    weights in ``image_reward`` (folders), when given. A config with ``class_prompts`` samples every class
    of a class-conditional model ``per_class`` times instead; one with a ``protocol`` (``eval.protocols``)
    checks the model and the metrics' inputs before any work and carries its published rows.
    ``command``: the command line, recorded beside the results.
    """
    cfg = load_sweep_config(config_path)
    if per_class is not None:
        cfg.per_class = cfg.quick_per_class = per_class
    out_dir = Path(out_dir)
    started = time.perf_counter()
    # tells the rows timed in this run from reused ones (two runs can start within one second)
    run_id = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}-{uuid.uuid4().hex[:8]}"
    if prompts is None and not cfg.class_prompts and any(x is not None for x in (reference, clip, image_reward)):
        raise MigmError("--reference, --clip and --image-reward score the images of --prompts-file; pass the prompts too")
    if inception_weights is not None and reference is None:
        raise MigmError("--inception-weights adds the Inception Score to FID's features; pass --reference FOLDER too")
    from .clip import check_clip_folder
    from .fid import reference_files
    from .image_reward import check_image_reward_folder

    if reference is not None:
        reference_files(reference)  # an empty or missing folder fails before the model loads
    if clip is not None:
        check_clip_folder(clip)
    if image_reward is not None:
        check_image_reward_folder(image_reward)
    if cfg.protocol is not None and inception_weights is None and "inception_score" in cfg.protocol.get("metrics", []):
        from .inception_score import default_weights_path

        inception_weights = default_weights_path() if default_weights_path().is_file() else None
    loaded = load_model(model, device=device, **(load_options or {}))
    if cfg.protocol is not None:
        from .protocols import check_protocol_run

        check_protocol_run(cfg.protocol, loaded, {"--reference": reference, "--clip": clip,
                                                  "--inception-weights": inception_weights,
                                                  "--image-reward": image_reward})
    # What the config leaves unset is the model's own: its N for the baseline, its CFG scale and temperature.
    d = loaded.defaults
    cfg.baseline = cfg.baseline or Setting("vanilla", d.num_steps)
    cfg.guidance_scale = d.guidance_scale if cfg.guidance_scale is None else cfg.guidance_scale
    cfg.temperature = d.temperature if cfg.temperature is None else cfg.temperature
    for setting in [cfg.baseline] + cfg.settings:  # every setting's policy and rule are checked before any work
        setting_policy(loaded, setting)
        if setting.rule:
            loaded.rule.replace(**setting.rule)
    per_class = cfg.quick_per_class if quick else cfg.per_class
    if prompts is None and cfg.class_prompts:
        prompts = loaded.class_prompts(per_class)
        if prompts is None:
            raise MigmError(f"{config_path} samples every class of a class-conditional model; this {loaded.kind} model "
                            "has no classes (use a config without class_prompts, and --prompts-file)")
        prompts, per_prompt = [str(p) for p in prompts], 1
    evaluation = loaded.evaluation_prompts(per_class) if prompts is None else None
    if prompts is not None:
        if not prompts:
            raise MigmError("the prompts file holds no prompts")
        digest = hashlib.sha256("\n".join(map(str, prompts)).encode()).hexdigest()[:16]
        prompts = [p for p in loaded.parse_prompts(prompts) for _ in range(per_prompt)]
        if clip is not None and any(not isinstance(p, str) for p in prompts):
            raise MigmError("--clip scores text prompts; this model is class-conditional (drop --clip)")
        evaluator = None
        cfg.real_baseline = cfg.reconstruction_baseline = False
        from .clip import LocalCLIPScore
        from .fid import FolderFID

        folder_fid = (FolderFID(reference, progress=progress, inception_weights=inception_weights)
                      if reference is not None else None)
        clip_score = LocalCLIPScore(clip) if clip is not None else None
        reward = None
        if image_reward is not None:
            from .image_reward import LocalImageReward

            if any(not isinstance(p, str) for p in prompts):
                raise MigmError("--image-reward scores text prompts; this model is class-conditional (drop --image-reward)")
            reward = LocalImageReward(image_reward, device)
    elif evaluation is not None:
        reference_size = cfg.quick_reference_size if quick else cfg.reference_size
        evaluator = SampleEvaluator(loaded.judge, reference_images(loaded, cfg.reference, reference_size),
                                    cfg.inception, progress)
        prompts, _ = evaluation  # the judge reads each image's class from its prompt
    else:
        raise MigmError("this model has no built-in prompts; pass --prompts-file FILE (one prompt per line)")
    if evaluator is not None:
        folder_fid = clip_score = reward = None
    seeds = [cfg.seed + i for i in range(len(prompts))]
    model = loaded
    rank, world = rank_and_world()
    mine = shard_of(len(prompts), cfg.batch_size)  # all of them in one process
    my_prompts, my_seeds = [prompts[i] for i in mine], [seeds[i] for i in mine]
    write = (lambda path, obj: write_json(path, obj)) if rank == 0 else (lambda path, obj: None)  # noqa: E731

    result = {
        "config": str(config_path), "quick": quick, "num_images_per_setting": len(prompts),
        "model_kind": model.kind, "rule": rule_record(model.rule), "prompts": CLASS_PROMPTS if evaluator is not None else f"{len(set(prompts))} prompts, sha256 {digest}",
        "reference": evaluator.reference_name if evaluator else (str(reference) if folder_fid else None),
        "reference_images": evaluator.reference_count if evaluator else (folder_fid.reference_count if folder_fid else None),
        "clip": str(clip) if clip_score else None,
        "inception_weights": str(inception_weights) if folder_fid and folder_fid.inception_score else None,
        "image_reward": reward.name if reward else None,
        "backbone": model.backbone.fingerprint, "device": device, "torch_threads": torch.get_num_threads(),
        "guidance_scale": cfg.guidance_scale, "temperature": cfg.temperature, "seed": cfg.seed,
        "batch_size": cfg.batch_size, "inception": cfg.inception and evaluator is not None, "processes": world,
        "baseline": cfg.baseline.name, "protocol": cfg.protocol, "command": command, "rows": [],
    }
    sources = [Path(p) for p in reuse_from]
    if resume and (out_dir / "results.json").is_file():
        sources.insert(0, out_dir / "results.json")
    for path in sources:
        if not path.is_file():
            raise MigmError(f"--reuse-from {path}: no such file; pass the results.json an earlier sweep wrote")
    reusable = reusable_rows(result, sources)

    wanted = [("real train images", cfg.real_baseline), (RECONSTRUCTIONS, cfg.reconstruction_baseline)]
    if cfg.reconstruction_baseline and model.image_tokenizer is None:
        raise MigmError("reconstruction_baseline needs a model whose image tokenizer encodes images; drop it from the config")
    inputs = {RECONSTRUCTIONS: reconstruction_inputs(model.image_tokenizer)} if cfg.reconstruction_baseline else {}
    real_keys = {name: _row_key({"method": "real", "setting": name, "steps": None, "params": {},
                                 "inputs": inputs.get(name)}) for name, _ in wanted}
    if all(real_keys[name] in reusable for name, on in wanted if on):
        result["rows"] += [reusable[real_keys[name]] for name, on in wanted if on]
    elif cfg.real_baseline or cfg.reconstruction_baseline:
        result["rows"] += real_images_rows(evaluator, model, per_class, cfg.reference, cfg.real_baseline,
                                           model.image_tokenizer if cfg.reconstruction_baseline else None, inputs)

    settings = [cfg.baseline] + [s for s in cfg.settings if s != cfg.baseline]
    # Pipeline rows are timed against the plain pipeline at the baseline's N, which runs first among them.
    pipeline_baseline = Setting("pipeline", cfg.baseline.steps)
    if any(s.policy in PIPELINE_METHODS for s in settings):
        settings = [settings[0], pipeline_baseline] + [s for s in settings[1:] if s != pipeline_baseline]
    planned = []
    for setting in settings:
        guidance, temperature = setting.sampling(cfg)
        if setting.policy in PIPELINE_METHODS:
            temperature = None  # the pipeline's scheduler anneals its own
        row = {"method": setting.policy, "setting": setting.name, "steps": setting.steps, "params": setting.params,
               "guidance_scale": guidance, "temperature": temperature, "inputs": setting_inputs(setting, model),
               "rule": setting.rule}
        planned.append((setting, row, reusable.get(_row_key(row))))
    # New rows need their baseline timed in this run.
    is_pipeline = [setting.policy in PIPELINE_METHODS for setting, _, _ in planned]
    for group in (False, True):
        members = [i for i, p in enumerate(is_pipeline) if p == group]
        if members and any(planned[i][2] is None for i in members[1:]):
            planned[members[0]] = planned[members[0]][:2] + (None,)
    reused = sum(old is not None for _, _, old in planned)
    if reused and progress:
        tqdm.write(f"sweep: reusing {reused} of {len(planned)} setting rows measured earlier")
    real_rows, measured = list(result["rows"]), {}

    def rows_so_far() -> list[dict]:
        return real_rows + [measured.get(i) or old for i, (_, _, old) in enumerate(planned)
                            if i in measured or old is not None]

    baseline_latency = {}  # sampler rows / pipeline rows -> their baseline's latency
    for i, (setting, row, old) in enumerate(planned):
        if old is not None:
            continue
        scored = evaluator is not None or folder_fid is not None or clip_score is not None or reward is not None
        run = run_pipeline_setting if is_pipeline[i] else run_setting
        images, speed = run(model, setting, cfg, my_prompts, my_seeds, progress, decode=scored)
        speed = combined_speed(speed)
        baseline_latency.setdefault(is_pipeline[i], speed["latency_s"])
        if evaluator is not None:
            scores = evaluator.score(images, my_prompts).as_dict()
        else:
            scores = {"fid": folder_fid.score(images) if folder_fid else None, "domain_fid": None,
                      "prompt_accuracy": None, "num_images": len(prompts)}
            scores.update({k: (folder_fid.last_manifold or {}).get(k) if folder_fid else None for k in ("precision", "recall")})
            if folder_fid is not None and folder_fid.last_inception_score is not None:
                scores.update(folder_fid.last_inception_score)
            if clip_score is not None:
                scores["clip_score"] = clip_score.score(images, my_prompts)
            if reward is not None:
                scores["image_reward"] = reward.score(images, my_prompts)
        measured[i] = {**row, **speed, "speedup": baseline_latency[is_pipeline[i]] / speed["latency_s"], **scores, "run": run_id}
        result["rows"] = rows_so_far()
        result["wall_clock_s"] = time.perf_counter() - started
        write(out_dir / "results.json", result)
    result["rows"] = rows_so_far()
    from .report import write_markdown, write_pareto

    if rank == 0:
        write_markdown(result, out_dir / "results.md")
        write_pareto(result, out_dir / "pareto.png")
    result["wall_clock_s"] = time.perf_counter() - started
    write(out_dir / "results.json", result)
    return result
