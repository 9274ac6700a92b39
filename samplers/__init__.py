"""The sampler and its step policies (installed as ``migm_shortcut.samplers``).

``build_policy(name, model, **params)`` is the one way to make a policy for a loaded model (the CLI
and sweeps both use it); ``generate(model, prompts, seeds, ...)`` samples and decodes.
"""

from migm_shortcut.errors import MigmError
from migm_shortcut.schedule import committed_counts, masked_counts

from .policies import (POLICIES, POLICY_FILES, StepOutput, StepPolicy, StepState, VanillaPolicy, make_policy,
                       policy_class, policy_parameters, register_policy, setting)
from .sampler import MaskedTokenSampler, SampleOutput, generate, guided_logits
from .sensitivity import SensitivityTable, calibrate, load_calibration
# Each policy module registers its policies on import, in this order (the CLI lists them so).
from .shortcut import AdaptiveShortcutPolicy, ShortcutPolicy, load_head  # noqa: E402
from .caching import FixedIntervalPolicy, MLCachePolicy, SenCachePolicy  # noqa: E402
from .hybrid import HybridShortcutPolicy  # noqa: E402


def policy_files(name: str, model=None, **params) -> dict:
    """The files a policy reads: the ones given in ``params``, else the model's own
    (``model.head_path``, ``model.calibration_path``); None where neither exists (the policy then
    says what to pass)."""
    own = {"head": None if model is None else model.head_path,
           "calibration": None if model is None else model.calibration_path}
    return {key: params[key] if params.get(key) is not None else own[key] for key in policy_class(name).files}


def build_policy(name: str, model=None, steps: int | None = None, **params) -> StepPolicy:
    """The policy ``name`` for a loaded ``model``: its declared parameters from ``params``, its files
    from ``params`` or the model. With ``steps``, bad settings (a budget outside 1..N, a calibration
    for another N, a head for another model) fail here, in one line, before any work."""
    policy = make_policy(name, **{**params, **policy_files(name, model, **params)})
    if steps is not None:
        policy.reset(1, steps)
    if model is not None:
        policy.check_base(model.backbone)
    return policy


__all__ = [
    "MaskedTokenSampler", "SampleOutput", "generate", "guided_logits", "POLICIES", "POLICY_FILES", "StepOutput",
    "StepPolicy", "StepState", "VanillaPolicy", "ShortcutPolicy", "AdaptiveShortcutPolicy", "HybridShortcutPolicy",
    "SenCachePolicy", "MLCachePolicy", "FixedIntervalPolicy", "SensitivityTable", "calibrate", "load_calibration",
    "load_head", "make_policy", "build_policy", "policy_class", "policy_parameters", "policy_files",
    "register_policy", "setting", "committed_counts", "masked_counts", "MigmError",
]
