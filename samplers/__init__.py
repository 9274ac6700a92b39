"""Samplers and step policies (installed as ``migm_shortcut.samplers``)."""

from .dimoo import DiMOOSampler, SampleOutput, guided_logits
from .policies import POLICIES, StepOutput, StepPolicy, StepState, VanillaPolicy, make_policy, register_policy
from .schedule import committed_counts, masked_counts

__all__ = [
    "DiMOOSampler", "SampleOutput", "guided_logits", "POLICIES", "StepOutput", "StepPolicy", "StepState",
    "VanillaPolicy", "make_policy", "register_policy", "committed_counts", "masked_counts",
]
