"""``save_pretrained`` / ``from_pretrained`` for the package's own modules.

A saved module is a folder with ``config.json`` (its dataclass config plus a ``model_type``)
and ``model.safetensors`` (weights, fp16 by default to keep shipped files small). Loading
checks the type, the config fields and every weight shape, and says in one line what is
wrong instead of failing deep inside ``load_state_dict``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from migm_shortcut.errors import MigmError
from migm_shortcut.io import load_tensors, read_json, save_tensors, write_json

T = TypeVar("T", bound="PretrainedModule")

# Where the package's own trained weights live (vq/, backbone/, classifier/, head/).
SHIPPED_WEIGHTS = Path(__file__).parent / "weights"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class PretrainedModule(nn.Module):
    """Base for modules configured by one dataclass (``config_class``)."""

    config_class: ClassVar[type]
    model_type: ClassVar[str]

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    def extra_metadata(self) -> dict[str, Any]:
        """Extra JSON saved beside the config (a head stores its base model's fingerprint here)."""
        return {}

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype = torch.float16) -> None:
        directory = Path(directory)
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in self.state_dict().items()}
        save_tensors(directory / WEIGHTS_NAME, state)
        self.save_config(directory)

    def save_config(self, directory: str | Path) -> None:
        """``config.json`` alone: what ``load_config`` (and ``from_pretrained``) read back."""
        meta = {"model_type": self.model_type, **dataclasses.asdict(self.config), **self.extra_metadata()}
        write_json(Path(directory) / CONFIG_NAME, meta)

    @classmethod
    def load_config(cls, directory: str | Path) -> tuple[Any, dict[str, Any]]:
        directory = Path(directory)
        if not directory.is_dir():
            raise MigmError(f"{cls.model_type} folder not found: {directory}")
        raw = read_json(directory / CONFIG_NAME)
        if raw.get("model_type") != cls.model_type:
            raise MigmError(f"{directory} holds a {raw.get('model_type')!r}, not a {cls.model_type!r}")
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        missing = [f.name for f in dataclasses.fields(cls.config_class)
                   if f.name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise MigmError(f"{directory / CONFIG_NAME} lacks the field(s) {', '.join(missing)}")
        config = cls.config_class(**{k: v for k, v in raw.items() if k in fields})
        extra = {k: v for k, v in raw.items() if k not in fields and k != "model_type"}
        return config, extra

    @classmethod
    def from_pretrained(cls: type[T], directory: str | Path, device: str | torch.device = "cpu") -> T:
        config, extra = cls.load_config(directory)
        model = cls(config)
        model.load_extra_metadata(extra)
        state = load_tensors(Path(directory) / WEIGHTS_NAME)
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise MigmError(
                f"{directory}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        for name, tensor in state.items():
            if tensor.shape != own[name].shape:
                raise MigmError(f"{directory}: weight {name} has shape {tuple(tensor.shape)}, config expects {tuple(own[name].shape)}")
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise MigmError(f"{directory}: weight {name} contains NaN or inf; the file is damaged or training diverged")
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
        return model.to(device).eval()

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        """Receives what ``extra_metadata`` saved; the default ignores it."""

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
