"""``migm-shortcut bench-loop``: the *whole* sampling loop per image, at real model sizes.

``bench-cost`` times one model step; what a user waits for is the loop around it too: logits,
guidance, sampling, confidence ranking, commit and the sequence update. This benchmark runs
``MaskedTokenSampler.generate`` end to end (random weights, ``batch`` images x 2 CFG branches; times
are per image) for vanilla
and the shortcut at several budgets, and splits each step's time into

* **model** — inside ``backbone.features`` (full steps),
* **head** — inside the shortcut head (shortcut steps),
* **logits** — the model's own output layer on the rows sampled (``logits_from_features``, every
  step: a shortcut step needs it on the predicted features as much as a full step does),
* **loop** — everything else: the loop's own overhead (guidance, sampling, ranking, commit,
  sequence update, the head's input preparation, the policy).

The split comes from a second, instrumented run (a device sync around each model and head
call); the end-to-end time and speedup from an uninstrumented one. ``ideal`` is
``N / (B + (N - B) c)`` with ``c`` = head time / model time per step, so ``e2e / ideal`` says how
much of the shortcut's promise the loop keeps.

Sizes (``LOOP_SIZES``): the embedded model and its head; aMUSEd-256's UVit2D (16x16 codes);
LLaDA-8B at Lumina-DiMOO's 1024x1024 layout (64x64 codes); MaskGIT-512 (32x32 codes, MaskGIT's
own sampling rule); and ``dimoo-stub``, DiMOO's grid and codebook around a model that costs
nothing, which isolates the loop's own overhead.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from migm_shortcut.errors import MigmError
from migm_shortcut.interface import ModelInfo
from migm_shortcut.shortcut import ShortcutHead

from .cost import AMUSED_256, _bytes_free

from .sizes import LOOP_SIZES


class StubBackbone(ModelInfo, nn.Module):
    """DiMOO's sequence, grid and codebook around a model that costs nothing: ``features`` returns
    fixed features, ``logits_from_features`` is a narrow (16-wide) projection to the codes."""

    def __init__(self, layout, width: int = 16, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.layout, self.width = layout, width
        self.embedding = nn.Embedding(layout.vocab_size, width)
        self.out = nn.Linear(width, layout.codebook_size)
        self.fingerprint = "dimoo-stub"

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding.weight[:1].expand(*input_ids.shape, -1)

    def logits_from_features(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(features.to(self.out.weight.dtype))

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids)


def dimoo_layout(height: int, width: int, prompt_tokens: int = 64):
    from migm_shortcut.dimoo.model import (DIMOO_CODE_OFFSET, DIMOO_CODEBOOK_SIZE, DIMOO_SPECIAL_IDS,
                                              LLaDAImageLayout, dimoo_grid)

    ids = DIMOO_SPECIAL_IDS
    return LLaDAImageLayout(lambda text: [1] * prompt_tokens, prompt_len=prompt_tokens, grid_shape=dimoo_grid(height, width),
                            code_offset=DIMOO_CODE_OFFSET, codebook_size=DIMOO_CODEBOOK_SIZE, mask_id=ids["mask"],
                            newline_id=ids["newline"], pad_id=0, uncond_ids=[2] * 8,
                            header_ids=[ids["answer_start"], ids["begin_image"]],
                            footer_ids=[ids["end_image"], ids["answer_end"]])


def weights_bytes(size: str, dtype: torch.dtype) -> int:
    from .cost import parameter_count

    if size in ("embedded", "dimoo-stub"):
        return 0
    return parameter_count(size) * torch.finfo(dtype).bits // 8


def build_backbone(size: str, device: torch.device, dtype: torch.dtype):
    """(backbone, head, prompt) for a size: random weights except the embedded model's."""
    if size == "embedded":
        from migm_shortcut.registry import load_model
        from migm_shortcut.samplers import load_head

        model = load_model(device=device, dtype=dtype)
        backbone = model.backbone
        return backbone, load_head(model.head_path).to(device, dtype), "a photo of a bag"
    if size == "amused-256":
        from migm_shortcut.amused.model import AmusedBackbone, AmusedConfig

        k = AMUSED_256
        config = AmusedConfig(words=["a", "photo"], codebook_size=k["codebook_size"], grid_size=k["sample_size"],
                              prompt_len=77, width=k["in_channels"], hidden_size=k["hidden_size"],
                              block_out_channels=k["block_out_channels"], num_res_blocks=k["num_res_blocks"],
                              block_num_heads=k["block_num_heads"], num_hidden_layers=k["num_hidden_layers"],
                              num_attention_heads=k["num_attention_heads"], intermediate_size=k["intermediate_size"],
                              micro_cond_encode_dim=k["micro_cond_encode_dim"], image_size=256)
        with torch.device(device):
            backbone = AmusedBackbone(config).to(dtype).eval()
        return backbone, ShortcutHead.for_base(backbone).to(device, dtype), "a photo"
    if size == "dimoo-8b":
        from migm_shortcut.dimoo.model import LLaDAImageBackbone
        from .llada_shaped import LLaDAShapedModel

        with torch.device(device):
            model = LLaDAShapedModel().to(dtype).eval()
        backbone = LLaDAImageBackbone(model, dimoo_layout(1024, 1024))
        return backbone, ShortcutHead.for_base(backbone).to(device, dtype), "a photo"
    if size == "maskgit-512":
        from migm_shortcut.maskgit.model import MaskGITBackbone
        from migm_shortcut.maskgit.transformer import MASKGIT_512, MaskTransformer

        with torch.device(device):
            backbone = MaskGITBackbone(MaskTransformer(**MASKGIT_512).to(dtype).eval())
        return backbone, ShortcutHead.for_base(backbone).to(device, dtype), 207
    if size == "dimoo-stub":
        with torch.device(device):
            backbone = StubBackbone(dimoo_layout(1024, 1024)).to(dtype)
        return backbone, ShortcutHead.for_base(backbone, ratio=1, heads=1).to(device, dtype), "a photo"
    raise MigmError(f"unknown loop size {size!r}; choose from {', '.join(LOOP_SIZES)}")


class Stopwatch:
    """Seconds spent inside wrapped calls, with a device sync on both sides (instrumented runs only)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.calls = device, 0.0, 0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(self, fn):
        def timed(*args, **kwargs):
            self._sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self._sync()
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return out

        return timed


def size_rule(size: str):
    """Each size samples with its family's own rule (MaskGIT's published 512 one for maskgit-512, DiMOO's otherwise)."""
    from migm_shortcut.maskgit.model import PUBLISHED_SETTINGS
    from migm_shortcut.rules import DiMOORule

    return PUBLISHED_SETTINGS[512][1] if size == "maskgit-512" else DiMOORule()


def run_loop(backbone, head, prompt, num_steps: int, budget: int | None, repeats: int, instrument: bool,
             batch: int = 1, compile_step: bool = False, rule=None):
    """Median seconds per image of ``repeats`` generations of ``batch`` images (after warming up until
    the time settles), the model/head/output-layer split per image, and the repeats' (min, max)."""
    from migm_shortcut.rules import DiMOORule
    from migm_shortcut.samplers import MaskedTokenSampler, ShortcutPolicy, VanillaPolicy

    policy = VanillaPolicy() if budget is None else ShortcutPolicy(head, budget=budget)
    sampler = MaskedTokenSampler(backbone, num_steps=num_steps, guidance_scale=4.0, temperature=1.0, policy=policy,
                                 rule=rule or DiMOORule(), compile_step=compile_step)
    model_watch, head_watch, logits_watch = (Stopwatch(backbone.device) for _ in range(3))
    # Head time is the shortcut step's prediction: embedding the new tokens with the base model, then the head
    # (bench-cost's shortcut step, less the output layer, which is timed on its own).
    original_features, original_head, original_logits = backbone.features, head.advance, backbone.logits_from_features
    if instrument:
        backbone.features = model_watch.wrap(original_features)
        head.advance = head_watch.wrap(original_head)
        backbone.logits_from_features = logits_watch.wrap(original_logits)
    try:
        # Warm up until the time settles: two consecutive generations within 5% (at most 6; compiling
        # takes at least two: the first step's shapes, then the rest). A GPU's clocks and allocator need it.
        previous = None
        for warm in range(6):
            seconds = sampler.generate([prompt] * batch, list(range(batch))).loop_seconds
            if warm >= (1 if compile_step else 0) and previous is not None and abs(seconds - previous) <= 0.05 * previous:
                break
            previous = seconds
        for watch in (model_watch, head_watch, logits_watch):
            watch.seconds, watch.calls = 0.0, 0
        times = [sampler.generate([prompt] * batch, [i * batch + j for j in range(batch)]).loop_seconds / batch
                 for i in range(repeats)]
    finally:
        if instrument:
            del backbone.features
            del head.advance
            del backbone.logits_from_features
    total = statistics.median(times)
    per_image = lambda watch: watch.seconds / repeats / batch  # noqa: E731
    return total, per_image(model_watch), per_image(head_watch), per_image(logits_watch), (min(times), max(times))


def bench_loop(sizes: list[str], device: str = "auto", num_steps: int = 16, budgets: tuple[int, ...] = (4, 6, 8),
               repeats: int = 3, log=print, batch: int = 1, compile_step: bool = False) -> list[dict]:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    for b in budgets:
        if not 1 <= b <= num_steps:
            raise MigmError(f"budget must be between 1 and the number of steps ({num_steps}), got {b}")
    unknown = [s for s in sizes if s not in LOOP_SIZES]
    if unknown:
        raise MigmError(f"unknown loop size {unknown[0]!r}; choose from {', '.join(LOOP_SIZES)}")
    results = []
    for size in sizes:
        need, free = weights_bytes(size, dtype), _bytes_free(dev)
        if need * 1.3 > free:
            log(f"{size}: skipped — its weights need {need / 2**30:.1f} GiB ({dtype}), {free / 2**30:.1f} GiB free on {name}")
            results.append({"size": size, "device": name, "skipped": f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"})
            continue
        backbone, head, prompt = build_backbone(size, dev, dtype)
        row = {"size": size, "device": name, "dtype": str(dtype).replace("torch.", ""), "num_steps": num_steps, "batch": batch,
               "compile_step": compile_step,
               "image_tokens": backbone.layout.num_image_tokens, "codebook": backbone.layout.codebook_size, "runs": []}
        with torch.no_grad():
            for budget in (None, *budgets):
                e2e, *_, spread = run_loop(backbone, head, prompt, num_steps, budget, repeats, instrument=False,
                                           batch=batch, compile_step=compile_step, rule=size_rule(size))
                spread = [round(1000 * t, 2) for t in spread]
                total, model_s, head_s, logits_s, _ = run_loop(backbone, head, prompt, num_steps, budget, repeats,
                                                            instrument=True, batch=batch, compile_step=compile_step,
                                                            rule=size_rule(size))
                full = num_steps if budget is None else budget
                loop_s = max(total - model_s - head_s - logits_s, 0.0)
                row["runs"].append({"budget": budget, "e2e_ms": round(1000 * e2e, 2), "e2e_ms_range": spread,
                                    "model_ms_per_full_step": round(1000 * model_s / full, 3),
                                    "head_ms_per_shortcut_step": round(1000 * head_s / (num_steps - full), 3) if full < num_steps else None,
                                    "logits_ms_per_step": round(1000 * logits_s / num_steps, 3),
                                    "loop_ms_per_step": round(1000 * loop_s / num_steps, 3)})
        vanilla = row["runs"][0]
        for run in row["runs"][1:]:
            run["e2e_speedup"] = round(vanilla["e2e_ms"] / run["e2e_ms"], 2)
            if size == "dimoo-stub":  # no model cost: c and the ideal speedup have no meaning here
                continue
            # c as bench-cost defines it: a shortcut step (head + output layer) over a full step (model + output layer)
            c = (run["head_ms_per_shortcut_step"] + run["logits_ms_per_step"]) / (run["model_ms_per_full_step"] + run["logits_ms_per_step"])
            b = run["budget"]
            run["c"] = round(c, 4)
            run["ideal_speedup"] = round(num_steps / (b + (num_steps - b) * c), 2)
            run["share_of_ideal"] = round(run["e2e_speedup"] / run["ideal_speedup"], 3)
        shortcut = [r for r in row["runs"][1:]]
        row["loop_share_of_shortcut_step"] = round(statistics.median(
            r["loop_ms_per_step"] / (r["loop_ms_per_step"] + r["head_ms_per_shortcut_step"] + r["logits_ms_per_step"])
            for r in shortcut), 3) if shortcut else None
        log(format_loop_row(row))
        results.append(row)
        del backbone, head
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return results


def format_loop_row(row: dict) -> str:
    parts = [f"{row['size']} on {row['device']} ({row['dtype']}, batch {row['batch']}, N={row['num_steps']}, {row['image_tokens']} tokens x "
             f"{row['codebook']} codes):"]
    for r in row["runs"]:
        what = "vanilla" if r["budget"] is None else f"B={r['budget']}"
        extra = "" if r["budget"] is None else (f", head {r['head_ms_per_shortcut_step']} ms, e2e {r['e2e_speedup']}x "
                                                f"vs ideal {r.get('ideal_speedup', '—')}x")
        parts.append(f"{what}: {r['e2e_ms']} ms/img, model {r['model_ms_per_full_step']} ms, logits {r['logits_ms_per_step']} ms, "
                     f"loop {r['loop_ms_per_step']} ms/step{extra}")
    return " ".join(parts)


def markdown_loop_table(results: list[dict]) -> str:
    lines = ["| size | device | batch | setting | ms/image | model ms/full step | head ms/shortcut step | output layer ms/step | "
             "loop ms/step | e2e speedup | ideal | e2e/ideal |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results:
        if "skipped" in row:
            lines.append(f"| {row['size']} | {row['device']} | | skipped: {row['skipped']} | | | | | | | | |")
            continue
        for r in row["runs"]:
            what = "vanilla" if r["budget"] is None else f"shortcut B={r['budget']}"
            fmt = lambda v, suffix="": "—" if v is None else f"{v}{suffix}"  # noqa: E731
            lines.append(f"| {row['size']} | {row['device']} | {row.get('batch', 1)} | {what} N={row['num_steps']}{' (compiled step)' if row.get('compile_step') else ''} | {r['e2e_ms']} | "
                         f"{r['model_ms_per_full_step']} | {fmt(r['head_ms_per_shortcut_step'])} | {fmt(r.get('logits_ms_per_step'))} | "
                         f"{r['loop_ms_per_step']} | "
                         f"{fmt(r.get('e2e_speedup'), 'x')} | {fmt(r.get('ideal_speedup'), 'x')} | {fmt(r.get('share_of_ideal'))} |")
    return "\n".join(lines)
