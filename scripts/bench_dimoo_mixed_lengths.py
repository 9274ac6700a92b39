"""Batch-8 Lumina-DiMOO sampling with prompts of 8 different lengths against 8 prompts of one length.

A random-weight LLaDA-shaped model (``eval/llada_shaped.py``, the published block structure and
attention method, here at a CPU-sized width and depth) behind the DiMOO adapter, at DiMOO's layout for
``--size`` x ``--size`` images. Three ways of running the same batch are timed (median of --repeats whole
sampling loops, ``MaskedTokenSampler``, vanilla, both CFG branches):

* ``equal``: 8 prompts of one length (the padding the rows share is cut: one forward per step);
* ``mixed``: 8 prompts of 8 lengths, one forward per step with the remaining padding masked out of
  attention (the adapter's ``masked_padding`` hook);
* ``mixed, per length``: the same prompts, one forward per distinct prompt length (the adapter before
  the hook; still its path for a model whose blocks lack the published attention method).

    python scripts/bench_dimoo_mixed_lengths.py --out docs/results/dimoo_mixed_lengths_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from migm_shortcut.dimoo.model import (DIMOO_CODE_OFFSET, DIMOO_CODEBOOK_SIZE, DIMOO_SPECIAL_IDS, LLaDAImageBackbone,
                                          LLaDAImageLayout, dimoo_grid)
from migm_shortcut.eval.llada_shaped import LLaDAShape, LLaDAShapedModel
from migm_shortcut.io import write_json
from migm_shortcut.samplers import MaskedTokenSampler


def layout(size: int) -> LLaDAImageLayout:
    ids = DIMOO_SPECIAL_IDS
    words = {f"w{i}": 1000 + i for i in range(64)}  # prompt "w0 w1 ..." -> one id per word, after a fixed template
    return LLaDAImageLayout(lambda text: [900, 901] + [words[w] for w in text.split()] + [902], prompt_len=48,
                            grid_shape=dimoo_grid(size, size), code_offset=DIMOO_CODE_OFFSET,
                            codebook_size=DIMOO_CODEBOOK_SIZE, mask_id=ids["mask"], newline_id=ids["newline"], pad_id=0,
                            uncond_ids=[900, 901, ids["uncondition"], 902],
                            header_ids=[ids["answer_start"], ids["begin_image"]],
                            footer_ids=[ids["end_image"], ids["answer_end"]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256, help="image side (16 pixels per token)")
    p.add_argument("--width", type=int, default=512, help="model width (LLaDA-8B: 4096)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="docs/results/dimoo_mixed_lengths_cpu.json")
    args = p.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = LLaDAShape(d_model=args.width, n_heads=max(args.width // 128, 1), n_layers=args.layers,
                       mlp_hidden_size=3 * args.width)
    with torch.device(device):
        model = LLaDAShapedModel(shape).to(dtype).eval()
    backbone = LLaDAImageBackbone(model, layout(args.size))
    cases = {"equal": [" ".join(f"w{j}" for j in range(20))] * 8,
             "mixed": [" ".join(f"w{j}" for j in range(4 + 5 * i)) for i in range(8)]}

    def timed(prompts, per_length: bool) -> float:
        if per_length:  # the adapter's fallback path: one forward per distinct prompt length
            backbone.features = lambda ids: backbone._features_per_length(
                ids, (~backbone.feature_valid(ids[:, : backbone.layout.prompt_len])).sum(1))
        sampler = MaskedTokenSampler(backbone, num_steps=args.steps)
        sampler.generate(prompts, seeds=list(range(8)))  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            sampler.generate(prompts, seeds=list(range(8)))
            times.append(time.perf_counter() - start)
        if per_length:
            del backbone.features
        return statistics.median(times)

    with torch.no_grad():
        rows = [{"case": "equal lengths", "seconds": timed(cases["equal"], False)},
                {"case": "mixed lengths, one forward (padding masked)", "seconds": timed(cases["mixed"], False)},
                {"case": "mixed lengths, one forward per length", "seconds": timed(cases["mixed"], True)}]
    for row in rows:
        row["seconds"] = round(row["seconds"], 3)
        row["images_per_s"] = round(8 / row["seconds"], 2)
        print(f"{row['case']}: {row['seconds']} s per batch of 8 ({row['images_per_s']} images/s)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    write_json(Path(args.out), {"kind": "dimoo_mixed_lengths", "device": name, "dtype": str(dtype).replace("torch.", ""),
                                "image": f"{args.size}x{args.size}", "model": f"LLaDA-shaped, width {args.width}, "
                                f"{args.layers} layers", "steps": args.steps, "batch": 8, "tokens": backbone.layout.seq_len,
                                "prompt_tokens": {k: [len(layout(args.size).tokenize(t)) for t in v] for k, v in cases.items()},
                                "command": "python scripts/bench_dimoo_mixed_lengths.py", "results": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
