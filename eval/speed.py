"""Speed of a sampling setting: wall-clock of the sampling loop, backbone passes, FLOPs.

Latency is the sampling loop only (no VQ decoding), per image: a warm-up batch first, then
the median over the timed batches. FLOPs come from ``torch.utils.flop_counter`` on one
single-image generation, so they count what the policy really ran (backbone and head).
A speedup is only ever a ratio to a vanilla run measured in the same process.
"""

from __future__ import annotations

import statistics

from torch.utils.flop_counter import FlopCounterMode


def median_latency(batch_seconds: list[float], batch_sizes: list[int]) -> float:
    return statistics.median(s / n for s, n in zip(batch_seconds, batch_sizes))


def flops_per_image(sampler, prompt: str, seed: int = 0) -> float:
    with FlopCounterMode(display=False) as counter:
        sampler.generate([prompt], [seed])
    return float(counter.get_total_flops())
