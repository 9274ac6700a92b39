"""Teacher trajectories for the shortcut head: collection to shards, and reading them back.

A trajectory is one run of the vanilla sampler. Per trajectory a shard stores

* ``features``    (N, branches, L, C) fp16 — the backbone's features at every step, both CFG branches;
* ``codes``       (N_img,) — the final image codes;
* ``commit_step`` (N_img,) — the step that committed each code (the generation order; from it
  follow the tokens committed at every step and the mask ratios);
* ``mask_ratio``  (N,) — share of image tokens masked before each step;
* ``prompt_ids``  (P,) — the conditional prompt, and ``seed``, ``label``.

**On-policy trajectories** (``student_budget``): the shortcut sampler at that budget chooses the
tokens, while every step's features are still the backbone's own for the tokens so far. A head
trained only on the teacher's tokens never sees the less likely tokens its own shortcut steps
commit, nor what they do to the features; these trajectories show it exactly that (DAgger-style
data for fine-tuning a head on the states it meets when it samples).

Shard ``j`` holds trajectories ``j*S .. j*S+S-1`` and is a pure function of ``j`` and the
collection settings, so collection is resumable (finished shards are skipped; a shard is
written atomically, so a killed run leaves either a whole shard or none) and parallel
(under torchrun, rank r writes the shards j with j % world_size == r).
"""

from __future__ import annotations

import hashlib
import math
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from einops import rearrange
from safetensors import safe_open
from tqdm.auto import tqdm

from migm_shortcut.checks import check_sampling
from migm_shortcut.errors import MigmError
from migm_shortcut.rules import DiMOORule, SamplingRule, rule_record
from migm_shortcut.interface import check_model
from migm_shortcut.io import read_json, save_tensors, tensor_digest, write_json
from migm_shortcut.samplers import MaskedTokenSampler, StepOutput, StepPolicy, StepState
from migm_shortcut.samplers.shortcut import ShortcutPolicy, shortcut_features

FORMAT = "migm-shortcut-trajectories/1"
MANIFEST = "collection.json"
SHARD_KEYS = ("features", "codes", "commit_step", "mask_ratio", "prompt_ids", "seed", "label")


@dataclass
class CollectConfig:
    num: int                       # trajectories in total
    steps: int = 16                # N of the vanilla teacher
    guidance_scale: float = 4.0
    temperature: float = 1.0
    shard_size: int = 16
    batch_size: int = 16
    seed: int = 0
    student_budget: int | None = None  # on-policy: the shortcut sampler at this budget picks the tokens
    student_head: str | None = None    # its head folder
    # Prompts trajectory i cycles through (i mod len); None: the model's own prompt source
    # (the embedded model's class prompts), given to ``collect`` as ``prompt_source``.
    prompts: list[str] | None = None
    rule: SamplingRule = DiMOORule()   # the model's sampling rule (LoadedModel.rule)

    def check(self) -> None:
        for name in ("num", "steps", "shard_size", "batch_size"):
            if getattr(self, name) < 1:
                raise MigmError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        check_sampling(self.steps, self.guidance_scale, self.temperature)
        if self.student_budget is None and self.student_head is not None:
            raise MigmError("--student-head needs --student-budget (the budget its shortcut sampler runs at)")
        if self.student_budget is not None and not 1 <= self.student_budget <= self.steps:
            raise MigmError(f"--student-budget must be between 1 and --steps ({self.steps}), got {self.student_budget}")

    def student(self) -> ShortcutPolicy | None:
        """The shortcut sampler whose tokens on-policy trajectories follow, or None (the vanilla teacher)."""
        if self.student_budget is None:
            return None
        return ShortcutPolicy(self.student_head, budget=self.student_budget)

    def manifest(self) -> dict:
        """The settings a resumed collection must share (the prompt list by its digest)."""
        settings = asdict(self)
        settings["rule"] = rule_record(self.rule)
        prompts = settings.pop("prompts")
        if prompts is not None:
            settings["prompts_digest"] = hashlib.sha256("\n".join(map(str, prompts)).encode()).hexdigest()[:16]
        return settings

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num / self.shard_size)


def trajectory_seed(seed: int, index: int) -> int:
    """Sampler seed of trajectory ``index``: from 10**9 up, so teacher trajectories never share a
    seed with the evaluation sweeps (which use small seeds)."""
    return 10**9 + seed * 10**7 + index


def prompt_source(cfg: CollectConfig, model_source=None):
    """``source(seed, index) -> (prompt, label)``: the config's prompt list (label = its index),
    else the model's own source (``model_source``), else one line asking for prompts."""
    if cfg.prompts:
        prompts = list(cfg.prompts)
        return lambda seed, index: (prompts[index % len(prompts)], index % len(prompts))
    if model_source is None:
        raise MigmError("this model has no built-in prompts; pass --prompts-file FILE (one prompt per line)")
    return model_source


class RecordingPolicy(StepPolicy):
    """Backbone steps that keep every step's features (fp16, on the CPU).

    With a ``student`` (a shortcut policy) the sampler is driven by the student instead: its head
    supplies the features on its shortcut steps, so it picks the tokens, while the recorded
    features are still the backbone's for the tokens so far.
    """

    name = "vanilla"

    def __init__(self, student: ShortcutPolicy | None = None):
        self.student = student
        self.features: list[torch.Tensor] = []
        self.mask_ratio: list[torch.Tensor] = []

    def reset(self, batch_size: int, num_steps: int) -> None:
        self.features, self.mask_ratio = [], []
        if self.student is not None:
            self.student.reset(batch_size, num_steps)

    def step(self, state: StepState) -> StepOutput:
        features = state.backbone.features(state.input_ids)
        self.features.append(features.to(torch.float16).cpu())
        self.mask_ratio.append(state.mask_ratio.float().cpu())
        if self.student is None or self.student.is_full_step(state):
            return StepOutput(features, state.flags(True))
        self.student.check_base(state.backbone)
        return StepOutput(shortcut_features(self.student.head, state), state.flags(False))


def generate_trajectories(backbone, cfg: CollectConfig, indices: list[int], source,
                          student: ShortcutPolicy | None = None) -> dict[str, torch.Tensor]:
    """Run the teacher (or the on-policy student) on trajectories ``indices``; tensors stacked along dim 0.

    ``source``: ``prompt_source(cfg, ...)``. ``student``: ``cfg.student()`` built once by the
    caller (``collect`` reuses it for every shard); without it, it is built here from ``cfg``.
    """
    recorder = RecordingPolicy(student or cfg.student())
    sampler = MaskedTokenSampler(backbone, cfg.steps, cfg.guidance_scale, cfg.temperature, recorder, rule=cfg.rule)
    layout = backbone.layout
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in SHARD_KEYS}
    for start in range(0, len(indices), cfg.batch_size):
        chunk = indices[start : start + cfg.batch_size]
        prompts, labels = zip(*(source(cfg.seed, i) for i in chunk))
        seeds = [trajectory_seed(cfg.seed, i) for i in chunk]
        out = sampler.generate(list(prompts), list(seeds))
        branches = sampler.num_branches
        feats = torch.stack(recorder.features)  # (N, branches*B, L, C)
        parts["features"].append(rearrange(feats, "n (r b) l c -> b n r l c", r=branches))
        parts["codes"].append(out.codes.flatten(1))
        parts["commit_step"].append(out.commit_step)
        parts["mask_ratio"].append(torch.stack(recorder.mask_ratio, 1))
        parts["prompt_ids"].append(torch.stack([layout.encode_prompt(p) for p in prompts]))
        parts["seed"].append(torch.tensor(seeds))
        parts["label"].append(torch.tensor(labels))
    return {k: torch.cat(v) for k, v in parts.items()}


def shard_path(out: Path, index: int) -> Path:
    return out / f"shard-{index:05d}.safetensors"


def shard_length(handle) -> int:
    """Trajectories in an open shard; ValueError when keys are missing or the tensors disagree in length."""
    if set(handle.keys()) != set(SHARD_KEYS):
        raise ValueError(f"keys {sorted(handle.keys())}")
    count = handle.get_slice("codes").get_shape()[0]
    if any(handle.get_slice(k).get_shape()[0] != count for k in SHARD_KEYS):
        raise ValueError("tensors disagree in length")
    return count


def shard_is_complete(path: Path, expected: int) -> bool:
    """A shard that opens, has every key, and holds ``expected`` trajectories."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return shard_length(f) == expected
    except Exception:  # any unreadable file is simply not complete
        return False


def trajectory_bytes(backbone, cfg: CollectConfig) -> int:
    """Bytes one trajectory takes on disk: fp16 features of every step and CFG branch (the bulk:
    at MaskGIT-512, N=32, about 100 MB), plus codes, commit steps, mask ratios and prompt ids."""
    branches = 2 if cfg.guidance_scale > 0 else 1
    layout = backbone.layout
    features = cfg.steps * branches * layout.seq_len * backbone.width * 2
    return features + layout.num_image_tokens * 16 + cfg.steps * 4 + layout.prompt_len * 8 + 16


def human_bytes(n: float) -> str:
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"


def check_disk(backbone, cfg: CollectConfig, out: Path, todo: int, log) -> None:
    """Say what the collection will write; refuse, before writing anything, when it cannot fit."""
    per = trajectory_bytes(backbone, cfg)
    existing = next(p for p in (out, *out.parents) if p.exists())  # the folder may not exist yet
    free = shutil.disk_usage(existing).free
    log(f"collect: {todo} trajectories to write, {human_bytes(per)} each, {human_bytes(per * todo)} in all "
        f"({human_bytes(free)} free in {out})")
    if per * todo > free:
        raise MigmError(f"collecting {todo} trajectories needs {human_bytes(per * todo)} ({human_bytes(per)} each) but "
                        f"{out} has {human_bytes(free)} free; train online instead (train-head --online, nothing on disk) "
                        "or collect fewer (--num)")


def collect(backbone, cfg: CollectConfig, out: str | Path, rank: int = 0, world_size: int = 1,
            progress: bool = True, log=print, model_prompts=None) -> dict:
    """Write (or finish writing) the collection in ``out``; returns a summary of this rank's work.

    ``model_prompts``: the model's own prompt source, used when ``cfg.prompts`` is None.
    """
    check_model(backbone)
    cfg.check()
    source = prompt_source(cfg, model_prompts)
    student = cfg.student()
    if student is not None:
        student.check_base(backbone)  # a head for another base model fails here, before anything is written
    out = Path(out)
    mine = [j for j in range(cfg.num_shards) if j % world_size == rank]
    sizes = {j: min((j + 1) * cfg.shard_size, cfg.num) - j * cfg.shard_size for j in mine}
    complete = {j: shard_is_complete(shard_path(out, j), n) for j, n in sizes.items()}  # this rank's shards only
    todo = sum(n for j, n in sizes.items() if not complete[j])
    say = (lambda m: (log(m), tqdm.write(m))) if (progress and rank == 0) else log
    check_disk(backbone, cfg, out, todo, say)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "base_fingerprint": backbone.fingerprint, **cfg.manifest()}
    if student is not None:
        # Resuming with another student head would mix two policies' tokens in one collection.
        manifest["student_head_digest"] = tensor_digest(*student.head.state_dict().values())
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        existing = read_json(manifest_path)
        changed = [k for k in manifest if k not in ("batch_size",) and existing.get(k) != manifest[k]]
        if changed:
            raise MigmError(f"{out} already holds a collection with different {', '.join(changed)}; "
                            "use a new --out folder or the same settings to resume")
    elif rank == 0:
        write_json(manifest_path, manifest)
    done, written = 0, 0
    bar = tqdm(mine, desc=f"collect[rank {rank}]", disable=not progress)
    for j in bar:
        indices = list(range(j * cfg.shard_size, min((j + 1) * cfg.shard_size, cfg.num)))
        path = shard_path(out, j)
        if complete[j]:
            done += 1
            continue
        if path.exists():
            log(f"collect: {path.name} is corrupt or truncated; regenerating it")
        tensors = generate_trajectories(backbone, cfg, indices, source, student)
        save_tensors(path, tensors, metadata={"format": FORMAT, "base_fingerprint": backbone.fingerprint,
                                              "first_index": str(indices[0]), "steps": str(cfg.steps)})
        written += 1
        log(f"collect: wrote {path.name} (trajectories {indices[0]}..{indices[-1]})")
    return {"rank": rank, "shards_skipped": done, "shards_written": written, "shards": len(mine)}


class TrajectoryStore:
    """Random access to trajectories, from shards on disk or from tensors in memory.

    ``example(i, k, length)`` returns what training needs for steps ``k .. k+length`` of
    trajectory ``i``; features are read lazily (memory-mapped), so a collection larger than
    memory is fine.
    """

    def __init__(self, tensors: list[dict] | None = None, fingerprint: str | None = None, num_steps: int | None = None,
                 guidance_scale: float = CollectConfig.guidance_scale):
        self._sources: list = []   # per trajectory: (source, row)
        self.fingerprint = fingerprint
        self.num_steps = num_steps
        self.guidance_scale = guidance_scale  # the teacher's CFG scale: how the sampler combined the branches
        self.skipped: list[str] = []
        for t in tensors or []:
            self._add_memory(t)

    def _add_memory(self, tensors: dict) -> None:
        for row in range(len(tensors["codes"])):
            self._sources.append((tensors, row))

    @classmethod
    def from_folder(cls, folder: str | Path, log=print) -> "TrajectoryStore":
        folder = Path(folder)
        if not folder.is_dir():
            raise MigmError(f"trajectory folder not found: {folder} (collect one with `migm-shortcut collect --out {folder}`)")
        manifest = read_json(folder / MANIFEST)
        if manifest.get("format") != FORMAT:
            raise MigmError(f"{folder / MANIFEST} is not a {FORMAT} collection")
        store = cls(fingerprint=manifest["base_fingerprint"], num_steps=int(manifest["steps"]),
                    guidance_scale=float(manifest["guidance_scale"]))
        for path in sorted(folder.glob("shard-*.safetensors")):
            try:
                handle = safe_open(str(path), framework="pt")
                meta = handle.metadata() or {}
                count = shard_length(handle)
                if meta.get("base_fingerprint") != store.fingerprint or int(meta.get("steps", -1)) != store.num_steps:
                    raise ValueError("written for another base model or step count")
                shape = handle.get_slice("features").get_shape()
                if shape[1] != store.num_steps:
                    raise ValueError(f"features hold {shape[1]} steps, the collection says {store.num_steps}")
                # Touch the last row so a file cut short fails here, not in the middle of training.
                handle.get_slice("features")[count - 1 : count]
            except Exception as exc:
                message = f"skipping trajectory shard {path} (corrupt or truncated: {str(exc).splitlines()[0][:120]})"
                warnings.warn(message)
                log(message)
                store.skipped.append(path.name)
                continue
            for row in range(count):
                store._sources.append((handle, row))
        if not store._sources:
            raise MigmError(f"no readable trajectories in {folder}; collect with `migm-shortcut collect --out {folder}`")
        return store

    def __len__(self) -> int:
        return len(self._sources)

    def example(self, index: int, step: int, length: int = 1) -> dict[str, torch.Tensor]:
        """Features of steps ``step .. step+length`` (inclusive) and the trajectory's tokens."""
        source, row = self._sources[index]
        if isinstance(source, dict):
            get = lambda key: source[key][row]
            features = source["features"][row, step : step + length + 1]
        else:
            get = lambda key: source.get_slice(key)[row : row + 1][0]
            features = source.get_slice("features")[row : row + 1, step : step + length + 1][0]
        return {"features": features, "codes": get("codes"), "commit_step": get("commit_step"),
                "prompt_ids": get("prompt_ids")}

