"""The sampling loop's own time per step at the embedded size, alone and between real model calls.

``bench-loop`` gets the loop's time by subtraction: a generation's wall-clock less the time spent
inside the model, the head and the output layer. This script asks how much of that time is the
loop's work and how much is the cost of coming back to it after something else ran. Shortcut
B of N at the embedded size, batch 1, under four conditions; each reports the wall-clock of the
loop per step outside the model, head and output-layer calls:

* ``tight``  — model, head and output layer return fixed tensors at once: the loop on its own;
* ``busy``   — the same stubs, each spinning in Python for as long as the real call takes;
* ``matmul`` — the same stubs, each running matrix products for as long as the real call takes;
* ``real``   — the shipped model and head.

    python scripts/loop_in_situ.py --out docs/results/loop_in_situ.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from migm_shortcut.registry import load_model
from migm_shortcut.samplers import MaskedTokenSampler, ShortcutPolicy, load_head

PROMPT = "a photo of a bag"


class Timed:
    """Wraps the model's three calls: the time spent inside them (``inside``, and each call's own
    duration in ``calls``), and what each call does instead in the stubbed conditions."""

    def __init__(self, backbone, head, condition: str, durations: dict[str, float] | None = None):
        self.inside = 0.0
        self.calls: dict[str, list[float]] = {"model": [], "head": [], "logits": []}
        self.condition, self.durations = condition, durations
        self.work = torch.randn(256, 256)
        ids = MaskedTokenSampler(backbone).initial_sequences([PROMPT])
        self.features = backbone.features(ids)
        self.logits = backbone.logits_from_features(self.features[:, backbone.layout.image_positions])
        real = {"model": backbone.features, "head": head.advance, "logits": backbone.logits_from_features}
        stub = {"model": lambda ids: self.features, "head": lambda backbone, features, tokens, ratio: features,
                "logits": lambda h, positions=None: self.logits[:, : h.shape[1]]}
        backbone.features = self.wrap("model", real["model"] if condition == "real" else stub["model"])
        head.advance = self.wrap("head", real["head"] if condition == "real" else stub["head"])
        backbone.logits_from_features = self.wrap("logits", real["logits"] if condition == "real" else stub["logits"])

    def spend(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if self.condition == "matmul":
                self.work @ self.work

    def wrap(self, name: str, fn):
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.calls[name].append(time.perf_counter() - start)
            if self.condition in ("busy", "matmul"):
                self.spend(self.durations[name] - (time.perf_counter() - start))
            self.inside += time.perf_counter() - start
            return out

        return call


def shortcut_sampler(condition: str, steps: int, budget: int, durations: dict[str, float] | None = None):
    """(sampler, Timed) around the shipped model and head, B of N, in one condition."""
    model = load_model(device="cpu")
    backbone, head = model.backbone, load_head(model.head_path)
    timed = Timed(backbone, head, condition, durations)
    return MaskedTokenSampler(backbone, num_steps=steps, policy=ShortcutPolicy(head, budget=budget)), timed


def real_durations(steps: int, budget: int) -> dict[str, float]:
    """Median seconds of one model, head and output-layer call of the shipped model in this setting."""
    sampler, timed = shortcut_sampler("real", steps, budget)
    for seed in range(5):
        sampler.generate([PROMPT], [seed])
    return {name: statistics.median(values) for name, values in timed.calls.items()}


def loop_per_step(condition: str, steps: int, budget: int, repeats: int, durations: dict[str, float]) -> list[float]:
    sampler, timed = shortcut_sampler(condition, steps, budget, durations)
    sampler.generate([PROMPT], [0])  # warm-up
    per_step = []
    for seed in range(repeats):
        timed.inside = 0.0
        total = sampler.generate([PROMPT], [seed]).loop_seconds
        per_step.append((total - timed.inside) / steps)
    return per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--budget", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    with torch.no_grad():
        durations = real_durations(args.steps, args.budget)
        rows = []
        for condition in ("tight", "busy", "matmul", "real"):
            values = loop_per_step(condition, args.steps, args.budget, args.repeats, durations)
            rows.append({"condition": condition, "loop_us_per_step_median": round(1e6 * statistics.median(values), 1),
                         "loop_us_per_step_min": round(1e6 * min(values), 1)})
            print(json.dumps(rows[-1]))
    result = {"kind": "loop_in_situ", "size": "embedded", "device": f"CPU ({torch.get_num_threads()} threads)",
              "batch": 1, "steps": args.steps, "budget": args.budget, "repeats": args.repeats,
              "call_ms": {name: round(1000 * s, 3) for name, s in durations.items()}, "conditions": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
