"""Samplers and step policies (installed as ``migm_shortcut.samplers``)."""

from .caching import FixedIntervalPolicy, MLCachePolicy, SenCachePolicy
from .dimoo import DiMOOSampler, SampleOutput, guided_logits
from .hybrid import HybridShortcutPolicy
from .policies import POLICIES, StepOutput, StepPolicy, StepState, VanillaPolicy, make_policy, register_policy
from migm_shortcut.schedule import committed_counts, masked_counts
from .sensitivity import SensitivityTable, calibrate, load_calibration
from .shortcut import AdaptiveShortcutPolicy, ShortcutPolicy, load_head

register_policy("shortcut", ShortcutPolicy)
register_policy("adaptive", AdaptiveShortcutPolicy)
register_policy("sencache", SenCachePolicy)
register_policy("mlcache", MLCachePolicy)
register_policy("fixed", FixedIntervalPolicy)
register_policy("hybrid", HybridShortcutPolicy)


POLICY_FILES = {"head": ("shortcut", "adaptive", "hybrid"), "calibration": ("sencache", "adaptive")}


def policy_files(name: str, model=None, **params) -> dict:
    """The head and calibration a policy samples with, for the policies that use them: the ones
    given in ``params``, else the model's own (``model.head_path``, ``model.calibration_path``);
    ``None`` where neither exists (the policy then says what to pass)."""
    files = {}
    for key, users in POLICY_FILES.items():
        if name in users:
            files[key] = params[key] if params.get(key) is not None else getattr(model, f"{key}_path", None)
    return files


def make_policy_for_model(name: str, model=None, **params) -> StepPolicy:
    """``make_policy``, with the head and the calibration that belong to a loaded model filled in
    (``policy_files``) unless given."""
    return make_policy(name, **{**params, **policy_files(name, model, **params)})


__all__ = [
    "DiMOOSampler", "SampleOutput", "guided_logits", "POLICIES", "StepOutput", "StepPolicy", "StepState",
    "VanillaPolicy", "ShortcutPolicy", "AdaptiveShortcutPolicy", "HybridShortcutPolicy", "SenCachePolicy", "MLCachePolicy",
    "FixedIntervalPolicy", "SensitivityTable", "calibrate", "load_calibration", "load_head", "make_policy",
    "make_policy_for_model", "policy_files", "POLICY_FILES", "register_policy",
    "committed_counts", "masked_counts",
]
