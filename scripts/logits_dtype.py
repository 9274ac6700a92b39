"""fp32 against bf16 logits in the sampling loop, on the embedded model (vanilla, N=16, s=4).

The same prompts and seeds are sampled with the logits (guidance, softmax, cumulative sum) in
each dtype; reported: the share of image tokens that agree, and each run's prompt accuracy.

    python scripts/logits_dtype.py --per-class 20 --out docs/results/logits_dtype.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from migm_shortcut import load_model
from migm_shortcut.samplers import MaskedTokenSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--out")
    args = parser.parse_args()
    model = load_model()
    prompts, classes = model.class_prompts(args.per_class)
    seeds = list(range(len(prompts)))
    runs = {}
    with torch.no_grad():
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            sampler = MaskedTokenSampler(model.backbone, 16, 4.0, 1.0, logits_dtype=dtype)
            codes = torch.cat([sampler.generate(prompts[i : i + 50], seeds[i : i + 50]).codes for i in range(0, len(prompts), 50)])
            runs[name] = (codes, model.prompt_accuracy(model.decode(codes), prompts))
    agree = (runs["float32"][0] == runs["bfloat16"][0]).float().mean().item()
    result = {"model": "embedded (shipped)", "num_images": len(prompts), "num_steps": 16, "guidance_scale": 4.0,
              "token_agreement": round(agree, 4), "identical_images": int((runs["float32"][0] == runs["bfloat16"][0])
                                                                         .flatten(1).all(1).sum()),
              "prompt_accuracy": {name: round(acc, 4) for name, (_, acc) in runs.items()}}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
