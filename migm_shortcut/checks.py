"""The one place that validates sampling settings (steps, guidance scale, temperatures), with one
rule for each, so the CLI, the sweep config, the sampler and the trainers refuse the same values
with the same line."""

from __future__ import annotations

import math

from .errors import MigmError


def check_steps_value(steps, what: str = "steps") -> int:
    """A whole number >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MigmError(f"{what} must be a whole number >= 1, got {steps!r}")
    return steps


def check_number(what: str, value, positive: bool = False) -> float:
    """A finite number >= 0 (> 0 with ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (positive and value == 0):
        raise MigmError(f"{what} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def check_sampling(steps, guidance_scale, temperature) -> None:
    """Steps, CFG scale and sampling temperature, as every entry point takes them."""
    check_steps_value(steps)
    check_number("guidance scale", guidance_scale)
    check_number("temperature", temperature)
