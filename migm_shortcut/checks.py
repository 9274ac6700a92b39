"""The one place that validates sampling settings (steps, guidance scale, temperatures), with one
rule for each, so the CLI, the sweep config, the sampler and the trainers refuse the same values
with the same line."""

from __future__ import annotations

import math

from .errors import MigmError


def check_whole(value, what: str) -> int:
    """A whole number >= 1 (steps, intervals, reuse counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MigmError(f"{what} must be a whole number >= 1, got {value!r}")
    return value


def check_number(what: str, value) -> float:
    """A finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MigmError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_sampling(steps, guidance_scale, temperature) -> None:
    """Steps, CFG scale and sampling temperature, as every entry point takes them."""
    check_whole(steps, "steps")
    check_number("guidance scale", guidance_scale)
    check_number("temperature", temperature)
