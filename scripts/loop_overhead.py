"""The sampling loop's own overhead at Lumina-DiMOO's grid and codebook, before and after it moved
onto the model's device.

Runs ``MaskedTokenSampler.generate`` around a model that costs nothing (fixed features, a 16-wide
projection to 8192 codes) on a 64 x 64 grid with newline tokens, batch 1 (x 2 CFG branches),
N steps, and reports seconds per step. ``--tree DIR`` takes the sampler from another checkout
(for example the commit before the change, made with ``git worktree add``), loading only its
``samplers/dimoo.py`` and what that imports, so the same stub runs through both loops.

    python scripts/loop_overhead.py --out runs/loop_overhead_after.json
    git worktree add /tmp/before 6a8ba84 && python scripts/loop_overhead.py --tree /tmp/before --out runs/loop_overhead_before.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import types
from pathlib import Path

import torch
from torch import nn


class StubLayout:
    """DiMOO's sequence at ``grid x grid``: 64 prompt tokens, 2 header, rows + newline, 2 footer."""

    prompt_in_sequence = True

    def __init__(self, grid: int = 64, codebook: int = 8192, prompt: int = 64):
        self.prompt_len, self.pad_id, self.code_offset, self.codebook_size = prompt, 0, 126356, codebook
        self.vocab_size = self.code_offset + codebook
        self.mask_id, self.newline_id = 126336, 126084
        self.grid_shape, self.num_image_tokens = (grid, grid), grid * grid
        start = prompt + 2
        rows = torch.arange(grid).repeat_interleave(grid)
        self.image_positions = start + rows * (grid + 1) + torch.arange(grid).repeat(grid)
        self.eor_positions = start + torch.arange(grid) * (grid + 1) + grid
        self.seq_len = start + grid * (grid + 1) + 2
        self.config = types.SimpleNamespace(grid_size=grid)  # what the loop before the change read

    def encode_prompt(self, prompt):
        return torch.full((self.prompt_len,), 1 if prompt is not None else 2, dtype=torch.long)

    def template(self, prompt_ids):
        seq = torch.full((prompt_ids.shape[0], self.seq_len), self.mask_id, dtype=torch.long)
        seq[:, : self.prompt_len] = prompt_ids
        seq[:, self.eor_positions] = self.newline_id
        return seq

    def with_codes(self, seq, codes, committed):
        seq = seq.clone()
        seq[:, self.image_positions.to(seq.device)] = torch.where(committed, codes + self.code_offset,
                                                                  torch.full_like(codes, self.mask_id))
        return seq


class StubModel(nn.Module):
    def __init__(self, layout: StubLayout, width: int = 16):
        super().__init__()
        self.layout, self.width, self.fingerprint = layout, width, "stub"
        self.embedding = nn.Embedding(8, width)
        self.out = nn.Linear(width, layout.codebook_size)

    device = property(lambda self: self.out.weight.device)
    dtype = property(lambda self: self.out.weight.dtype)

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def features(self, ids):
        return self.embedding.weight[:1].expand(*ids.shape, -1)

    def logits_from_features(self, h, positions=None):
        return self.out(h)

    def embed_tokens(self, ids, positions):
        return self.embedding(ids.clamp(max=7))

    def embed(self, ids):
        return self.embedding(ids.clamp(max=7))


def load_sampler(tree: str | None):
    if tree is None:
        from migm_shortcut.samplers import MaskedTokenSampler

        return MaskedTokenSampler
    package = types.ModuleType("tree_samplers")
    package.__path__ = [str(Path(tree) / "samplers")]
    sys.modules["tree_samplers"] = package
    return importlib.import_module("tree_samplers.sampler").MaskedTokenSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="take samplers/ from this checkout (default: the installed package)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--label", help="what to call this sampler in the result (default: the tree, or 'installed')")
    parser.add_argument("--out", help="write the result as JSON here")
    args = parser.parse_args()
    sampler_class = load_sampler(args.tree)
    layout = StubLayout()
    model = StubModel(layout).to(args.device)
    sampler = sampler_class(model, num_steps=args.steps, guidance_scale=4.0, temperature=1.0)
    with torch.no_grad():
        sampler.generate(["p"], [0])
        times = [sampler.generate(["p"], [i]).loop_seconds for i in range(args.repeats)]
    per_step = statistics.median(times) / args.steps
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    result = {"tree": args.label or args.tree or "installed", "device": device, "grid": list(layout.grid_shape),
              "codebook": layout.codebook_size, "steps": args.steps, "batch": 1,
              "loop_ms_per_step_per_sample": round(1000 * per_step, 2)}
    print(json.dumps(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
