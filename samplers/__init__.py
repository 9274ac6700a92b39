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


def policy_files(name: str, weights=None, **params) -> dict:
    """The head and calibration a policy samples with, for the policies that use them: the ones
    given in ``params``, else ``WEIGHTS/head`` and ``WEIGHTS/calibration.json``; ``None`` means
    the one shipped with the package."""
    files = {}
    for key, users, for_weights in (("head", ("shortcut", "adaptive"), head_for_weights),
                                    ("calibration", ("sencache", "adaptive"), calibration_for_weights)):
        if name in users:
            files[key] = params[key] if params.get(key) is not None else for_weights(weights)
    return files


def make_policy_for_weights(name: str, weights=None, **params) -> StepPolicy:
    """``make_policy``, with the head and the calibration that belong to a weights folder filled in
    (``policy_files``) unless given."""
    return make_policy(name, **{**params, **policy_files(name, weights, **params)})


__all__ = [
    "DiMOOSampler", "SampleOutput", "guided_logits", "POLICIES", "StepOutput", "StepPolicy", "StepState",
    "VanillaPolicy", "ShortcutPolicy", "AdaptiveShortcutPolicy", "SenCachePolicy", "MLCachePolicy",
    "FixedIntervalPolicy", "SensitivityTable", "calibrate", "load_calibration", "calibration_for_weights",
    "SHIPPED_CALIBRATION", "SHIPPED_HEAD", "load_head", "head_for_weights", "make_policy", "make_policy_for_weights",
    "policy_files", "register_policy",
    "committed_counts", "masked_counts",
]
