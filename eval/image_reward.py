"""ImageReward (THUDM's ``image-reward`` package), the text-to-image preference score the MIGM-Shortcut
paper reports for Lumina-DiMOO, from a local weights folder: never downloaded.

The folder holds what the package would fetch from the hub ``THUDM/ImageReward``: ``ImageReward.pt``
(the reward model's state dict) and ``med_config.json`` (its BLIP text encoder's config). The package's
BLIP builds its tokenizer with ``BertTokenizer.from_pretrained("bert-base-uncased")``: it is read from
``FOLDER/bert-base-uncased/`` when that exists (the relative name resolves there: the model is built
inside the folder), else from the Hugging Face cache, offline either way.

The state dict is read with ``weights_only`` (the package's own ``load`` unpickles it) and loaded into
the package's ``ImageReward`` module unchanged; ``score(prompt, image)`` is the package's, per image, as
its README scores. ``ImageRewardScore`` is a small torchmetrics metric: the mean over every image of
every torchrun process.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torchmetrics import Metric

from migm_shortcut.distributed import cpu_group
from migm_shortcut.errors import MigmError
from migm_shortcut.io import load_torch

WEIGHTS, MED_CONFIG, TOKENIZER = "ImageReward.pt", "med_config.json", "bert-base-uncased"
INSTALL = "pip install 'migm-shortcut[image-reward]' (the image-reward package; it needs torchvision)"


def check_image_reward_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise MigmError(f"ImageReward folder not found: {folder} (a folder with {WEIGHTS} and {MED_CONFIG} from the hub "
                        "repository THUDM/ImageReward)")
    missing = [name for name in (WEIGHTS, MED_CONFIG) if not (folder / name).is_file()]
    if missing:
        raise MigmError(f"ImageReward folder {folder} lacks {missing[0]}; download it from the hub repository "
                        "THUDM/ImageReward into that folder")
    return folder


def _package():
    try:
        import ImageReward as package  # noqa: N813 (the package's own name)
    except ImportError as exc:
        raise MigmError(f"ImageReward needs the image-reward package ({exc.name} is missing): {INSTALL}") from None
    return package


@contextlib.contextmanager
def _offline_in(folder: Path):
    """Build the model inside ``folder`` with the hub offline, so its fixed tokenizer name resolves to
    FOLDER/bert-base-uncased or the local cache and nothing is fetched. The libraries read their offline
    switches when imported, so the switches themselves are flipped for the duration."""
    import huggingface_hub.constants as hub_constants
    import transformers.utils.hub as transformers_hub

    switches = [(hub_constants, "HF_HUB_OFFLINE")] + (
        [(transformers_hub, "_is_offline_mode")] if hasattr(transformers_hub, "_is_offline_mode") else [])
    saved = [getattr(module, name) for module, name in switches]
    here = os.getcwd()  # contextlib.chdir is Python 3.11+
    for module, name in switches:
        setattr(module, name, True)
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)
        for (module, name), value in zip(switches, saved):
            setattr(module, name, value)


def _check_tokenizer(folder: Path) -> None:
    """The BERT vocabulary must be in the folder or the cache: offline, transformers would otherwise build
    a tokenizer of special tokens only, and every prompt would score as the same empty text."""
    from huggingface_hub import try_to_load_from_cache

    vocabularies = ("vocab.txt", "tokenizer.json")  # the hub repository has both; transformers 5 saves the second
    if any((folder / TOKENIZER / name).is_file() for name in vocabularies):
        return
    if not any(isinstance(try_to_load_from_cache(TOKENIZER, name), str) for name in vocabularies):
        raise MigmError(f"ImageReward's BLIP needs the {TOKENIZER} tokenizer: put it in {folder / TOKENIZER} "
                        "(BertTokenizer.save_pretrained) or the Hugging Face cache; nothing is downloaded")


def load_image_reward(folder: str | Path, device: str | torch.device = "cpu"):
    """The package's ``ImageReward`` module with the folder's weights, in eval mode on ``device``."""
    folder = check_image_reward_folder(folder).resolve()
    package = _package()
    _check_tokenizer(folder)
    state = load_torch(folder / WEIGHTS)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MigmError(f"{folder / WEIGHTS} is not an ImageReward state dict (a dict of tensors)")
    try:
        with _offline_in(folder):
            model = package.ImageReward(med_config=str(folder / MED_CONFIG), device=str(device))
    except OSError as exc:  # a tokenizer folder that is incomplete
        raise MigmError(f"ImageReward's BLIP could not read the {TOKENIZER} tokenizer "
                        f"({str(exc).splitlines()[0]}); replace {folder / TOKENIZER}") from None
    result = model.load_state_dict(state, strict=False)
    # The released file also holds BLIP buffers the module rebuilds (position ids); a missing weight is not such.
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise MigmError(f"{folder / WEIGHTS} lacks {len(missing)} of the reward model's weights (first: {missing[0]}); "
                        "it is not ImageReward's state dict")
    return model.to(device).eval()


class ImageRewardScore(Metric):
    """``update(images in [-1, 1], prompts)`` then ``compute()`` -> the mean reward of every image."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu", **kwargs):
        super().__init__(process_group=cpu_group(), **kwargs)
        self.reward_model = load_image_reward(folder, device)
        self.name = str(folder)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @torch.no_grad()
    def update(self, images: torch.Tensor, prompts: list[str]) -> None:
        from PIL import Image

        if any(not isinstance(p, str) for p in prompts):
            raise MigmError("ImageReward scores text prompts; this model is class-conditional (drop --image-reward)")
        if len(images) != len(prompts):
            raise MigmError(f"ImageReward: {len(images)} images for {len(prompts)} prompts")
        pixels = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
        if pixels.shape[1] == 1:
            pixels = pixels.repeat(1, 3, 1, 1)
        for image, prompt in zip(pixels.permute(0, 2, 3, 1).numpy(), prompts):
            reward = float(self.reward_model.score(prompt, Image.fromarray(image)))
            if reward != reward:
                raise MigmError(f"ImageReward gave NaN for the prompt {prompt!r}; check the weights folder {self.name}")
            self.total += reward
            self.count += 1

    def compute(self) -> torch.Tensor:
        if self.count == 0:
            raise MigmError("ImageReward: no images were scored")
        return self.total / self.count


class LocalImageReward:
    """``score(images, prompts)``: the mean ImageReward, as ``LocalCLIPScore`` scores CLIPScore."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        self.metric = ImageRewardScore(folder, device)
        self.name = self.metric.name

    def score(self, images: torch.Tensor, prompts: list[str]) -> float:
        self.metric.reset()
        self.metric.update(images, prompts)
        return float(self.metric.compute())
