"""``migm-shortcut bench-cost``: what a full step and a shortcut step cost at real model sizes.

For each named size the backbone and a shortcut head (the shipped head's recipe: C/2 inner
width, one block) are built with random weights — cost does not depend on the values — and
one step of a CFG batch is timed both ways (median of ``repeats`` after a warm-up), with FLOPs
from ``torch.utils.flop_counter``. The ratio ``c = t_shortcut / t_full`` gives the ideal
sampling speedup of a budget B out of N steps, ``N / (B + (N - B) c)``.

Sizes:

* ``embedded`` — the shipped mini Lumina-DiMOO (14x14 codes, 223 tokens) and its shipped head;
* ``amused-256`` — diffusers ``UVit2DModel`` at aMUSEd-256's configuration (16x16 codes, 77 CLIP
  text states of width 768);
* ``dimoo-8b`` — an LLaDA-8B transformer (32 layers, width 4096) at Lumina-DiMOO's 512x512
  layout: 32x32 codes with a newline per row, a 64-token prompt;
* ``maskgit-512`` — MaskGIT-pytorch's published 512x512 ImageNet transformer (24 layers, width
  768, 32x32 codes of 1024, 1000 classes), where MIGM-Shortcut reports its headline numbers.

Weights are fp32 on a CPU and bf16 on a GPU. A size whose weights do not fit in the memory of
the device is skipped with a line saying so.
"""

from __future__ import annotations

import os
from functools import partial
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from migm_shortcut.errors import MigmError
from migm_shortcut.shortcut import ShortcutHead, new_tokens, shortcut_step

from .sizes import COST_CONFIGS

AMUSED_256 = dict(hidden_size=1024, use_bias=False, cond_embed_dim=768, micro_cond_encode_dim=256,
                  micro_cond_embed_dim=1280, encoder_hidden_size=768, vocab_size=8256, codebook_size=8192,
                  in_channels=768, block_out_channels=768, num_res_blocks=3, block_num_heads=12,
                  num_hidden_layers=22, num_attention_heads=16, intermediate_size=2816, sample_size=16)


@dataclass
class CostCase:
    """One size: how many parameters, and the two step functions to time."""

    name: str
    backbone_params: int
    head_params: int
    tokens: int              # sequence positions per branch
    full_step: Callable[[], object]
    shortcut_step: Callable[[], object]
    head_architecture: str = "generic"


def parameter_count(config: str) -> int:
    """Exact parameter count, from the model built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        if config == "embedded":
            from migm_shortcut.embedded.backbone import MiniDiMOO
            model = MiniDiMOO()
        elif config == "amused-256":
            from diffusers import UVit2DModel
            model = UVit2DModel(**AMUSED_256)
        elif config == "maskgit-512":
            from migm_shortcut.maskgit.transformer import MASKGIT_512, MaskTransformer
            model = MaskTransformer(**MASKGIT_512)
        else:
            from .llada_shaped import LLaDAShapedModel
            model = LLaDAShapedModel()
    return sum(p.numel() for p in model.parameters())


def _bytes_free(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _tokens_step(head: ShortcutHead, backbone, features: torch.Tensor, image_ids: torch.Tensor, positions: torch.Tensor,
                 committed_per_step: int, logits_fn, image_rows: slice):
    """One shortcut step: embed ``committed_per_step`` new tokens per row (as ``backbone`` embeds them for
    this head's architecture), run the head, take logits."""
    newly = torch.zeros_like(image_ids, dtype=torch.bool)
    newly[:, :committed_per_step] = True
    tokens = new_tokens(image_ids, newly, positions, None, 0, num_branches=1)

    def step():
        h = shortcut_step(head, backbone, features, tokens, torch.full((features.shape[0],), 0.5, device=features.device))
        return logits_fn(h[:, image_rows])

    return step


# The heads a size is priced with: "generic" (this package's, its width-scaled defaults) and, where the
# family has one, the published architecture at the authors' sizes.
# The testbeds get the published architecture of the family they stand in for, sized the authors' way
# (DiMOO's: the base's heads and MLP; MaskGIT's: 16 heads at bottleneck 2).
PUBLISHED_HEADS = {
    "embedded": ("dimoo-shortcut", dict(ratio=2, heads=3, mlp_hidden=768)),
    "amused-256": ("maskgit-shortcut", dict(ratio=2, heads=16, num_blocks=1)),
    "dimoo-8b": ("dimoo-shortcut", dict(ratio=2, heads=32, mlp_hidden=12288, rope_theta=500000.0, norm_eps=1e-5)),
    "maskgit-512": ("maskgit-shortcut", dict(ratio=2, heads=16, num_blocks=1)),
}
HEAD_CHOICES = ("generic", "published")


def cost_head(config: str, architecture: str, backbone) -> ShortcutHead:
    """A fresh head for ``backbone``: ``generic`` or the ``published`` architecture of the size's family."""
    if architecture == "published":
        name, sizes = PUBLISHED_HEADS[config]
        return ShortcutHead.for_base(backbone, architecture=name, **sizes)
    return ShortcutHead.for_base(backbone)


def _sequence_case(config: str, backbone, head: ShortcutHead, prompt: str, rows: int, num_steps: int,
                   backbone_params: int, device: torch.device) -> CostCase:
    """A model that takes one token sequence (the interface's ``features`` / ``embed_tokens``)."""
    lay = backbone.layout
    ids = lay.template(torch.stack([lay.encode_prompt(prompt)] * rows)).to(device)
    feats = backbone.features(ids)
    img_pos = lay.image_positions.to(device)
    image_ids = torch.full((rows, lay.num_image_tokens), lay.code_offset, device=device)
    logits = partial(backbone.logits_from_features, positions=img_pos)
    step = _tokens_step(head, backbone, feats, image_ids, img_pos, lay.num_image_tokens // num_steps, logits, img_pos)
    full = lambda: logits(backbone.features(ids)[:, img_pos])  # noqa: E731
    return CostCase(config, backbone_params, head.num_parameters(), lay.seq_len, full, step, head.config.architecture)


def build_case(config: str, device: torch.device, dtype: torch.dtype, batch: int, num_steps: int,
               architecture: str = "generic", depth: int | None = None) -> CostCase:
    """One size with random weights (the embedded size: the shipped weights) and a head of ``architecture``
    (``HEAD_CHOICES``). ``depth`` (dimoo-8b only): that many of its layers, for counting FLOPs per layer."""
    rows = 2 * batch  # both CFG branches
    head_for = lambda backbone: cost_head(config, architecture, backbone).place(device, dtype)  # noqa: E731
    if config == "embedded":
        from migm_shortcut.embedded.backbone import MiniDiMOO
        from migm_shortcut.modeling import SHIPPED_WEIGHTS
        from migm_shortcut.samplers.shortcut import load_head

        model = MiniDiMOO.from_pretrained(SHIPPED_WEIGHTS / "backbone", device=device).to(dtype)
        head = load_head(SHIPPED_WEIGHTS / "shortcut_head").to(device, dtype) if architecture == "generic" else head_for(model)
        return _sequence_case(config, model, head, "a photo of a bag", rows, num_steps,
                              model.num_parameters(), device)

    if config == "amused-256":
        from diffusers import UVit2DModel

        from migm_shortcut.amused.model import UVit2DFeatures

        with torch.device(device):
            model = UVit2DModel(**AMUSED_256).to(dtype).eval()
        uvit = UVit2DFeatures(model)
        head = head_for(uvit)
        g = AMUSED_256["sample_size"]
        ids = torch.full((rows, g, g), uvit.mask_token_id, device=device)
        cond = dict(encoder_hidden_states=torch.randn(rows, 77, 768, device=device, dtype=dtype),
                    pooled_text_emb=torch.randn(rows, 768, device=device, dtype=dtype),
                    micro_conds=torch.tensor([[256, 256, 0, 0, 6]] * rows, device=device, dtype=dtype))
        _, image = uvit.image_features(model, ids, **cond)
        feats = uvit.head_rows(cond["encoder_hidden_states"], image)
        image_ids = torch.zeros(rows, g * g, dtype=torch.long, device=device)
        step = _tokens_step(head, uvit, feats, image_ids, torch.arange(g * g, device=device),
                            g * g // num_steps, uvit.logits_from_features, slice(77, None))
        full = lambda: model(ids, **cond)  # noqa: E731
        return CostCase(config, sum(p.numel() for p in model.parameters()), head.num_parameters(), 77 + g * g, full, step,
                        head.config.architecture)

    if config == "dimoo-8b":
        from migm_shortcut.dimoo.model import (DIMOO_CODE_OFFSET, DIMOO_CODEBOOK_SIZE, DIMOO_SPECIAL_IDS,
                                                  LLaDAImageBackbone, LLaDAImageLayout)
        from .llada_shaped import LLaDAShapedModel

        from .llada_shaped import LLaDAShape

        with torch.device(device):
            model = LLaDAShapedModel(LLaDAShape(n_layers=depth or LLaDAShape.n_layers)).to(dtype).eval()
        ids = DIMOO_SPECIAL_IDS
        # DiMOO's sequence at 512 x 512 (32 x 32 tokens) with a 64-token prompt
        layout = LLaDAImageLayout(lambda text: [1] * 64, prompt_len=64, grid_shape=(32, 32), code_offset=DIMOO_CODE_OFFSET,
                                  codebook_size=DIMOO_CODEBOOK_SIZE, mask_id=ids["mask"], newline_id=ids["newline"],
                                  pad_id=0, uncond_ids=[2] * 64, header_ids=[ids["answer_start"], ids["begin_image"]],
                                  footer_ids=[ids["end_image"], ids["answer_end"]])
        backbone = LLaDAImageBackbone(model, layout)
        return _sequence_case(config, backbone, head_for(backbone), "x", rows, num_steps,
                              sum(p.numel() for p in model.parameters()), device)

    if config == "maskgit-512":
        from migm_shortcut.maskgit.model import MaskGITBackbone
        from migm_shortcut.maskgit.transformer import MASKGIT_512, MaskTransformer

        with torch.device(device):
            model = MaskTransformer(**MASKGIT_512).to(dtype).eval()
        backbone = MaskGITBackbone(model)
        return _sequence_case(config, backbone, head_for(backbone), 207, rows, num_steps,
                              sum(p.numel() for p in model.parameters()), device)

    raise MigmError(f"unknown cost config {config!r}; choose from {', '.join(COST_CONFIGS)}")


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _flops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@torch.no_grad()
def model_case(model, head, prompt, batch: int, num_steps: int) -> CostCase:
    """A loaded model (``load_model``) with its own weights, and ``head`` (or a fresh one of the shipped recipe)."""
    backbone = model.backbone
    head = (head or ShortcutHead.for_base(backbone)).place(backbone.device, backbone.dtype)
    return _sequence_case(f"model:{model.kind}", backbone, head, prompt, 2 * batch, num_steps,
                          backbone.num_parameters(), backbone.device)


def counted_flops(config: str, dev, dtype, batch: int, num_steps: int, budgets, architecture: str, name: str,
                  log) -> dict:
    """FLOPs only, for a size whose weights do not fit: dimoo-8b built at depth 1 and 2 (FLOPs are linear in
    the depth, so the full step's are F(1) + (L - 1) (F(2) - F(1)); the shortcut step's do not depend on it)."""
    from .llada_shaped import LLaDAShape

    per_depth = []
    for depth in (1, 2):
        case = build_case(config, dev, dtype, batch, num_steps, architecture, depth=depth)
        per_depth.append(_flops(case.full_step))
        short = _flops(case.shortcut_step)
        head_params, head_architecture = case.head_params, case.head_architecture
        del case
    full = per_depth[0] + (LLaDAShape.n_layers - 1) * (per_depth[1] - per_depth[0])
    c_flops = round(short / full, 4)
    row = {"config": config, "head_architecture": head_architecture, "device": name, "dtype": str(dtype).replace("torch.", ""),
           "batch": batch, "timed": False, "backbone_params": parameter_count(config), "head_params": head_params,
           "full_gflops": round(full / 1e9, 2), "shortcut_gflops": round(short / 1e9, 3), "c_flops": c_flops,
           "num_steps": num_steps,
           "ideal_speedup_flops": {str(b): round(num_steps / (b + (num_steps - b) * c_flops), 2) for b in budgets}}
    log(f"{config} ({head_architecture} head) on {name}: FLOPs only (its weights do not fit here): full step "
        f"{row['full_gflops']} GFLOP, shortcut step {row['shortcut_gflops']} GFLOP, c (FLOPs) = {c_flops}")
    return row


@torch.no_grad()
def bench_cost(configs: list[str], device: str = "auto", batch: int = 1, num_steps: int = 16,
               budgets: tuple[int, ...] = (4, 6, 8), repeats: int = 5, log=print, model=None, head=None,
               prompt: str | None = None, architectures: tuple[str, ...] = ("generic",)) -> list[dict]:
    """One row per size in ``configs`` (random weights) and head architecture (``HEAD_CHOICES``), plus one for
    ``model`` (a loaded model) if given. A size whose weights do not fit is priced in FLOPs only where its
    depth can be cut (dimoo-8b), else skipped with a line saying so."""
    for architecture in architectures:
        if architecture not in HEAD_CHOICES:
            raise MigmError(f"unknown head architecture {architecture!r} for bench-cost; choose from {', '.join(HEAD_CHOICES)}")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    if model is not None:
        dev = model.backbone.device
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    results = []
    for config in list(configs) + (["model"] if model is not None else []):
        if config == "model":
            for b in budgets:
                if not 1 <= b <= num_steps:
                    raise MigmError(f"budget must be between 1 and the number of steps ({num_steps}), got {b}")
            case = model_case(model, head, prompt, batch, num_steps)
            results.append(_measure(case, name, model.backbone.dtype, batch, num_steps, budgets, repeats, dev, log))
            continue
        if config not in COST_CONFIGS:
            raise MigmError(f"unknown cost config {config!r}; choose from {', '.join(COST_CONFIGS)}")
        for b in budgets:
            if not 1 <= b <= num_steps:
                raise MigmError(f"budget must be between 1 and the number of steps ({num_steps}), got {b}")
        need = parameter_count(config) * torch.finfo(dtype).bits // 8
        free = _bytes_free(dev)
        for architecture in architectures:
            if need * 1.3 > free:
                if config == "dimoo-8b":
                    results.append(counted_flops(config, dev, dtype, batch, num_steps, budgets, architecture, name, log))
                    continue
                log(f"{config}: skipped — its weights need {need / 2**30:.1f} GiB ({dtype}), {free / 2**30:.1f} GiB free "
                    f"on {name}; run it on a GPU")
                results.append({"config": config, "head_architecture": architecture, "device": name,
                                "skipped": f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"})
                continue
            case = build_case(config, dev, dtype, batch, num_steps, architecture)
            row = _measure(case, name, dtype, batch, num_steps, budgets, repeats, dev, log)
            results.append({"config": row.pop("config"), "head_architecture": case.head_architecture, **row})
            del case
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return results


def _measure(case: CostCase, name: str, dtype, batch: int, num_steps: int, budgets, repeats: int, dev, log) -> dict:
    t_full, t_short = _time(case.full_step, dev, repeats), _time(case.shortcut_step, dev, repeats)
    f_full, f_short = _flops(case.full_step), _flops(case.shortcut_step)
    c = round(t_short / t_full, 4)  # the speedups below use the c the report shows, so they can be recomputed from it
    row = {"config": case.name, "device": name, "dtype": str(dtype).replace("torch.", ""), "batch": batch,
           "tokens": case.tokens, "backbone_params": case.backbone_params, "head_params": case.head_params,
           "full_ms": round(1000 * t_full, 2), "shortcut_ms": round(1000 * t_short, 3), "c": c,
           "full_gflops": round(f_full / 1e9, 2), "shortcut_gflops": round(f_short / 1e9, 3),
           "c_flops": round(f_short / f_full, 4), "num_steps": num_steps,
           "ideal_speedup": {str(b): round(num_steps / (b + (num_steps - b) * c), 2) for b in budgets}}
    log(format_row(row))
    return row


def format_row(r: dict) -> str:
    ideal = ", ".join(f"B={b}: {s}x" for b, s in r["ideal_speedup"].items())
    return (f"{r['config']} on {r['device']} ({r['dtype']}, batch {r['batch']} x 2 branches, {r['tokens']} tokens): "
            f"backbone {r['backbone_params'] / 1e6:.1f}M, head {r['head_params'] / 1e6:.2f}M params; "
            f"full step {r['full_ms']} ms / {r['full_gflops']} GFLOP, shortcut step {r['shortcut_ms']} ms / "
            f"{r['shortcut_gflops']} GFLOP; c = {r['c']} (FLOPs {r['c_flops']}); ideal speedup at N={r['num_steps']}: {ideal}")


def markdown_table(results: list[dict]) -> str:
    priced = [r for r in results if "skipped" not in r]
    n = priced[0]["num_steps"] if priced else "N"
    speedups = lambda r: r.get("ideal_speedup") or r["ideal_speedup_flops"]  # noqa: E731
    budgets = " / ".join(speedups(priced[0])) if priced else "B"
    lines = [f"| size | head | device | params (backbone / head) | full step | shortcut step | c (time) | c (FLOPs) | "
             f"ideal speedup N={n}, B={budgets} |", "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in results:
        head = r.get("head_architecture", "generic")
        if "skipped" in r:
            lines.append(f"| {r['config']} | {head} | {r['device']} | — | skipped: {r['skipped']} | | | | |")
            continue
        ideal = " / ".join(f"{s}x" for s in speedups(r).values())
        params = f"{r['backbone_params'] / 1e6:.1f}M / {r['head_params'] / 1e6:.2f}M"
        if r.get("timed", True):
            lines.append(f"| {r['config']} | {head} | {r['device']} | {params} | {r['full_ms']} ms | {r['shortcut_ms']} ms | "
                         f"{r['c']} | {r['c_flops']} | {ideal} |")
        else:  # FLOPs only: the speedups are priced at c (FLOPs)
            lines.append(f"| {r['config']} | {head} | {r['device']} | {params} | {r['full_gflops']} GFLOP | "
                         f"{r['shortcut_gflops']} GFLOP | not timed | {r['c_flops']} | {ideal} (FLOPs) |")
    return "\n".join(lines)
