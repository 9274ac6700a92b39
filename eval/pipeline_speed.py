"""``migm-shortcut bench-hook``: diffusers' own ``AmusedPipeline.__call__``, with and without the
shortcut hook, on an aMUSEd-family weights folder (a ``UVit2DModel`` backbone and its head).

The pipeline is driven with precomputed prompt embeddings (the backbone's prompt encoder stands
in for CLIP) and ``output_type="latent"``, so what is timed is the pipeline's token loop: the
transformer calls, the scheduler, CFG. Same prompts, same generator seeds, alternating
hook-off / hook-on batches after a warm-up; the median per-image time of each.
"""

from __future__ import annotations

import statistics
import time

import torch

from migm_shortcut.errors import MigmError
from migm_shortcut.hooks import disable_shortcut, enable_shortcut
from migm_shortcut.prompts import canonical_prompt


def amused_pipeline(model):
    """An ``AmusedPipeline`` around an ``EmbeddedModel`` whose backbone is an ``AmusedBackbone``."""
    from diffusers import AmusedPipeline, AmusedScheduler

    from migm_shortcut.adapters.amused import AmusedBackbone

    if not isinstance(model.backbone, AmusedBackbone):
        raise MigmError(f"bench-hook needs an aMUSEd (UVit2DModel) backbone, this weights folder holds a "
                        f"{type(model.backbone).__name__}; pass --weights of a train-base --architecture amused run")
    pipe = AmusedPipeline(vqvae=model.tokenizer.model, tokenizer=None, text_encoder=None,
                          transformer=model.backbone.transformer,
                          scheduler=AmusedScheduler(mask_token_id=model.backbone.uvit.mask_token_id))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_kwargs(backbone, prompts: list[str]) -> dict:
    layout = backbone.layout
    with torch.no_grad():
        cond = backbone.conditioning(torch.stack([layout.encode_prompt(p) for p in prompts]))
        uncond = backbone.conditioning(torch.stack([layout.encode_prompt(None)] * len(prompts)))
    return dict(prompt_embeds=cond["pooled_text_emb"], encoder_hidden_states=cond["encoder_hidden_states"],
                negative_prompt_embeds=uncond["pooled_text_emb"], negative_encoder_hidden_states=uncond["encoder_hidden_states"])


@torch.no_grad()
def bench_hook(model, head, budget: int, num_steps: int = 16, batch_size: int = 16, batches: int = 4,
               guidance_scale: float = 4.0, log=print) -> dict:
    pipe = amused_pipeline(model)
    prompts = [canonical_prompt(i % 10) for i in range(batch_size)]
    kwargs = dict(prompt_kwargs(model.backbone, prompts), num_inference_steps=num_steps, output_type="latent",
                  guidance_scale=guidance_scale)
    run = lambda seed: pipe(generator=torch.Generator().manual_seed(seed), **kwargs).images  # noqa: E731
    times = {"off": [], "on": []}
    run(0)  # warm-up
    hook = None
    for i in range(batches):
        for mode in ("off", "on"):
            if mode == "on":
                hook = enable_shortcut(pipe.transformer, head, budget=budget, num_steps=num_steps)
            start = time.perf_counter()
            run(1 + i)
            times[mode].append((time.perf_counter() - start) / batch_size)
            if mode == "on":
                full_per_generation = hook.full_calls
                disable_shortcut(pipe.transformer)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    result = {"budget": budget, "num_steps": num_steps, "batch_size": batch_size, "batches": batches,
              "pipeline_ms_per_image": round(1000 * off, 2), "pipeline_with_hook_ms_per_image": round(1000 * on, 2),
              "speedup": round(off / on, 2), "transformer_calls_per_generation": full_per_generation}
    log(f"AmusedPipeline.__call__, N={num_steps}, batch {batch_size}: {result['pipeline_ms_per_image']} ms/image; with "
        f"enable_shortcut(budget={budget}): {result['pipeline_with_hook_ms_per_image']} ms/image ({result['speedup']}x), "
        f"the transformer ran {full_per_generation} times per generation")
    return result
