"""Per-step sensitivity of a masked model's features to its input tokens (SenCache, adapted).

SenCache (for video diffusion) reuses a cached denoiser output while the first-order
estimate ``Jz * ||z - z_ref|| + Jt * |t - t_ref|`` of the output change stays below eps.
Mapped onto a masked image model:

* the *latent* is the embedded token sequence ``E(x_k)``: between steps it changes only where
  tokens were committed (MASK -> code), so ``||E(x_k) - E(x_ref)||`` measures how much new
  content the model has not seen since the reference (last computed) step;
* the *timestep* is the mask ratio, but it moves in lock-step with the committed tokens
  (DiMOO has no timestep input), so the honest form is one term, ``J_k * ||dE||``, with
  ``J_k`` looked up by step index;
* the *output* is the last-layer features at the image positions still masked (the only ones
  whose logits the sampler reads).

Calibration runs the vanilla sampler and measures, per step k >= 1 and per sample,
``J_k = ||F_k - F_{k-1}||_masked / ||E(x_k) - E(x_{k-1})||`` over both CFG branches together,
averaged over samples. At sampling time the score of a sample is

    score_k = J_k * ||E(x_k) - E(x_ref)|| / sqrt(n_masked_k * C * branches)

i.e. the predicted root-mean-square change of one feature element at the masked positions
(eps is in those units; features sit after a LayerNorm, so they are of order 1). Both CFG
branches are scored together: they feed one pair of guided logits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from migm_shortcut.distributed import all_sum, my_batches
from migm_shortcut.errors import MigmError
from migm_shortcut.io import read_json, write_json
from migm_shortcut.interface import check_model

from migm_shortcut.rules import DiMOORule, SamplingRule

from .sampler import MaskedTokenSampler
from .policies import StepOutput, StepState, VanillaPolicy

CALIBRATION_TYPE = "sensitivity-table"


@dataclass
class SensitivityTable:
    """``sensitivity[k]`` = calibrated J_k for step k of ``num_steps`` (k = 0 copies k = 1)."""

    base_fingerprint: str
    num_steps: int
    guidance_scale: float
    temperature: float
    num_samples: int
    sensitivity: list[float]

    def save(self, path: str | Path) -> None:
        write_json(path, {"type": CALIBRATION_TYPE, **asdict(self)})

    @classmethod
    def load(cls, path: str | Path) -> "SensitivityTable":
        raw = read_json(path)
        if not isinstance(raw, dict) or raw.get("type") != CALIBRATION_TYPE:
            raise MigmError(f"{path} is not a sensitivity calibration file (make one with `migm-shortcut calibrate --out FILE`)")
        try:
            table = cls(**{k: v for k, v in raw.items() if k != "type"})
        except TypeError as exc:
            raise MigmError(f"{path}: malformed calibration file ({exc}); recreate it with `migm-shortcut calibrate`") from None
        values = table.sensitivity
        if (not isinstance(values, list) or len(values) != table.num_steps
                or not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values)):
            raise MigmError(f"{path}: 'sensitivity' must hold {table.num_steps} finite non-negative numbers; recreate the file")
        return table

    def check_steps(self, num_steps: int) -> None:
        if num_steps != self.num_steps:
            raise MigmError(f"the sensitivity calibration is for N={self.num_steps} steps, not {num_steps}; "
                            f"run `migm-shortcut calibrate --steps {num_steps} --out FILE` and pass --calibration FILE")

    def check_base(self, backbone) -> None:
        if self.base_fingerprint != backbone.fingerprint:
            raise MigmError("the sensitivity calibration was made on another base model "
                            f"({self.base_fingerprint[:40]}..., this one is {backbone.fingerprint[:40]}...); "
                            "run `migm-shortcut calibrate` for this model")


def load_calibration(calibration: SensitivityTable | str | Path | None) -> SensitivityTable:
    """A table or a calibration file (``None``: one line saying where tables come from)."""
    if isinstance(calibration, SensitivityTable):
        return calibration
    if calibration is None:
        raise MigmError("this policy needs a sensitivity calibration and none was given; pass one (--calibration FILE, "
                        "or the calibration.json of the model's weights folder), or make one with "
                        "`migm-shortcut calibrate --model PATH --out FILE`")
    return SensitivityTable.load(calibration)


def per_sample_norm(x: torch.Tensor, num_branches: int) -> torch.Tensor:
    """L2 norm per sample over every element of all its CFG branch rows: (branches*B, ...) -> (B,)."""
    squares = x.float().pow(2).flatten(1).sum(1)
    return squares.view(num_branches, -1).sum(0).sqrt()


def masked_image_features(state: StepState, features: torch.Tensor) -> torch.Tensor:
    """Features at the image positions still masked before this step, zero elsewhere: (rows, N_img, C)."""
    layout = state.backbone.layout
    image = features[:, layout.image_positions.to(features.device)]
    keep = state.masked.repeat(state.num_branches, 1).to(features.device)
    return image * keep[..., None]


class SensitivityScore:
    """Per-sample full-step trigger shared by the sencache and adaptive policies.

    Tracks, per sample, the embedding of the input at its last full step (the reference) and
    how many cheap steps it has taken in a row, and scores the drift since the reference.
    """

    def __init__(self, table: SensitivityTable):
        self.table = table
        self.reference: torch.Tensor | None = None  # (branches*B, L, C) embeddings at each sample's last full step
        self.run: torch.Tensor | None = None        # (B,) cheap steps in a row since each sample's last full step
        self._checked_base: int | None = None

    def reset(self, num_steps: int) -> None:
        self.table.check_steps(num_steps)
        self.reference = self.run = None

    def check_base(self, backbone) -> None:
        if self._checked_base != id(backbone):
            self.table.check_base(backbone)
            self._checked_base = id(backbone)

    def score(self, state: StepState, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) predicted RMS feature change at masked positions since each sample's last full step."""
        if self.reference is None:
            return torch.full((state.batch_size,), math.inf)
        if embedded is None:
            embedded = state.backbone.embed(state.input_ids)
        drift = per_sample_norm(embedded - self.reference, state.num_branches)
        n_masked = state.masked.sum(1).clamp(min=1).to(drift.device)
        scale = (n_masked * state.backbone.width * state.num_branches).float().sqrt()
        return (self.table.sensitivity[state.step] * drift / scale).cpu()

    def mark_full(self, state: StepState, full: torch.Tensor, embedded: torch.Tensor | None = None) -> None:
        """Samples with ``full`` set are computed this step: their reference moves to this step's input."""
        if embedded is None:
            embedded = state.backbone.embed(state.input_ids)
        if self.reference is None:
            self.reference = embedded
        else:
            rows = state.rows(full.nonzero()[:, 0]).to(embedded.device)
            self.reference[rows] = embedded[rows]
        run = torch.zeros(state.batch_size, dtype=torch.long) if self.run is None else self.run
        self.run = torch.where(full, torch.zeros_like(run), run + 1)

    def decide(self, state: StepState, eps: float, max_reuse: int | None, force: bool = False) -> torch.Tensor:
        """(B,) which samples take a full step now: score >= eps or ``max_reuse`` cheap steps in a row
        (every sample when ``force`` or at the first step); records the decision."""
        embedded = state.backbone.embed(state.input_ids)
        if force or self.reference is None:
            full = torch.ones(state.batch_size, dtype=torch.bool)
        else:
            full = self.score(state, embedded) >= eps
            if max_reuse is not None:
                full |= self.run >= max_reuse
        self.mark_full(state, full, embedded)
        return full


class _Recorder(VanillaPolicy):
    """Vanilla sampling that accumulates ||dF_masked|| / ||dE|| per step."""

    name = "calibration-recorder"

    def __init__(self, num_steps: int):
        self.sums = torch.zeros(num_steps, dtype=torch.float64)
        self.counts = torch.zeros(num_steps, dtype=torch.float64)

    def reset(self, batch_size: int, num_steps: int) -> None:
        self.prev_embed = None

    def step(self, state: StepState) -> StepOutput:
        out = super().step(state)
        embedded = state.backbone.embed(state.input_ids)
        if self.prev_embed is not None:
            d_features = masked_image_features(state, out.features - state.prev_features)
            d_embed = per_sample_norm(embedded - self.prev_embed, state.num_branches)
            ratio = per_sample_norm(d_features, state.num_branches) / d_embed.clamp(min=1e-12)
            valid = d_embed > 0
            self.sums[state.step] += ratio[valid].double().sum().cpu()
            self.counts[state.step] += valid.sum().cpu()
        self.prev_embed = embedded
        return out


@torch.no_grad()
def calibrate(backbone, prompts, num_steps: int, guidance_scale: float, temperature: float,
              batch_size: int = 32, seed: int = 0, progress: bool = True, rule: SamplingRule = DiMOORule()) -> SensitivityTable:
    """Sensitivity table from one vanilla trajectory per prompt (prompt i uses seed ``seed + i``).

    Under torchrun each process runs a share of the batches (round-robin, the batches of one process)
    and the sums are added over the processes, so the table is the one-process table."""
    check_model(backbone)
    if num_steps < 2:
        raise MigmError(f"calibration needs at least 2 steps, got {num_steps}")
    prompts = list(prompts)
    if not prompts:
        raise MigmError("calibration needs at least one prompt")
    num_samples = len(prompts)
    recorder = _Recorder(num_steps)
    sampler = MaskedTokenSampler(backbone, num_steps, guidance_scale, temperature, recorder, rule=rule)
    for index in tqdm(my_batches(num_samples, batch_size), desc="calibrating", unit="batch", disable=not progress):
        sampler.generate([prompts[i] for i in index], [seed + i for i in index])
    totals = all_sum(recorder.sums.tolist() + recorder.counts.tolist())
    sums, counts = torch.tensor(totals[:num_steps]), torch.tensor(totals[num_steps:])
    mean = (sums / counts.clamp(min=1)).tolist()
    mean[0] = mean[1]  # step 0 is always computed; keep the table total
    return SensitivityTable(backbone.fingerprint, num_steps, float(guidance_scale), float(temperature), num_samples,
                            [round(v, 6) for v in mean])
