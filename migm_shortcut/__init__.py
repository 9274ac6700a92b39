"""migm-shortcut: learned shortcuts for fast sampling of masked image generation models.

The core API: ``load_model`` (any registered folder kind), the model contract, sampling rules, the
shortcut head and the diffusers-style pipeline hook. The sampler and the step policies are the
``migm_shortcut.samplers`` layer (``from migm_shortcut.samplers import ShortcutPolicy, generate``),
which the core never imports.
"""

from migm_shortcut.amused.hook import ShortcutConfig, apply_shortcut, disable_shortcut, enable_shortcut
from migm_shortcut.errors import MigmError
from migm_shortcut.interface import (HEAD_FOLDER, LoadedModel, MaskedImageModel, ReferenceImages, SamplingDefaults,
                                     TokenLayout, check_model)
from migm_shortcut.registry import ModelKind, detect_kind, load_model, model_kinds, register_model_kind
from migm_shortcut.rules import DiMOORule, MaskGITRule, SamplingRule
from migm_shortcut.shortcut import ShortcutHead, ShortcutHeadConfig, budget_full_steps

__version__ = "0.1.0"

__all__ = [
    "load_model", "detect_kind", "model_kinds", "register_model_kind", "ModelKind", "LoadedModel", "SamplingDefaults",
    "ReferenceImages", "MaskedImageModel", "TokenLayout", "check_model", "HEAD_FOLDER", "MigmError", "SamplingRule",
    "DiMOORule", "MaskGITRule", "ShortcutHead", "ShortcutHeadConfig", "budget_full_steps",
    "ShortcutConfig", "apply_shortcut", "enable_shortcut", "disable_shortcut",
]
