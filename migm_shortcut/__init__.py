"""migm-shortcut: learned shortcuts for fast sampling of masked image generation models."""

from .backbone import BackboneConfig, MiniDiMOO
from .classifier import ClassifierConfig, FashionClassifier
from .data import ImageDataset, load_dataset
from .errors import MigmError
from .interface import MaskedImageModel, TokenLayout, check_model
from .models import load_model
from .pipeline import DEFAULT_NUM_STEPS, EmbeddedModel
from .sequence import SequenceLayout
from .prompts import CLASS_NAMES, canonical_prompt, prompt_class
from .shortcut import ShortcutHead, ShortcutHeadConfig, budget_full_steps
from .tokenizer import VQTokenizer

__version__ = "0.1.0"

__all__ = [
    "load_model", "MaskedImageModel", "TokenLayout", "check_model", "BackboneConfig", "MiniDiMOO", "SequenceLayout", "ClassifierConfig", "FashionClassifier",
    "ImageDataset", "load_dataset", "MigmError", "CLASS_NAMES", "canonical_prompt", "prompt_class",
    "VQTokenizer", "EmbeddedModel", "DEFAULT_NUM_STEPS", "ShortcutHead", "ShortcutHeadConfig", "budget_full_steps",
]
