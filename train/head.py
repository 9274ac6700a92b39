"""Training the shortcut head on teacher trajectories (from disk or generated online).

One training example is (trajectory i, step k): the head gets the features of step k (both
CFG branches), the tokens committed at step k and the mask ratio after them, and must predict
the features of step k+1. With ``rollout > 1`` it is fed its own prediction for the next
steps too, so the loss sees the compounding error of consecutive shortcut steps.

Loss = MSE(pred, true) (over every position, or only at image positions still masked) +
``kl_weight`` * T^2 * KL(softmax(head(true)/T) || softmax(head(pred)/T)) through the base
model's frozen output head at still-masked image positions. ``kl_target="branches"`` takes the
KL of each CFG branch's logits; ``"guided"`` takes it of the guided logits
``(1 + s) * cond - s * uncond`` the sampler actually draws from (s: the teacher's scale). Guidance
multiplies the branches' errors by up to 2s + 1, so a head can be much closer to each branch
than copying is and still barely closer on the guided distribution; validation reports the
guided KL of the head and of copying for that reason.

The batch of step s is a pure function of (seed, s, rank), the optimizer, EMA and step are
checkpointed atomically, so ``--resume`` continues exactly. Under torchrun every process
draws its own batches and DDP averages the gradients (gloo on CPU, nccl on GPU). The saved
head is the EMA copy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch.nn.parallel import DistributedDataParallel

from migm_shortcut.checks import check_sampling
from migm_shortcut.errors import MigmError
from migm_shortcut.rules import DiMOORule, SamplingRule, rule_record
from migm_shortcut.interface import HEAD_FOLDER, check_model
from migm_shortcut.io import read_json, write_json
from migm_shortcut.samplers import guided_logits
from migm_shortcut.shortcut import NewTokens, ShortcutHead, ShortcutHeadConfig, new_tokens, shortcut_step

from migm_shortcut.distributed import init_distributed

from .common import EMA, RunLog, batch_generator, train_loop
from .trajectories import CollectConfig, TrajectoryStore, generate_trajectories, prompt_source


KL_TARGETS = ("branches", "guided")


@dataclass
class HeadTrainConfig:
    out: str
    data: str | None = None          # a collected trajectory folder; not used with ``online``
    online: bool = False             # generate trajectories with the base model on the fly
    model: str | None = None         # the base model's folder (load_model; default: the shipped embedded model)
    trust_remote_code: bool = False  # allow a checkpoint folder's own model code to run (load_model)
    prompts: list[str] | None = None  # online mode: prompts to cycle through (default: the model's own, if it has some)
    rule: SamplingRule = DiMOORule()  # online mode: the teacher sampler's rule (the model's LoadedModel.rule)
    steps: int = 3000
    batch_size: int = 32             # (trajectory, step) examples per process and step; each has all branches
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 100
    ema_decay: float = 0.999
    masked_only: bool = False        # MSE only at image positions still masked
    kl_weight: float = 0.0
    kl_temperature: float = 1.0
    kl_target: str = "branches"      # "branches": KL per CFG branch; "guided": KL of the guided logits
    rollout: int = 1                 # consecutive steps the head is rolled forward in training
    init_head: str | None = None     # start from this saved head (fine-tuning); its architecture wins
    # Let init_head be a head of another checkpoint of this base's architecture (a base being
    # retrained): its weights start this head, which is bound to this base. Off: such a head is refused.
    rebind_init_head: bool = False
    architecture: str = "generic"    # the head network (the loaded model's head_architecture by default)
    ratio: int = 2
    heads: int = 0                   # 0: scaled with the width (64-128 channels a head)
    mlp_ratio: float = 2.0
    num_blocks: int = 1
    mlp_hidden: int = 0              # the architectures built from the base's blocks: the base's sizes
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    direct_token_path: bool = False  # the generic head's path from each new token to its own position
    val_trajectories: int = 64
    val_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    resume: bool = False
    device: str = "auto"
    # online mode: the teacher's settings and how often it refreshes the data
    teacher_steps: int = 16
    guidance_scale: float = 4.0
    temperature: float = 1.0
    online_trajectories: int = 32    # trajectories per process per round
    online_steps_per_round: int = 25  # optimizer steps on each round's trajectories

    def check(self) -> None:
        if not self.online and not self.data:
            raise MigmError("give --data DIR (collected trajectories) or --online")
        for name in ("steps", "batch_size", "rollout", "val_trajectories", "val_every", "checkpoint_every",
                     "online_trajectories", "online_steps_per_round", "teacher_steps"):
            if getattr(self, name) < 1:
                raise MigmError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        numbers = ("lr", "weight_decay", "ema_decay", "kl_weight", "kl_temperature", "mlp_ratio", "guidance_scale", "temperature")
        bad = [n for n in numbers if not isinstance(getattr(self, n), (int, float)) or not math.isfinite(getattr(self, n))]
        if bad:
            raise MigmError(f"--{bad[0].replace('_', '-')} must be a finite number, got {getattr(self, bad[0])!r}")
        if self.lr <= 0 or not 0 <= self.ema_decay < 1 or self.kl_weight < 0 or self.kl_temperature <= 0:
            raise MigmError("need lr > 0, 0 <= ema-decay < 1, kl-weight >= 0 and kl-temperature > 0")
        check_sampling(self.teacher_steps, self.guidance_scale, self.temperature)  # the teacher's, as the sampler checks them
        if self.kl_target not in KL_TARGETS:
            raise MigmError(f"--kl-target must be one of {', '.join(KL_TARGETS)}, got {self.kl_target!r}")

    def settings(self) -> dict:
        """The settings as logged and saved (a prompt list by its length)."""
        settings = asdict(self)
        settings["rule"] = rule_record(self.rule)
        if settings["prompts"] is not None:
            settings["prompts"] = f"{len(settings['prompts'])} prompts"
        return settings

    def head_options(self) -> dict:
        return {"architecture": self.architecture, "ratio": self.ratio, "heads": self.heads, "mlp_ratio": self.mlp_ratio,
                "num_blocks": self.num_blocks, "mlp_hidden": self.mlp_hidden, "rope_theta": self.rope_theta,
                "norm_eps": self.norm_eps, "direct_token_path": self.direct_token_path}


@dataclass
class ExampleBatch:
    features: torch.Tensor     # (B, rollout+1, branches, L, C)
    codes: torch.Tensor        # (B, N_img)
    commit_step: torch.Tensor  # (B, N_img)
    prompt_ids: torch.Tensor   # (B, P)
    start: torch.Tensor        # (B,) step index k of the first input

    @classmethod
    def collate(cls, examples: list[dict], starts: torch.Tensor, device) -> "ExampleBatch":
        stack = lambda key: torch.stack([e[key] for e in examples]).to(device)
        return cls(stack("features").float(), stack("codes").long(), stack("commit_step").long(),
                   stack("prompt_ids").long(), starts.to(device))

    def branch_features(self, j: int) -> torch.Tensor:
        """Features of rollout position j as the sampler batches them: (branches * B, L, C), cond first."""
        return rearrange(self.features[:, j], "b r l c -> (r b) l c")


def step_inputs(backbone, batch: ExampleBatch, j: int) -> tuple[NewTokens, torch.Tensor, torch.Tensor]:
    """New tokens, mask ratio per sequence, and still-masked image tokens after step ``start + j``."""
    layout = backbone.layout
    branches = batch.features.shape[2]
    step = (batch.start + j)[:, None]
    newly = batch.commit_step == step
    still = batch.commit_step > step
    rows = batch.prompt_ids
    if branches == 2:  # the unconditional rows hold the model's own unconditional prompt
        rows = torch.cat([rows, layout.encode_prompt(None).to(rows.device).expand_as(rows)])
    tokens = new_tokens(batch.codes + layout.code_offset, newly, layout.image_positions,
                        batch.prompt_ids if layout.prompt_in_sequence else None, layout.pad_id, branches,
                        feature_valid=backbone.feature_valid(rows))
    ratio = still.float().mean(1).repeat(branches)
    return tokens.to(batch.codes.device), ratio, still.repeat(branches, 1)


def masked_logits(backbone, features: torch.Tensor, still: torch.Tensor, branches: int,
                  guidance: float | None) -> torch.Tensor:
    """Base-head logits at still-masked image positions, (rows, V).

    ``guidance=None``: every branch's rows (cond first); else the guided logits the sampler
    draws from. ``still`` is one mask repeated per branch, so the branches' rows pair up.
    """
    image_pos = backbone.layout.image_positions.to(features.device)
    positions = image_pos.expand(features.shape[0], -1)[still]
    logits = backbone.logits_from_features(features[:, image_pos][still], positions).float()
    return logits if guidance is None else guided_logits(logits, branches, guidance)


def distribution_kl(logits_true: torch.Tensor, logits_guess: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(true / T) || softmax(guess / T)), summed over rows."""
    return F.kl_div(F.log_softmax(logits_guess / temperature, -1), F.log_softmax(logits_true / temperature, -1),
                    log_target=True, reduction="sum")


def rollout_loss(head, backbone, batch: ExampleBatch, cfg: HeadTrainConfig, guidance: float) -> torch.Tensor:
    image_pos = backbone.layout.image_positions.to(batch.codes.device)
    branches = batch.features.shape[2]
    h = batch.branch_features(0)
    total = h.new_zeros(())
    for j in range(cfg.rollout):
        tokens, ratio, still = step_inputs(backbone, batch, j)
        pred = shortcut_step(head, backbone, h, tokens, ratio)
        target = batch.branch_features(j + 1)
        if cfg.masked_only:
            err = (pred[:, image_pos] - target[:, image_pos]).pow(2).mean(-1)
            mse = (err * still).sum() / still.sum().clamp_min(1)
        else:
            mse = F.mse_loss(pred, target)
        total = total + mse
        if cfg.kl_weight > 0 and still.any():
            t, s = cfg.kl_temperature, guidance if cfg.kl_target == "guided" else None
            true_logits = masked_logits(backbone, target, still, branches, s)
            kl = distribution_kl(true_logits, masked_logits(backbone, pred, still, branches, s), t) / len(true_logits)
            total = total + cfg.kl_weight * t * t * kl
        h = pred
    return total / cfg.rollout


POSITION_CLASSES = ("committed", "new", "near", "far")


def position_classes(batch: ExampleBatch, k: int, rollout: int, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Image positions by their part in a shortcut rollout from step k over ``rollout`` steps, (B, N_img) each:
    committed before it, committed during it (the head is told these tokens), still masked next to one of
    those (8-neighbourhood on the token grid), and still masked elsewhere."""
    commit = batch.commit_step
    new = (commit >= k) & (commit < k + rollout)
    still = commit >= k + rollout
    beside = F.max_pool2d(new.float().view(-1, 1, *grid), 3, stride=1, padding=1).view_as(new) > 0
    return {"committed": commit < k, "new": new, "near": still & beside, "far": still & ~beside}


@torch.no_grad()
def validate(head, backbone, store: TrajectoryStore, indices: list[int], num_steps: int, device,
             chunk: int = 16, rollout: int = 1) -> list[dict]:
    """Per step index k: cosine / MSE / argmax agreement / guided KL of the head and of copying h_k,
    vs the true h_{k+1}.

    Measured on image positions (agreement: conditional branch; KL: the guided logits the
    sampler draws from, per position; both at positions still masked). With ``rollout`` J > 1
    the head is rolled J consecutive shortcut steps from the true h_k on its own predictions
    (the teacher's tokens) and both guesses are scored against h_{k+J}: the features the sampler
    draws from on the J-th shortcut step in a row.

    Each row also splits the feature MSE by ``position_classes`` (``mse_head_new``, ``mse_copy_far``, ...,
    and ``share_new``: the share of image positions in the class): where the error sits.
    """
    if not 1 <= rollout < num_steps:
        raise MigmError(f"rollout must be between 1 and {num_steps - 1} for {num_steps}-step trajectories, got {rollout}")
    head.eval()
    image_pos = backbone.layout.image_positions.to(device)
    rows = []
    for k in range(num_steps - rollout):
        sums = {"cos_head": 0.0, "cos_copy": 0.0, "mse_head": 0.0, "mse_copy": 0.0, "agree_head": 0.0,
                "agree_copy": 0.0, "kl_head": 0.0, "kl_copy": 0.0, "positions": 0, "masked": 0}
        sums.update({f"{kind}_{where}": 0.0 for where in POSITION_CLASSES for kind in ("se_head", "se_copy", "count")})
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            batch = ExampleBatch.collate([store.example(i, k, rollout) for i in part], torch.full((len(part),), k),
                                         device)
            h, target = batch.branch_features(0), batch.branch_features(rollout)
            pred = h
            for j in range(rollout):
                tokens, ratio, still = step_inputs(backbone, batch, j)
                pred = shortcut_step(head, backbone, pred, tokens, ratio)
            branches = batch.features.shape[2]
            true_img = target[:, image_pos]
            # one pass of the base head per guess: its cond rows give the agreement, all rows the guided KL
            true_logits = masked_logits(backbone, target, still, branches, None)
            cond_rows = len(true_logits) // branches
            true_top = true_logits[:cond_rows].argmax(-1)
            true_guided = guided_logits(true_logits, branches, store.guidance_scale)
            classes = {name: mask.repeat(branches, 1).float() for name, mask in
                       position_classes(batch, k, rollout, backbone.layout.grid_shape).items()}
            for name, guess in (("head", pred), ("copy", h)):
                err = (guess[:, image_pos] - true_img).pow(2).mean(-1)
                for where, mask in classes.items():
                    sums[f"se_{name}_{where}"] += (err * mask).sum().item()
                logits = masked_logits(backbone, guess, still, branches, None)
                guided = guided_logits(logits, branches, store.guidance_scale)
                sums[f"kl_{name}"] += distribution_kl(true_guided, guided).item()
                sums[f"agree_{name}"] += (logits[:cond_rows].argmax(-1) == true_top).sum().item()
                img = guess[:, image_pos]
                sums[f"cos_{name}"] += F.cosine_similarity(img, true_img, dim=-1).sum().item()
                sums[f"mse_{name}"] += (img - true_img).pow(2).mean(-1).sum().item()
            sums["positions"] += true_img.shape[0] * true_img.shape[1]
            sums["masked"] += cond_rows
            for where, mask in classes.items():
                sums[f"count_{where}"] += mask.sum().item()
        n, m = sums["positions"], max(sums["masked"], 1)
        rows.append({"step": k, "cos_head": sums["cos_head"] / n, "cos_copy": sums["cos_copy"] / n,
                     "mse_head": sums["mse_head"] / n, "mse_copy": sums["mse_copy"] / n,
                     "agree_head": sums["agree_head"] / m, "agree_copy": sums["agree_copy"] / m,
                     "kl_head": sums["kl_head"] / m, "kl_copy": sums["kl_copy"] / m,
                     **{f"mse_{guess}_{where}": sums[f"se_{guess}_{where}"] / max(sums[f"count_{where}"], 1)
                        for where in POSITION_CLASSES for guess in ("head", "copy")},
                     **{f"share_{where}": sums[f"count_{where}"] / n for where in POSITION_CLASSES}})
    return rows


def open_trajectories(folder: str | Path, backbone, log=print) -> TrajectoryStore:
    """A collected trajectory folder, checked against the base model it is used with."""
    store = TrajectoryStore.from_folder(folder, log=log)
    if store.fingerprint != backbone.fingerprint:
        raise MigmError(f"trajectories in {folder} were collected with another base model than --weights "
                        f"({store.fingerprint[:40]}... vs {backbone.fingerprint[:40]}...)")
    width = store.example(0, 0)["features"].shape[-1]
    if width != backbone.width:
        raise MigmError(f"trajectory features have width {width}, the base model {backbone.width}")
    return store


def held_out_indices(count: int, val_trajectories: int) -> list[int]:
    """The trajectories ``train-head`` keeps out of training: the last min(V, count // 10), at least one."""
    n_val = min(val_trajectories, max(1, count // 10))
    if count - n_val < 1:
        raise MigmError(f"the collection holds {count} trajectories; need at least 2 (training + validation)")
    return list(range(count - n_val, count))


def evaluate_head(head, backbone, data: str | Path, split: str = "held-out", num: int = 64, device="cpu",
                  log=print, rollout: int = 1) -> dict:
    """Score a saved head against the copy-previous-features baseline on collected trajectories.

    ``split="held-out"``: the trajectories ``train-head --val-trajectories NUM`` held out (a
    head's validation numbers, recomputed); ``"train"``: the first NUM trajectories, which it
    trained on. The two agreeing means the head is not short of data. ``rollout`` J > 1 scores
    the head rolled J steps against copying h_k for J steps (see ``validate``).
    """
    head.check_base(backbone)
    store = open_trajectories(data, backbone, log)
    if split == "held-out":
        indices = held_out_indices(len(store), num)
    elif split == "train":
        indices = list(range(min(num, len(store))))
    else:
        raise MigmError(f"split must be 'held-out' or 'train', got {split!r}")
    rows = validate(head.to(device), backbone.to(device), store, indices, store.num_steps, torch.device(device),
                    rollout=rollout)
    return {"data": str(data), "split": split, "trajectories": len(indices), "rollout": rollout, "rows": rows,
            "mean": validation_means(rows)}


def validation_means(rows: list[dict]) -> dict[str, float]:
    """Each metric of a per-step validation averaged over the step indices."""
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0] if key != "step"}


def format_validation(rows: list[dict], with_mean: bool = False) -> str:
    """The per-step table (optionally closed by its mean row), as train.log and validate-head print it."""
    def line(label, r: dict) -> str:
        return (f"{label:>4} | {r['cos_head']:.4f} | {r['cos_copy']:.4f} | {r['mse_head']:.4f} | "
                f"{r['mse_copy']:.4f} | {r['agree_head']:.3f} | {r['agree_copy']:.3f} | "
                f"{r['kl_head']:.4f} | {r['kl_copy']:.4f}")

    lines = ["step | cos head | cos copy | mse head | mse copy | argmax agree head | copy | guided KL head | copy"]
    lines += [line(r["step"], r) for r in rows]
    if with_mean:
        lines.append(line("mean", validation_means(rows)))
    return "\n".join(lines)


def format_position_errors(rows: list[dict]) -> str:
    """Where the feature error sits (``position_classes``): per step, each class's share of the image positions,
    the head's and copying's MSE there, and the class's share of the head's total error."""
    def line(label, r: dict) -> str:
        total = sum(r[f"share_{c}"] * r[f"mse_head_{c}"] for c in POSITION_CLASSES) or 1.0
        return f"{label:>4} | " + " | ".join(
            f"{100 * r[f'share_{c}']:4.1f}% {r[f'mse_head_{c}']:.4f} {r[f'mse_copy_{c}']:.4f} "
            f"{100 * r[f'share_{c}'] * r[f'mse_head_{c}'] / total:4.1f}%" for c in POSITION_CLASSES)
    head = "step | " + " | ".join(f"{c}: positions, mse head, mse copy, share of head error" for c in POSITION_CLASSES)
    return "\n".join([head] + [line(r["step"], r) for r in rows] + [line("mean", validation_means(rows))])


class OnlineTrajectories:
    """Round r of online training: trajectories generated by the teacher, a pure function of (r, rank)."""

    def __init__(self, backbone, cfg: HeadTrainConfig, rank: int, world: int, model_prompts=None):
        self.backbone, self.rank, self.world = backbone, rank, world
        self.collect = CollectConfig(num=1, steps=cfg.teacher_steps, guidance_scale=cfg.guidance_scale,
                                     temperature=cfg.temperature, batch_size=cfg.online_trajectories, seed=cfg.seed,
                                     prompts=cfg.prompts, rule=cfg.rule)
        self.source = prompt_source(self.collect, model_prompts)
        self.per_round = cfg.online_trajectories
        self.round, self.store = None, None

    def for_round(self, r: int) -> TrajectoryStore:
        if r != self.round:
            first = (r * self.world + self.rank) * self.per_round
            tensors = generate_trajectories(self.backbone, self.collect, list(range(first, first + self.per_round)),
                                            self.source)
            self.round, self.store = r, TrajectoryStore([tensors], guidance_scale=self.collect.guidance_scale)
        return self.store

    def validation(self, count: int) -> TrajectoryStore:
        # A separate seed stream, so validation trajectories never appear in training rounds.
        held_out = CollectConfig(num=count, steps=self.collect.steps, guidance_scale=self.collect.guidance_scale,
                                 temperature=self.collect.temperature, batch_size=self.collect.batch_size,
                                 seed=self.collect.seed + 1, prompts=self.collect.prompts, rule=self.collect.rule)
        return TrajectoryStore([generate_trajectories(self.backbone, held_out, list(range(count)), self.source)],
                               guidance_scale=held_out.guidance_scale)


def with_direct_token_path(head: ShortcutHead) -> ShortcutHead:
    """``head`` with the generic head's direct token path added, at zero: the same predictions, one more layer."""
    config = ShortcutHeadConfig(**{**asdict(head.config), "direct_token_path": True})
    extended = ShortcutHead(config)
    missing, unexpected = extended.load_state_dict(head.state_dict(), strict=False)
    if unexpected or any(not name.startswith("token_at_position.") for name in missing):
        raise MigmError(f"cannot add the direct token path to this {head.config.architecture} head "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return extended.to(next(head.parameters()).dtype)


def train_head(cfg: HeadTrainConfig, backbone=None, model_prompts=None) -> dict:
    """Train (or resume) a shortcut head for ``backbone`` (default: ``load_model(cfg.model)``'s).

    ``model_prompts(seed, index) -> (prompt, label)``: the prompts online mode cycles through
    when ``cfg.prompts`` is None (a loaded model's own, where it has some).
    """
    cfg.check()
    rank, world, device = init_distributed(cfg.device)
    is_main = rank == 0
    out = Path(cfg.out)
    log = RunLog(out / "train.log", echo=is_main) if is_main else (lambda message: None)
    if backbone is None:
        from migm_shortcut.registry import load_model

        model = load_model(cfg.model, device=str(device), trust_remote_code=cfg.trust_remote_code)
        backbone, model_prompts, cfg.rule = model.backbone, model.trajectory_prompt, model.rule
    check_model(backbone)
    if backbone.device.type != device.type or (device.index is not None and backbone.device != device):
        raise MigmError(f"the model is on {backbone.device} but training runs on {device}; load it there "
                        "(--device, or load_model(..., device=...))")
    device = backbone.device
    if isinstance(backbone, torch.nn.Module):  # frozen: the KL term backpropagates through its output layer
        backbone.eval().requires_grad_(False)

    if cfg.online:
        online = OnlineTrajectories(backbone, cfg, rank, world, model_prompts)
        num_steps = cfg.teacher_steps
        val_store = online.validation(cfg.val_trajectories) if is_main else None
        val_indices = list(range(cfg.val_trajectories))
        train_count = cfg.online_trajectories
    else:
        store = open_trajectories(cfg.data, backbone, log)
        num_steps = store.num_steps
        val_indices = held_out_indices(len(store), cfg.val_trajectories)
        val_store, train_count = store, len(store) - len(val_indices)
        if store.skipped:
            log(f"skipped {len(store.skipped)} corrupt shard(s): {', '.join(store.skipped)}")
    if num_steps - cfg.rollout < 1:
        raise MigmError(f"rollout {cfg.rollout} needs trajectories longer than {cfg.rollout} steps (have {num_steps})")

    torch.manual_seed(cfg.seed)
    if cfg.init_head:
        head = ShortcutHead.from_pretrained(cfg.init_head, device=device)
        trained_for = head.config.base_fingerprint
        if cfg.rebind_init_head and head.rebind(backbone) and is_main:
            log(f"train-head: --init-head was trained for {trained_for}; fine-tuning it for {backbone.fingerprint}")
        head.check_base(backbone)
        if cfg.direct_token_path and not head.config.direct_token_path:
            head = with_direct_token_path(head).to(device)
            if is_main:
                log("train-head: --init-head extended with the direct token path (zero at the start)")
    else:
        head = ShortcutHead.for_base(backbone, **cfg.head_options()).to(device)
    trained = DistributedDataParallel(head) if world > 1 else head
    decay = [p for n, p in head.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in head.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
    ema = EMA(head, cfg.ema_decay)
    checkpoint = out / "checkpoints" / "head.pt"
    if is_main:
        log(f"train-head: {head.num_parameters():,} parameters ({head.num_parameters() / backbone.num_parameters():.3f} "
            f"of the base model), {world} process(es), {'online' if cfg.online else f'{train_count} trajectories'}, "
            f"settings {cfg.settings()}")

    def loss_at(step: int) -> torch.Tensor:
        source = online.for_round(step // cfg.online_steps_per_round) if cfg.online else store
        gen = batch_generator(cfg.seed * 1009 + rank, step, torch.device("cpu"))
        picks = torch.randint(0, train_count, (cfg.batch_size,), generator=gen)
        starts = torch.randint(0, num_steps - cfg.rollout, (cfg.batch_size,), generator=gen)
        examples = [source.example(int(i), int(k), cfg.rollout) for i, k in zip(picks, starts)]
        return rollout_loss(trained, backbone, ExampleBatch.collate(examples, starts, device), cfg,
                            source.guidance_scale)

    # a resumed run keeps the curve measured before it was stopped
    history: list[dict] = (read_json(out / "validation.json")["history"]
                           if cfg.resume and (out / "validation.json").is_file() else [])

    def run_validation(done: int) -> None:
        if not is_main:
            return
        rows = validate(ema.shadow, backbone, val_store, val_indices, num_steps, device)
        history[:] = [h for h in history if h["step"] < done] + [{"step": done, "rows": rows}]
        m = validation_means(rows)
        log(f"validation at step {done}: mean cos head {m['cos_head']:.4f} vs copy {m['cos_copy']:.4f}; "
            f"mse head {m['mse_head']:.4f} vs copy {m['mse_copy']:.4f}; guided KL head {m['kl_head']:.4f} "
            f"vs copy {m['kl_copy']:.4f}\n{format_validation(rows)}")
        write_json(out / "validation.json", {"history": history})

    seconds = train_loop(name="head", model=head, optimizer=opt, total_steps=cfg.steps, warmup=cfg.warmup,
                         loss_at=loss_at, checkpoint=checkpoint, log=log, resume=cfg.resume,
                         checkpoint_every=cfg.checkpoint_every, ema=ema, on_interval=run_validation,
                         interval=cfg.val_every, is_main=is_main)
    result = {}
    if is_main:
        if not history or history[-1]["step"] != cfg.steps:
            run_validation(cfg.steps)
        rows = history[-1]["rows"]
        ema.shadow.cpu().save_pretrained(out / HEAD_FOLDER)
        result = {"train_seconds": round(seconds, 1), "steps": cfg.steps, "processes": world,
                  "parameters": head.num_parameters(), "base_parameters": backbone.num_parameters(),
                  "beats_copy_at_every_step": all(r["cos_head"] > r["cos_copy"] for r in rows),
                  "validation": rows, "settings": cfg.settings()}
        write_json(out / "metrics.json", result)
        log(f"train-head: saved the EMA head to {out / HEAD_FOLDER} ({seconds / 60:.1f} min)")
    if world > 1:
        dist.barrier()
    return result
