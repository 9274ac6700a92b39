"""Samplers and step policies (installed as ``migm_shortcut.samplers``)."""

from .caching import FixedIntervalPolicy, MLCachePolicy, SenCachePolicy
from .dimoo import DiMOOSampler, SampleOutput, guided_logits
from .policies import POLICIES, StepOutput, StepPolicy, StepState, VanillaPolicy, make_policy, register_policy
from .schedule import committed_counts, masked_counts
from .sensitivity import SHIPPED_CALIBRATION, SensitivityTable, calibrate, calibration_for_weights, load_calibration
from .shortcut import SHIPPED_HEAD, AdaptiveShortcutPolicy, ShortcutPolicy, head_for_weights, load_head

register_policy("shortcut", ShortcutPolicy)
register_policy("adaptive", AdaptiveShortcutPolicy)
register_policy("sencache", SenCachePolicy)
register_policy("mlcache", MLCachePolicy)
register_policy("fixed", FixedIntervalPolicy)


def make_policy_for_weights(name: str, weights=None, **params) -> StepPolicy:
    """``make_policy``, with the head and the calibration that belong to a weights folder filled in
    for the policies that use them (``WEIGHTS/head``, ``WEIGHTS/calibration.json``, else the shipped
    ones) unless given."""
    if name in ("shortcut", "adaptive") and params.get("head") is None:
        params["head"] = head_for_weights(weights)
    if name in ("sencache", "adaptive") and params.get("calibration") is None:
        params["calibration"] = calibration_for_weights(weights)
    return make_policy(name, **params)

__all__ = [
    "DiMOOSampler", "SampleOutput", "guided_logits", "POLICIES", "StepOutput", "StepPolicy", "StepState",
    "VanillaPolicy", "ShortcutPolicy", "AdaptiveShortcutPolicy", "SenCachePolicy", "MLCachePolicy",
    "FixedIntervalPolicy", "SensitivityTable", "calibrate", "load_calibration", "calibration_for_weights",
    "SHIPPED_CALIBRATION", "SHIPPED_HEAD", "load_head", "head_for_weights", "make_policy", "make_policy_for_weights", "register_policy",
    "committed_counts", "masked_counts",
]
