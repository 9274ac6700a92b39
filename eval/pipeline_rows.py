"""Sweep rows run inside a diffusers pipeline's own ``__call__``: the pipeline as published, the
pipeline with the shortcut hook, and the pipeline with cache-dit.

The package's sampler rows and these rows answer different questions. The sampler rows compare
step policies under one sampling rule; these compare what a diffusers user can switch on in one
line, on the pipeline's own loop, scheduler and sampling rule. So every pipeline row is timed
against the plain pipeline at the sweep baseline's step count (``pipeline N=<baseline>``), never
against the sampler's vanilla row.

Methods (a sweep setting's ``policy``):

* ``pipeline`` — ``pipe(...)`` unchanged (fewer steps: a smaller ``steps``);
* ``pipeline-shortcut`` — ``enable_shortcut(pipe.transformer, head, budget, steps)``; ``head``
  defaults to the head that belongs to the model folder;
* ``cache-dit`` — ``cache_dit.enable_cache(pipe, DBCacheConfig(...))`` with ``threshold``
  (``residual_diff_threshold``), ``fn``/``bn`` (``Fn_compute_blocks``/``Bn_compute_blocks``),
  ``warmup`` (``max_warmup_steps``) and ``taylorseer`` (a TaylorSeer calibrator of that order; 0: off).

The pipeline's guidance is ``uncond + g (cond - uncond)``: the sweep's scale s is passed as
``g = s + 1``. Its scheduler anneals its own sampling temperature, so ``temperature`` does not
apply. Each batch draws from one ``torch.Generator`` seeded with the batch's first seed (the
pipeline takes one generator), the same for every row.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from migm_shortcut.errors import MigmError

from .speed import median_latency

PIPELINE_METHODS = ("pipeline", "pipeline-shortcut", "cache-dit")
_PARAMS = {
    "pipeline": {},
    "pipeline-shortcut": {"budget": int, "head": str},
    "cache-dit": {"threshold": float, "fn": int, "bn": int, "warmup": int, "taylorseer": int},
}
CACHE_DIT_DEFAULTS = {"fn": 1, "bn": 0, "warmup": 2, "taylorseer": 0}
CACHE_DIT_INSTALL = "pip install 'migm-shortcut[cachedit]' (or pip install cache-dit)"


def check_pipeline_setting(method: str, steps: int, params: dict, where: str) -> None:
    """One line for a bad pipeline-row setting, before any model loads."""
    allowed = _PARAMS[method]
    for key, value in params.items():
        if key not in allowed:
            raise MigmError(f"{where}: {method} takes {', '.join(allowed) or 'no parameters'}, not {key!r}")
        kind = allowed[key]
        ok = isinstance(value, str) if kind is str else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or float(value).is_integer()))
        if not ok or (kind is not str and (value != value or value < 0)):
            raise MigmError(f"{where}: {key} must be a {'path' if kind is str else 'number >= 0'}, got {value!r}")
    if method == "pipeline-shortcut":
        budget = params.get("budget")
        if budget is None or not 1 <= budget <= steps:
            raise MigmError(f"{where}: pipeline-shortcut needs a budget in 1..{steps} (the full steps out of N={steps})")
    if method == "cache-dit":
        if not params.get("threshold"):
            raise MigmError(f"{where}: cache-dit needs a threshold > 0 (DBCache's residual_diff_threshold)")
        if params.get("fn", CACHE_DIT_DEFAULTS["fn"]) < 1:
            raise MigmError(f"{where}: cache-dit's fn (Fn_compute_blocks) must be at least 1")
        import_cache_dit()


def import_cache_dit():
    try:
        import cache_dit
    except ImportError:
        raise MigmError(f"cache-dit rows need the cache-dit package, which is not installed: {CACHE_DIT_INSTALL}") from None
    for name in list(logging.root.manager.loggerDict):  # its per-call statistics tables would flood the sweep log
        if name.startswith("cache_dit"):
            logging.getLogger(name).setLevel(logging.WARNING)
    return cache_dit


def pipeline_of(model):
    pipe = model.pipe
    if pipe is None:
        raise MigmError(f"pipeline rows run a diffusers pipeline's own __call__; this {model.kind} model has none "
                        "(pass --model PIPELINE_FOLDER, an AmusedPipeline folder)")
    return pipe


def pipeline_head(model, params: dict):
    """The head a pipeline-shortcut row uses: the one it names, else the model folder's own (or None)."""
    return params.get("head") or model.head_path


def check_blocks(pipe, params: dict) -> None:
    layers = len(pipe.transformer.transformer_layers)
    fn, bn = params.get("fn", CACHE_DIT_DEFAULTS["fn"]), params.get("bn", CACHE_DIT_DEFAULTS["bn"])
    if fn + bn > layers:
        raise MigmError(f"cache-dit: fn + bn = {fn + bn} compute blocks, but this transformer has {layers} layers")


@contextmanager
def accelerated(model, method: str, steps: int, params: dict):
    """The pipeline with the row's acceleration switched on. Yields (full transformer passes per
    generation given the generations run so far, a function to call after each generation)."""
    pipe = pipeline_of(model)
    if method == "pipeline":
        yield (lambda generations: float(steps)), (lambda: None)
    elif method == "pipeline-shortcut":
        from migm_shortcut.amused.hook import disable_shortcut, enable_shortcut

        head = pipeline_head(model, params)
        if head is None:
            raise MigmError("pipeline-shortcut needs a head: name one (\"head\": PATH) or train one into "
                            "MODEL/shortcut_head (migm-shortcut train-head --model MODEL --out MODEL/shortcut_head)")
        hook = enable_shortcut(pipe.transformer, head, budget=params["budget"], num_steps=steps)
        try:
            yield (lambda generations: hook.full_calls / max(1, generations)), (lambda: None)
        finally:
            disable_shortcut(pipe.transformer)
    elif method == "cache-dit":
        cache_dit = import_cache_dit()
        check_blocks(pipe, params)
        p = {**CACHE_DIT_DEFAULTS, **params}
        config = cache_dit.DBCacheConfig(Fn_compute_blocks=int(p["fn"]), Bn_compute_blocks=int(p["bn"]),
                                         residual_diff_threshold=float(p["threshold"]), max_warmup_steps=int(p["warmup"]),
                                         num_inference_steps=steps)
        calibrator = cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=int(p["taylorseer"])) if p["taylorseer"] else None
        cache_dit.enable_cache(pipe, cache_config=config, calibrator_config=calibrator)
        cached = []  # cached steps of each generation, read after each call

        def full_steps(generations: int) -> float:
            return steps - sum(cached) / max(1, len(cached))

        try:
            yield full_steps, (lambda: cached.append(_cached_steps(cache_dit, pipe)))
        finally:
            cache_dit.disable_cache(pipe)
    else:
        raise MigmError(f"unknown pipeline method {method!r}; choose one of: {', '.join(PIPELINE_METHODS)}")


def _cached_steps(cache_dit, pipe) -> int:
    stats = cache_dit.summary(pipe, logging=False)
    return max((len(s.cached_steps) for s in stats), default=0)


def run_pipeline_setting(model, setting, cfg, prompts: list, seeds: list[int], progress: bool = True,
                         decode: bool = True) -> tuple[torch.Tensor | None, dict]:
    """Like the sampler's ``run_setting``: (images in [-1, 1] or None, speed) for one pipeline row."""
    pipe = pipeline_of(model)
    guidance, _ = setting.sampling(cfg)
    device = pipe.transformer.device
    call = lambda batch, seed: pipe(batch, num_inference_steps=setting.steps, guidance_scale=guidance + 1.0,  # noqa: E731
                                    generator=torch.Generator(device).manual_seed(seed), output_type="latent").images
    with accelerated(model, setting.policy, setting.steps, setting.params) as (full_steps, after_call):
        call(prompts[: min(4, len(prompts))], seeds[0])  # warm-up, untimed
        after_call()
        images, seconds, sizes, generations = [], [], [], 1
        for i in tqdm(range(0, len(prompts), cfg.batch_size), desc=setting.name, unit="batch", disable=not progress,
                      leave=False):
            batch = prompts[i : i + cfg.batch_size]
            start = time.perf_counter()
            codes = call(batch, seeds[i])
            if codes.device.type == "cuda":
                torch.cuda.synchronize(codes.device)
            seconds.append(time.perf_counter() - start)
            sizes.append(len(batch))
            generations += 1
            after_call()
            if decode:
                images.append(model.decode(codes))
        passes = full_steps(generations)
        with FlopCounterMode(display=False) as counter:
            call(prompts[:1], seeds[0])
        after_call()
    speed = {"latency_s": median_latency(seconds, sizes), "full_steps": passes,
             "gflops": counter.get_total_flops() / 1e9, "batch_seconds": seconds, "batch_sizes": sizes}
    return (torch.cat(images) if decode else None), speed
