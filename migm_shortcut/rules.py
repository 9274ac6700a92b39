"""Sampling rules: how a family turns logits into committed tokens, apart from the step policy.

A rule fixes four things the sampler asks it at every step:

* the schedule: how many image tokens stay masked after each step (``masked_counts``);
* how confidence is tempered: from the untempered softmax (Lumina-DiMOO) or from the tempered one
  that was sampled from (MaskGIT);
* the choice noise: the scale of the Gumbel noise added to the log-confidence before ranking, and
  how it anneals over the steps;
* the guidance form: ``(1 + s) cond - s uncond`` with a per-step multiplier on s (annealing).

Each family owns one (``LoadedModel.rule``); the sampler takes it from the model, so no rule name
travels through collection, training, calibration or sweeps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

from .checks import check_number
from .errors import MigmError
from .schedule import MASKGIT_SCHEDULES, maskgit_masked_counts, masked_counts


@dataclass(frozen=True)
class SamplingRule:
    """Base class; see the module docstring for what a rule decides."""

    name: ClassVar[str] = "base"
    # False (DiMOO): tokens from softmax(logits / temperature), confidence from softmax(logits).
    # True (MaskGIT): the temperature multiplies the logits (MaskGIT's ``logit * sm_temp``), and
    # tokens and their confidence both come from that softmax.
    tempered_confidence: ClassVar[bool] = False

    def replace(self, **settings) -> "SamplingRule":
        """This rule with some settings changed; one line naming the settings it has otherwise."""
        own = [f.name for f in fields(self)]
        unknown = [k for k in settings if k not in own]
        if unknown:
            raise MigmError(f"the {self.name} sampling rule has no setting {unknown[0]!r}; its settings: "
                            f"{', '.join(own) or 'none'}")
        return dataclasses.replace(self, **settings)

    def masked_counts(self, num_tokens: int, num_steps: int) -> list[int]:
        raise NotImplementedError

    def choice_noise(self, step: int, num_steps: int, temperature: float) -> float:
        """Scale of the ranking Gumbel noise at this step."""
        raise NotImplementedError

    def guidance_weight(self, step: int, num_steps: int) -> float:
        """Multiplier on the CFG scale at this step (1: no annealing)."""
        return 1.0

    def describe(self) -> dict:
        return {"rule": self.name, **asdict(self)}


def progress(step: int, num_steps: int) -> float:
    """k / (N - 1), the fork's ``indice / (len(scheduler) - 1)`` (1 with a single step, where it would divide by 0)."""
    return step / (num_steps - 1) if num_steps > 1 else 1.0


def rule_record(rule: SamplingRule):
    """A rule as manifests and logs record it: its name when it has its default settings, else its settings."""
    return rule.name if rule == type(rule)() else rule.describe()


@dataclass(frozen=True)
class DiMOORule(SamplingRule):
    """Lumina-DiMOO's: the cosine keep-schedule (every step commits at least one token), confidence
    from the untempered softmax, ranking noise scaled by the sampling temperature, constant CFG."""

    name: ClassVar[str] = "dimoo"

    def masked_counts(self, num_tokens: int, num_steps: int) -> list[int]:
        return masked_counts(num_tokens, num_steps)

    def choice_noise(self, step: int, num_steps: int, temperature: float) -> float:
        return temperature


@dataclass(frozen=True)
class MaskGITRule(SamplingRule):
    """MaskGIT's, as MIGM-Shortcut's MaskGIT fork samples (``Trainer/vit.py`` ``sample`` and
    ``sample_shortcut``): its schedule (``adap_sche``, arccos by default); the temperature is
    ``sm_temp``, multiplying the logits, and tokens and confidence come from that softmax; ranking
    noise ``r_temp * Gumbel * (1 - k/(N-1))`` (``randomize="linear"``; ``choice_temperature`` is
    ``r_temp``); CFG ``w * k/(N-1)`` at step k (0-based) of N. (valeoai's original ``vit.py``
    divides by N instead; the fork, whose heads and numbers this package compares with, by N-1.)"""

    name: ClassVar[str] = "maskgit"
    tempered_confidence: ClassVar[bool] = True
    schedule: str = "arccos"
    choice_temperature: float = 4.5

    def __post_init__(self):
        if self.schedule not in MASKGIT_SCHEDULES:
            raise MigmError(f"unknown MaskGIT schedule {self.schedule!r}; choose one of: {', '.join(MASKGIT_SCHEDULES)}")
        check_number("choice temperature", self.choice_temperature)

    def masked_counts(self, num_tokens: int, num_steps: int) -> list[int]:
        return maskgit_masked_counts(num_tokens, num_steps, self.schedule)

    def choice_noise(self, step: int, num_steps: int, temperature: float) -> float:
        return self.choice_temperature * (1 - progress(step, num_steps))

    def guidance_weight(self, step: int, num_steps: int) -> float:
        return progress(step, num_steps)
