"""The masked-token sampler: one batched, seeded, device-resident loop for every family.

The loop, per step k of N (the model's ``SamplingRule`` fixes the schedule, the confidence, the
choice noise and the guidance annealing; the step policy fixes where the features come from):

1. the step policy supplies features for both CFG branches (vanilla: one backbone pass);
2. the base model's head turns them into image-code logits; on masked positions the guided
   logits are ``(1 + w_k s) * cond - w_k s * uncond`` (w_k: the rule's guidance annealing);
3. a token is drawn at every masked position from ``softmax(logits / tau)`` (by inverse CDF:
   the same categorical as DiMOO's Gumbel-max, with one random number per position instead of
   one per code); its confidence is the softmax probability of the drawn token (tempered or not,
   as the rule says);
4. score = log(confidence) + (the rule's choice noise) * Gumbel noise; among positions masked
   before the step, the lowest-scoring ones that the rule's schedule keeps masked are re-masked,
   the rest are committed (committed tokens are never re-masked; end-of-row tokens are never masked).

Unlike DiMOO's loop this one is batched. Every sample draws its noise from its own seeded
``torch.Generator``, so a sample's tokens depend on its prompt and seed, not on which other
samples share its batch or which policy runs (up to float round-off across batch shapes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from migm_shortcut.checks import check_sampling
from migm_shortcut.errors import MigmError
from migm_shortcut.interface import check_model
from migm_shortcut.rules import DiMOORule, SamplingRule
from migm_shortcut.sequence import per_branch, write_committed

from .policies import StepPolicy, StepState, VanillaPolicy


@dataclass
class SampleOutput:
    codes: torch.Tensor          # (B, H, W) image code ids (the layout's grid_shape)
    full_steps: torch.Tensor     # (B,) backbone passes each sample paid for
    num_steps: int
    loop_seconds: float          # wall-clock of the sampling loop (no decoding)
    step_full: list[torch.Tensor] = field(default_factory=list)  # per step, (B,) bool
    commit_step: torch.Tensor | None = None  # (B, N_img) the step at which each image token was committed


def gumbel(uniform: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise from uniform samples."""
    return -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))


def draw_uniform(generators: Sequence[torch.Generator], count: int, device: torch.device) -> torch.Tensor:
    """(B, count) uniforms, row i from sample i's own generator (on ``device``): a sample's draws
    depend on its seed, never on the other samples in the batch."""
    return torch.stack([torch.rand(count, generator=g, device=device) for g in generators])


class StepNoise:
    """Every step's random numbers, drawn once per generation (one call per sample, not one per
    sample per step): step k uses ``2 M_k`` uniforms, M_k positions still masked, the first half
    for the tokens, the second (as Gumbel noise) for the ranking. On CPU a generator's stream
    does not depend on how it is split into calls, so the tokens are those of drawing step by step."""

    def __init__(self, generators: Sequence[torch.Generator], masked_per_step: Sequence[int], device: torch.device):
        self.offsets = [0]
        for m in masked_per_step:
            self.offsets.append(self.offsets[-1] + 2 * m)
        self.uniform = draw_uniform(generators, self.offsets[-1], device)
        self.gumbel = gumbel(self.uniform)

    def step(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(token uniforms, ranking Gumbel noise) of step k, each (B, M_k)."""
        start, end = self.offsets[k], self.offsets[k + 1]
        middle = (start + end) // 2
        return self.uniform[:, start:middle], self.gumbel[:, middle:end]


def row_offsets(rows: int, length: int, device: torch.device) -> torch.Tensor:
    """(R, 1): where each row of (R, L, ...) starts once flattened (``select_rows``' ``offsets``)."""
    return torch.arange(0, rows * length, length, device=device)[:, None]


def select_rows(features: torch.Tensor, positions: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """``features[i, positions[i]]`` for every row i: (R, L, C), (R, M) -> (R, M, C). One
    ``index_select`` over the flattened rows; a ``gather`` with an expanded index is several
    times slower on CPU. ``offsets``: ``row_offsets`` of the features, when the caller keeps them."""
    rows, length, width = features.shape
    if offsets is None:
        offsets = row_offsets(rows, length, positions.device)
    flat = features.reshape(rows * length, width).index_select(0, (positions + offsets).view(-1))
    return flat.view(*positions.shape, width)


def sync(device: torch.device) -> None:
    """Wait for the device (timing only: the loop itself never waits for it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def guided_logits(logits: torch.Tensor, num_branches: int, guidance_scale: float | torch.Tensor) -> torch.Tensor:
    """``(1 + s) * cond - s * uncond`` from the stacked branches (cond first).

    ``guidance_scale`` is one number, or a tensor that broadcasts against a branch (one scale
    per sample: shape (B, 1, 1) for (B, positions, codes) logits).
    """
    if num_branches == 1:
        return logits
    cond, uncond = logits.chunk(2)
    # lerp(u, c, 1 + s) = u + (1 + s)(c - u): one pass over the logits instead of three.
    weight = 1 + guidance_scale
    return torch.lerp(uncond, cond, weight.to(cond.dtype) if isinstance(weight, torch.Tensor) else float(weight))


def sample_and_commit(logits: torch.Tensor, token_uniform: torch.Tensor, rank_gumbel: torch.Tensor,
                      where: torch.Tensor, keep: int, tau: float, noise_scale: float, tempered_confidence: bool):
    """One step's sampling and commit, after the guided logits of the ``where`` positions.

    ``where`` (B, M): the image indices still masked, in image order. A token is drawn at each
    from ``softmax(logits / tau)`` (with ``tempered_confidence``, MaskGIT's ``softmax(logits * tau)``)
    by inverse CDF with ``token_uniform``; its score is its
    log-confidence plus ``noise_scale`` times ``rank_gumbel``; the ``keep`` lowest-scoring stay
    masked, the rest are committed. Returns (still masked indices (B, keep), committed indices
    (B, M - keep), their tokens, softmax normaliser sum), the indices in image order. The last is
    non-finite exactly when some logit is NaN or +inf (or a row is all -inf): the sampler's check
    on the model output, at no extra pass.

    The (B, M, K) logits are the loop's only large tensors (at Lumina-DiMOO's grid and codebook,
    32 M numbers per sample), so they are passed over as few times as possible: max, subtract and
    exponentiate in place, cumulative sum in place; the log-confidence comes from the logit of the
    drawn token and the normaliser, with no log-softmax over K. Everything else is (B, M): one
    ranking sort splits the positions, so no (B, N_img) mask is rebuilt. Pure tensor code with no
    host reads, so ``torch.compile`` can fuse it (``MaskedTokenSampler(compile_step=True)``).
    """
    # DiMOO's confidence is the untempered softmax; MaskGIT's the tempered one it samples from, whose
    # temperature (sm_temp) multiplies the logits, as published.
    if tempered_confidence:
        scaled, tau = logits * tau, 1.0
    else:
        scaled = logits
    peak = scaled.amax(-1, keepdim=True)
    confidence_is_sampled = tau == 1  # the softmax sampled from is the one scored (MaskGIT always, DiMOO at tau 1)
    if tau > 0:
        unnormalised = (scaled - peak if confidence_is_sampled else (scaled - peak) / tau).exp_()
        cdf = unnormalised.cumsum_(-1)
        total = cdf[..., -1:]
        sampled = torch.searchsorted(cdf, token_uniform[..., None] * total).squeeze(-1)
        sampled = sampled.clamp_(max=logits.shape[-1] - 1)
    else:
        sampled = scaled.argmax(-1)
    # Otherwise (tempered or greedy sampling, untempered confidence) its normaliser takes one more pass.
    normaliser = total if confidence_is_sampled else (scaled - peak).exp_().sum(-1, keepdim=True)
    log_conf = (scaled.gather(-1, sampled[..., None]) - peak - normaliser.log())[..., 0]
    score = log_conf + noise_scale * rank_gumbel
    # Lowest scores first (stable: ties keep image order), then each part back in image order.
    ranked = score.argsort(dim=1, stable=True)
    stay_slots = ranked[:, :keep].sort(dim=1).values
    commit_slots = ranked[:, keep:].sort(dim=1).values
    return (where.gather(1, stay_slots), where.gather(1, commit_slots), sampled.gather(1, commit_slots),
            normaliser.sum())


class MaskedTokenSampler:
    """Batched masked-token sampler with a pluggable step policy, under a family's sampling rule.

    >>> sampler = MaskedTokenSampler.for_model(model, num_steps=16)      # the model's rule and defaults
    >>> out = sampler.generate(["a photo of a sneaker"] * 4, seeds=[0, 1, 2, 3])
    """

    def __init__(self, backbone, num_steps: int = 16, guidance_scale: float = 4.0,
                 temperature: float = 1.0, policy: StepPolicy | None = None,
                 logits_dtype: torch.dtype = torch.float32, rule: SamplingRule = DiMOORule(), compile_step: bool = False):
        check_model(backbone)
        check_sampling(num_steps, guidance_scale, temperature)
        if not isinstance(rule, SamplingRule):
            raise MigmError(f"rule must be a SamplingRule (DiMOORule(), MaskGITRule(), ...), got {rule!r}")
        self.backbone = backbone
        self.layout = backbone.layout
        self.num_steps = num_steps
        self.rule = rule
        self.schedule = rule.masked_counts(self.layout.num_image_tokens, num_steps)
        self.guidance_scale = guidance_scale
        self.temperature = temperature
        self.policy = policy or VanillaPolicy()
        # Guidance, softmax and the cumulative sum run in this dtype. fp32 by default: bf16 logits
        # changed the sampled tokens measurably on the embedded model (docs/results/logits_dtype.json).
        self.logits_dtype = logits_dtype
        # torch.compile of the per-step sampling math: dynamic shapes, so the shrinking number of
        # masked positions does not recompile every step.
        self.compile_step = bool(compile_step)
        self._sample_and_commit = (torch.compile(sample_and_commit, dynamic=True) if compile_step
                                   else sample_and_commit)

    @classmethod
    def for_model(cls, model, num_steps: int | None = None, guidance_scale: float | None = None,
                  temperature: float | None = None, policy: StepPolicy | None = None, rule: SamplingRule | None = None,
                  **options) -> "MaskedTokenSampler":
        """The sampler of a loaded model: its backbone, its rule (or ``rule``), its defaults for what is left None."""
        d = model.defaults
        return cls(model.backbone, d.num_steps if num_steps is None else num_steps,
                   d.guidance_scale if guidance_scale is None else guidance_scale,
                   d.temperature if temperature is None else temperature, policy, rule=rule or model.rule, **options)

    @property
    def num_branches(self) -> int:
        return 2 if self.guidance_scale > 0 else 1

    def initial_sequences(self, prompts: Sequence) -> torch.Tensor:
        cond = torch.stack([self.layout.encode_prompt(p) for p in prompts])
        branches = [cond]
        if self.num_branches == 2:
            branches.append(torch.stack([self.layout.encode_prompt(None)] * len(prompts)))
        return self.layout.template(torch.cat(branches))

    def step_guidance(self, out, step: int = 0) -> float | torch.Tensor:
        """The CFG scale of this step: the sampler's, except for samples on a cheap step whose
        policy asked for another (``StepOutput.cheap_guidance``); then one scale per sample. The
        rule's annealing multiplies either (MaskGIT's grows from 0 at the first step to s at the last)."""
        anneal = self.rule.guidance_weight(step, self.num_steps)
        if out.cheap_guidance is None:
            return self.guidance_scale * anneal
        scale = torch.where(out.full, float(self.guidance_scale), float(out.cheap_guidance))
        return anneal * scale[:, None, None]

    @torch.no_grad()
    def generate(self, prompts: Sequence, seeds: Sequence[int], progress: bool = False) -> SampleOutput:
        """Codes for each (prompt, seed); prompts are text, or class ids for class-conditional models.

        Everything runs on the model's device: noise comes from one generator per sample on that
        device, and no step reads a value back to the host (the schedule fixes how many tokens
        each step commits, so every shape is known in advance). Only the policies that decide
        per sample which rows run the backbone (sencache, adaptive) read their decision back.
        """
        if len(prompts) != len(seeds):
            raise MigmError(f"got {len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
        if not prompts:
            raise MigmError("no prompts given")
        device = self.backbone.device
        layout, n_img = self.layout, self.layout.num_image_tokens
        batch, branches, tau = len(prompts), self.num_branches, self.temperature
        seq = self.initial_sequences(prompts).to(device)
        image_positions = layout.image_positions.to(device)
        offsets = row_offsets(*seq.shape, device)
        generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        # Each row's still-masked image indices, in image order (every row has as many: the schedule's).
        where = torch.arange(n_img, device=device).expand(batch, n_img)
        masked_per_step = [n_img, *self.schedule[:-1]]
        mask_ratios = torch.tensor([m / n_img for m in masked_per_step], dtype=torch.float32).to(device)
        normalisers: list[torch.Tensor] = []  # NaN or +inf in any step's logits makes their sum non-finite
        step_full: list[torch.Tensor] = []
        committed: list[tuple[torch.Tensor, torch.Tensor]] = []  # per step: (image indices, codes) committed
        prev_features, newly_index, num_newly = None, None, 0
        tempered_confidence = self.rule.tempered_confidence
        self.policy.reset(batch, self.num_steps)

        sync(device)
        start = time.perf_counter()
        noise = StepNoise(generators, masked_per_step, device)
        for k in tqdm(range(self.num_steps), desc="sampling", leave=False, disable=not progress):
            num_masked, keep = masked_per_step[k], self.schedule[k]  # the same for every sample
            if num_masked == 0:  # MaskGIT's rounding can finish early: nothing left to sample
                break
            state = StepState(
                step=k, num_steps=self.num_steps, backbone=self.backbone, input_ids=seq,
                num_branches=branches, prev_features=prev_features, masked_index=where,
                mask_ratio=mask_ratios[k].expand(batch), num_newly=num_newly, newly_index=newly_index,
            )
            out = self.policy.step(state)
            if out.features.shape[:2] != seq.shape:
                raise MigmError(f"policy {self.policy.name!r} returned features of shape {tuple(out.features.shape)}, expected {tuple(seq.shape)} + (C,)")
            step_full.append(out.full.to(device))

            # Only the still-masked positions are sampled.
            positions = per_branch(image_positions[where], branches)
            logits = self.backbone.logits_from_features(select_rows(out.features, positions, offsets), positions)
            logits = guided_logits(logits.to(self.logits_dtype), branches, self.step_guidance(out, k))  # (B, M, K)

            # One uniform per masked position for the token, one for the ranking noise: the token is
            # drawn by inverse CDF, which samples exactly the categorical that DiMOO's Gumbel-max does
            # without K random numbers per position (33.5 M per step at DiMOO's grid and codebook).
            token_uniform, rank_gumbel = noise.step(k)
            noise_scale = self.rule.choice_noise(k, self.num_steps, tau)
            where, newly_index, new_codes, normaliser = self._sample_and_commit(
                logits, token_uniform, rank_gumbel, where, keep, tau, noise_scale, tempered_confidence)
            normalisers.append(normaliser)
            committed.append((newly_index, new_codes))
            # The commit is one scatter into the sequences; codes and commit steps are written once, after the loop.
            seq = write_committed(layout, seq, image_positions[newly_index], new_codes, branches)
            num_newly = num_masked - keep
            prev_features = out.features
        index = torch.cat([i for i, _ in committed], 1)
        codes = torch.zeros(batch, n_img, dtype=torch.long, device=device).scatter_(1, index, torch.cat([c for _, c in committed], 1))
        steps = torch.tensor([k for k, (i, _) in enumerate(committed) for _ in range(i.shape[1])], device=device)
        commit_step = torch.full((batch, n_img), -1, dtype=torch.long, device=device).scatter_(1, index, steps.expand(batch, -1))
        full_steps = torch.stack(step_full).sum(0)
        sync(device)
        loop_seconds = time.perf_counter() - start
        if not bool(torch.isfinite(torch.stack(normalisers).sum())):
            raise MigmError(f"non-finite logits (policy {self.policy.name!r}); the model or head weights are broken")

        return SampleOutput(codes.view(batch, *layout.grid_shape).cpu(), full_steps.cpu(), self.num_steps, loop_seconds,
                            [f.cpu() for f in step_full], commit_step.cpu())


def generate(model, prompts: Sequence, seeds: Sequence[int], num_steps: int | None = None, policy: StepPolicy | None = None,
             guidance_scale: float | None = None, temperature: float | None = None, progress: bool = False):
    """Images in [-1, 1] and the sampler's output (codes, step counts, time) for a loaded model:
    ``MaskedTokenSampler.for_model(...).generate`` then the model's ``decode``."""
    out = MaskedTokenSampler.for_model(model, num_steps, guidance_scale, temperature, policy).generate(prompts, seeds, progress)
    return model.decode(out.codes), out
