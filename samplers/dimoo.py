"""A Lumina-DiMOO-style text-to-image sampler for masked image generation models.

The loop, per step k of N:

1. the step policy supplies features for both CFG branches (vanilla: one backbone pass);
2. the base model's head turns them into image-code logits; on masked positions the guided
   logits are ``(1 + s) * cond - s * uncond``;
3. a token is drawn at every masked position by Gumbel-max on ``logits / tau``; its
   confidence is the softmax probability of the drawn token;
4. score = log(confidence) + tau * Gumbel noise; among positions masked before the step, the
   lowest-scoring ones that the cosine schedule keeps masked are re-masked, the rest are
   committed (committed tokens are never re-masked; end-of-row tokens are never masked).

Unlike DiMOO's loop this one is batched. Every sample draws its noise from its own seeded
``torch.Generator``, so a sample's tokens depend on its prompt and seed, not on which other
samples share its batch or which policy runs (up to float round-off across batch shapes).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from migm_shortcut.errors import MigmError
from migm_shortcut.interface import check_model

from .policies import StepPolicy, StepState, VanillaPolicy
from .schedule import masked_counts


@dataclass
class SampleOutput:
    codes: torch.Tensor          # (B, H, W) image code ids (the layout's grid_shape)
    full_steps: torch.Tensor     # (B,) backbone passes each sample paid for
    num_steps: int
    loop_seconds: float          # wall-clock of the sampling loop (no decoding)
    step_full: list[torch.Tensor] = field(default_factory=list)  # per step, (B,) bool
    commit_step: torch.Tensor | None = None  # (B, N_img) the step at which each image token was committed


def gumbel_noise(shape: tuple[int, ...], generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Standard Gumbel noise, one independent draw per sample from that sample's generator."""
    uniform = torch.stack([torch.rand(shape, generator=g) for g in generators])
    return -torch.log(-torch.log(uniform.clamp_(1e-20, 1.0 - 1e-7)))


def guided_logits(logits: torch.Tensor, num_branches: int, guidance_scale: float | torch.Tensor) -> torch.Tensor:
    """``(1 + s) * cond - s * uncond`` from the stacked branches (cond first).

    ``guidance_scale`` is one number, or a tensor that broadcasts against a branch (one scale
    per sample: shape (B, 1, 1) for (B, positions, codes) logits).
    """
    if num_branches == 1:
        return logits
    cond, uncond = logits.chunk(2)
    return (1 + guidance_scale) * cond - guidance_scale * uncond


class DiMOOSampler:
    """Batched masked-token sampler with a pluggable step policy.

    >>> sampler = DiMOOSampler(backbone, num_steps=16)
    >>> out = sampler.generate(["a photo of a sneaker"] * 4, seeds=[0, 1, 2, 3])
    """

    def __init__(self, backbone, num_steps: int = 16, guidance_scale: float = 4.0,
                 temperature: float = 1.0, policy: StepPolicy | None = None):
        check_model(backbone)
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise MigmError(f"steps must be a whole number >= 1, got {num_steps!r}")
        for name, value in (("guidance scale", guidance_scale), ("temperature", temperature)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise MigmError(f"{name} must be a finite number >= 0, got {value!r}")
        self.backbone = backbone
        self.layout = backbone.layout
        self.num_steps = num_steps
        self.schedule = masked_counts(self.layout.num_image_tokens, num_steps)
        self.guidance_scale = guidance_scale
        self.temperature = temperature
        self.policy = policy or VanillaPolicy()

    @property
    def num_branches(self) -> int:
        return 2 if self.guidance_scale > 0 else 1

    def initial_sequences(self, prompts: Sequence) -> torch.Tensor:
        cond = torch.stack([self.layout.encode_prompt(p) for p in prompts])
        branches = [cond]
        if self.num_branches == 2:
            branches.append(torch.stack([self.layout.encode_prompt(None)] * len(prompts)))
        return self.layout.template(torch.cat(branches))

    def step_guidance(self, out) -> float | torch.Tensor:
        """The CFG scale of this step: the sampler's, except for samples on a cheap step whose
        policy asked for another (``StepOutput.cheap_guidance``); then one scale per sample."""
        if out.cheap_guidance is None or bool(out.full.all()):
            return self.guidance_scale
        scale = torch.where(out.full.cpu(), torch.tensor(float(self.guidance_scale)), torch.tensor(float(out.cheap_guidance)))
        return scale[:, None, None]

    @torch.no_grad()
    def generate(self, prompts: Sequence, seeds: Sequence[int], progress: bool = False) -> SampleOutput:
        """Codes for each (prompt, seed); prompts are text, or class ids for class-conditional models."""
        if len(prompts) != len(seeds):
            raise MigmError(f"got {len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
        if not prompts:
            raise MigmError("no prompts given")
        device = self.backbone.device
        layout, n_img = self.layout, self.layout.num_image_tokens
        batch = len(prompts)
        seq = self.initial_sequences(prompts).to(device)
        base_seq = seq.clone()
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        codes = torch.zeros(batch, n_img, dtype=torch.long)
        masked = torch.ones(batch, n_img, dtype=torch.bool)
        commit_step = torch.full((batch, n_img), -1, dtype=torch.long)
        full_steps = torch.zeros(batch, dtype=torch.long)
        step_full: list[torch.Tensor] = []
        prev_features, newly = None, None
        self.policy.reset(batch, self.num_steps)

        start = time.perf_counter()
        for k in tqdm(range(self.num_steps), desc="sampling", leave=False, disable=not progress):
            state = StepState(
                step=k, num_steps=self.num_steps, backbone=self.backbone, input_ids=seq,
                num_branches=self.num_branches, prev_features=prev_features, newly_committed=newly,
                masked=masked, mask_ratio=masked.float().mean(1),
            )
            out = self.policy.step(state)
            if out.features.shape[:2] != seq.shape:
                raise MigmError(f"policy {self.policy.name!r} returned features of shape {tuple(out.features.shape)}, expected {tuple(seq.shape)} + (C,)")
            full_steps += out.full.long().cpu()
            step_full.append(out.full.cpu())

            image_features = out.features[:, layout.image_positions.to(device)]
            logits = self.backbone.logits_from_features(image_features).float().cpu()
            if not torch.isfinite(logits).all():
                raise MigmError(f"non-finite logits at step {k} (policy {self.policy.name!r}); the model or head weights are broken")
            logits = guided_logits(logits, self.num_branches, self.step_guidance(out))

            # Noise is drawn for every position every step, whatever the policy, so runs
            # with different policies see identical random numbers.
            sample_noise = gumbel_noise((n_img, logits.shape[-1]), generators)
            rank_noise = gumbel_noise((n_img,), generators)
            if self.temperature > 0:
                sampled = (logits / self.temperature + sample_noise).argmax(-1)
            else:
                sampled = logits.argmax(-1)
            log_conf = torch.log_softmax(logits, -1).gather(-1, sampled[..., None])[..., 0]
            score = log_conf + self.temperature * rank_noise
            score = score.masked_fill(~masked, float("inf"))  # committed tokens are never re-masked

            keep_masked = self.schedule[k]
            still_masked = torch.zeros_like(masked)
            if keep_masked > 0:
                lowest = score.topk(keep_masked, dim=1, largest=False).indices
                still_masked.scatter_(1, lowest, True)
            newly = masked & ~still_masked
            codes = torch.where(newly, sampled, codes)
            commit_step[newly] = k
            masked = still_masked

            committed = (~masked).repeat(self.num_branches, 1)
            seq = layout.with_codes(base_seq, codes.repeat(self.num_branches, 1).to(device), committed.to(device))
            prev_features = out.features
        loop_seconds = time.perf_counter() - start

        return SampleOutput(codes.view(batch, *layout.grid_shape), full_steps, self.num_steps, loop_seconds, step_full, commit_step)
