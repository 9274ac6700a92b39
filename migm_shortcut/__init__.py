"""migm-shortcut: learned shortcuts for fast sampling of masked image generation models.

The public API: ``load_model`` (any supported model folder), the shortcut head, the sampler and
its step policies, and the diffusers-style pipeline hook. The sampler and the policies live in
the ``samplers`` layer, which the core never imports; they are loaded on first access.
"""

from .errors import MigmError
from .hooks import ShortcutConfig, apply_shortcut, disable_shortcut, enable_shortcut
from .interface import MaskedImageModel, TokenLayout, check_model
from .models import load_model
from .pipeline import DEFAULT_NUM_STEPS, EmbeddedModel
from .shortcut import ShortcutHead, ShortcutHeadConfig, budget_full_steps

__version__ = "0.1.0"

# Names served from the samplers layer on first access (PEP 562), so `import migm_shortcut` stays core-only.
_SAMPLERS = ("DiMOOSampler", "VanillaPolicy", "ShortcutPolicy", "AdaptiveShortcutPolicy", "SenCachePolicy",
             "MLCachePolicy", "FixedIntervalPolicy", "StepPolicy", "StepState", "StepOutput", "calibrate")


def __getattr__(name: str):
    if name in _SAMPLERS:
        from . import samplers

        return getattr(samplers, name)
    raise AttributeError(f"module 'migm_shortcut' has no attribute {name!r}")


__all__ = [
    "load_model", "EmbeddedModel", "MaskedImageModel", "TokenLayout", "check_model", "MigmError",
    "ShortcutHead", "ShortcutHeadConfig", "budget_full_steps", "DEFAULT_NUM_STEPS",
    "ShortcutConfig", "apply_shortcut", "enable_shortcut", "disable_shortcut", *_SAMPLERS,
]
