"""Drop-in shortcut for diffusers pipelines: ``enable_shortcut(transformer, head, budget, num_steps)``.

In the style of diffusers' cache hooks (``apply_first_block_cache`` and friends), the hook is
a ``diffusers.hooks.ModelHook`` registered on the transformer, so an unmodified pipeline loop
— for example ``AmusedPipeline.__call__`` — runs with the shortcut:

>>> apply_shortcut(pipe.transformer, ShortcutConfig(head, budget=4, num_steps=16))   # or enable_shortcut(...)
>>> latents = pipe(prompt_embeds=..., encoder_hidden_states=..., num_inference_steps=16).images
>>> disable_shortcut(pipe.transformer)

On every call the hook reads the token grid the pipeline passes in. A fully masked grid starts
a generation; between calls, the positions that went from masked to a code are the tokens
committed by the pipeline's scheduler — the head's control input, found by comparing
consecutive inputs, row by row (so each CFG branch keeps its own state). On the B full steps
of the published placement the real transformer runs and its features are kept; on the other
steps the head advances the kept features and the model's own output layer turns them into
the logits the pipeline expects. Which steps are full follows ``budget_full_steps``.

Only the aMUSEd family (diffusers ``UVit2DModel``) is supported: a DiMOO-style model is driven
by this package's sampler instead (``migm_shortcut.dimoo.model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.hooks import HookRegistry, ModelHook

from migm_shortcut.errors import MigmError
from migm_shortcut.schedule import amused_masked_counts
from migm_shortcut.shortcut import ShortcutHead, budget_full_steps, new_tokens, shortcut_step

HOOK_NAME = "migm_shortcut"


class ShortcutHook(ModelHook):
    """Per-generation state: step index, last input grid, last features (one row per batch row)."""

    _is_stateful = True

    def __init__(self, head: ShortcutHead, budget: int, num_steps: int, check_schedule: bool = True):
        super().__init__()
        self.head = head
        self.num_steps = int(num_steps)
        self.budget = int(budget)
        self.full = set(budget_full_steps(self.num_steps, self.budget))  # validates 1 <= budget <= num_steps
        self.check_schedule = check_schedule
        self.full_calls = 0     # transformer passes actually run, over the hook's lifetime
        self.shortcut_calls = 0
        self._reset()

    def _reset(self) -> None:
        self.step = None
        self.prev_masked = None
        self.prev_features = None

    def initialize_hook(self, module):
        from migm_shortcut.amused.model import UVit2DFeatures

        self.adapter = UVit2DFeatures(module)  # refuses anything but a UVit2DModel
        self.head.check_base(self.adapter)
        self.head.to(device=module.device)
        self.expected_masked = amused_masked_counts(self.adapter.grid_size ** 2, self.num_steps)
        return module

    def reset_state(self, module):
        self._reset()
        return module

    def _start_or_continue(self, masked: torch.Tensor) -> None:
        if bool(masked.all()):
            self.step = 0
            return
        if self.step is None:
            raise MigmError("the shortcut hook saw a partly unmasked first input; a generation must start from a fully "
                            "masked token grid (call reset_shortcut(transformer) between custom loops)")
        self.step += 1
        wrong_count = self.check_schedule and self.step < self.num_steps and \
            bool((masked.sum(1) != self.expected_masked[self.step - 1]).any())
        if self.step >= self.num_steps or wrong_count:
            raise MigmError(f"the pipeline runs a different number of steps than the shortcut hook was set for "
                            f"(num_steps={self.num_steps}); call enable_shortcut(..., num_steps=<num_inference_steps>)")

    def new_forward(self, module, input_ids, *args, **kwargs):
        mask_id = self.adapter.mask_token_id
        flat = input_ids.flatten(1)
        masked = flat == mask_id
        self._start_or_continue(masked)
        states = kwargs.get("encoder_hidden_states", args[0] if args else None)

        if self.step in self.full:  # always true at step 0
            logits, image = self.adapter.image_features(self.fn_ref.original_forward, input_ids, *args, **kwargs)
            self.prev_features = self.adapter.head_rows(states, image)
            self.full_calls += 1
        else:
            newly = self.prev_masked & ~masked
            positions = torch.arange(flat.shape[1], device=flat.device)
            tokens = new_tokens(flat, newly, positions, None, 0, num_branches=1)
            with torch.no_grad():  # the sampler's shortcut step, on the UVit's own ids and grid positions
                features = shortcut_step(self.head, self.adapter, self.prev_features, tokens, masked.float().mean(1))
            features = features.to(self.prev_features.dtype)
            self.prev_features = features
            image = features[:, -flat.shape[1]:]
            g = self.adapter.grid_size
            logits = self.adapter.logits_from_features(image).view(-1, g, g, self.adapter.codebook_size)
            logits = logits.permute(0, 3, 1, 2).to(module.dtype)
            self.shortcut_calls += 1
        self.prev_masked = masked
        return logits


@dataclass
class ShortcutConfig:
    """Settings of the shortcut hook, in the style of diffusers' cache configs
    (``apply_first_block_cache(module, FirstBlockCacheConfig(...))``)."""

    head: ShortcutHead | str | Path
    """The shortcut head trained for this transformer: a ``ShortcutHead`` or a saved head folder.
    A head trained for another model is refused."""

    budget: int = 4
    """B: how many of the pipeline's steps run the real transformer (the published placement:
    step 0, then ``max(prev + 1, round(N k / B))``); the head runs on the others. 1 <= B <= N."""

    num_steps: int = 12
    """N: the ``num_inference_steps`` the pipeline will be called with (aMUSEd's default is 12)."""

    check_schedule: bool = True
    """Verify, from the masked-token counts the pipeline passes in, that it runs N cosine steps
    (AmusedScheduler's), and refuse with one line when it does not."""


def apply_shortcut(transformer, config: ShortcutConfig) -> ShortcutHook:
    """Wrap ``transformer``'s forward with the shortcut described by ``config``; returns the hook (its
    counters tell how many full and shortcut passes ran). ``disable_shortcut`` restores it."""
    head = config.head if isinstance(config.head, ShortcutHead) else ShortcutHead.from_pretrained(config.head)
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    if registry.get_hook(HOOK_NAME) is not None:
        raise MigmError("the shortcut is already enabled on this transformer; call disable_shortcut(transformer) first")
    hook = ShortcutHook(head, config.budget, config.num_steps, config.check_schedule)
    registry.register_hook(hook, HOOK_NAME)
    return hook


def enable_shortcut(transformer, head: ShortcutHead | str | Path, budget: int, num_steps: int,
                    check_schedule: bool = True) -> ShortcutHook:
    """The short form: ``apply_shortcut(transformer, ShortcutConfig(head, budget, num_steps, check_schedule))``."""
    return apply_shortcut(transformer, ShortcutConfig(head, budget, num_steps, check_schedule))


def disable_shortcut(transformer) -> None:
    """Restore the transformer's own forward."""
    registry = getattr(transformer, "_diffusers_hook", None)
    if registry is None or registry.get_hook(HOOK_NAME) is None:
        raise MigmError("the shortcut is not enabled on this transformer")
    registry.remove_hook(HOOK_NAME, recurse=False)


def reset_shortcut(transformer) -> None:
    """Forget the current generation (only needed by loops that do not start from a fully masked grid)."""
    registry = getattr(transformer, "_diffusers_hook", None)
    hook = None if registry is None else registry.get_hook(HOOK_NAME)
    if hook is None:
        raise MigmError("the shortcut is not enabled on this transformer")
    hook._reset()
