"""Samplers and step policies (installed as ``migm_shortcut.samplers``)."""

from .dimoo import DiMOOSampler, SampleOutput, guided_logits
from .policies import POLICIES, StepOutput, StepPolicy, StepState, VanillaPolicy, make_policy, register_policy
from .schedule import committed_counts, masked_counts
from .shortcut import SHIPPED_HEAD, ShortcutPolicy, head_for_weights, load_head

register_policy("shortcut", ShortcutPolicy)

__all__ = [
    "DiMOOSampler", "SampleOutput", "guided_logits", "POLICIES", "StepOutput", "StepPolicy", "StepState",
    "VanillaPolicy", "ShortcutPolicy", "SHIPPED_HEAD", "load_head", "head_for_weights", "make_policy", "register_policy", "committed_counts", "masked_counts",
]
