"""MaskGIT (valeoai MaskGIT-pytorch / Halton-MaskGIT v1.0): its ``MaskTransformer`` behind the
package's model interface, class-conditional, through a hook only.

What the adapter reads from the module (nothing is typed in): the grid (``pos_emb`` holds
grid² + 1 positions), the codebook size and the number of classes (``codebook_size``, ``nclass``).

* **sequence** — ``[grid² image tokens][class token]``: codes are ids 0..K-1, the mask is K, the
  class token is ``K + 1 + class`` and the model's own "no class" token ``K + 1 + nclass`` is the
  unconditional branch (MaskGIT's label drop). Prompts are class ids, or class names when a
  names list is given.
* **features** — the output of ``last_layer``, read by a forward hook that ends the forward
  there (the logit matmul over the whole vocabulary is skipped).
* **logits_from_features** — the model's own output rule on the image codes: the shared
  embedding's transpose plus the per-position ``bias`` (so the rows' positions are needed).
* **embed_tokens** — the frozen ``tok_emb`` plus ``pos_emb`` at the position.

``MaskGITModel.from_pretrained(folder)`` reads the released layout: ``MaskGIT/*.pth`` (a
``torch.save`` dict with ``model_state_dict``, loaded with ``weights_only=True``), the
architecture settings from ``MaskGIT/config.json`` when present, else inferred from the
tensors. Images are decoded by the released taming VQGAN (``VQGAN/last.ckpt`` + ``VQGAN/model.yaml``,
converted to a diffusers ``VQModel`` on load: ``taming_vqgan``) or by a diffusers ``VQModel`` in ``vqvae/``.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from migm_shortcut.errors import MigmError
from migm_shortcut.interface import ModelInfo
from migm_shortcut.io import load_torch, read_json, tensor_digest
from migm_shortcut.vq import load_vqvae, vq_decode
from migm_shortcut.interface import LoadedModel, SamplingDefaults, own_head
from migm_shortcut.rules import MaskGITRule
from migm_shortcut.sequence import check_sequence_shape, write_image_codes

MASKGIT_DEFAULTS = SamplingDefaults(num_steps=12, guidance_scale=3.0, temperature=1.0)


class MaskGITLayout:
    """``[grid x grid codes][class token]``; the class token is conditioning, not a token the head sees."""

    prompt_in_sequence = False
    image_delimiters = False

    def __init__(self, grid: int, codebook_size: int, nclass: int, class_names: Sequence[str] | None = None):
        self.grid_shape = (grid, grid)
        self.num_image_tokens = n = grid * grid
        self.seq_len = n + 1
        self.codebook_size, self.nclass = codebook_size, nclass
        self.code_offset, self.mask_id = 0, codebook_size
        self.class_offset = codebook_size + 1
        self.drop_id = codebook_size + 1 + nclass
        self.vocab_size = codebook_size  # image codes occupy ids 0..K-1
        self.prompt_len, self.pad_id = 1, self.drop_id
        self.image_positions = torch.arange(n)
        self.class_names = list(class_names) if class_names is not None else None
        if self.class_names is not None and len(self.class_names) != nclass:
            raise MigmError(f"the names list has {len(self.class_names)} names, the model has {nclass} classes")

    def class_id(self, prompt) -> int:
        if isinstance(prompt, str):
            if self.class_names is None:
                raise MigmError(f"class name {prompt!r} given, but no names list: pass class ids (0..{self.nclass - 1}) "
                                "or give the model its class names (--class-names FILE)")
            if prompt not in self.class_names:
                raise MigmError(f"unknown class name {prompt!r}; the names list has {self.nclass} names")
            return self.class_names.index(prompt)
        if isinstance(prompt, bool) or not isinstance(prompt, int) or not 0 <= prompt < self.nclass:
            raise MigmError(f"class id must be a whole number in 0..{self.nclass - 1}, got {prompt!r}")
        return prompt

    def encode_prompt(self, prompt) -> torch.Tensor:
        """A class (id or name) -> its class token; None -> the "no class" token (MaskGIT's label drop)."""
        token = self.drop_id if prompt is None else self.class_offset + self.class_id(prompt)
        return torch.tensor([token], dtype=torch.long)

    def template(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        seq = torch.full((prompt_ids.shape[0], self.seq_len), self.mask_id, dtype=torch.long, device=prompt_ids.device)
        seq[:, -1] = prompt_ids[:, 0]
        return seq

    def with_codes(self, seq: torch.Tensor, codes: torch.Tensor, committed: torch.Tensor) -> torch.Tensor:
        return write_image_codes(self, seq, codes, committed)


class _FeaturesReady(Exception):
    """Raised by the last_layer hook to end the forward once the features exist."""


REQUIRED = ("tok_emb", "pos_emb", "first_layer", "transformer", "last_layer", "bias", "codebook_size", "nclass")


class MaskGITBackbone(ModelInfo, nn.Module):
    """An unmodified ``MaskTransformer`` + its layout = the package's model interface."""

    def __init__(self, model: nn.Module, class_names: Sequence[str] | None = None):
        super().__init__()
        missing = [name for name in REQUIRED if not hasattr(model, name)]
        if missing:
            raise MigmError(f"{type(model).__name__} is not a MaskGIT MaskTransformer (missing {', '.join(missing)}); "
                            "supported: valeoai MaskGIT-pytorch's MaskTransformer")
        self.model = model
        positions = model.pos_emb.shape[1] - 1
        grid = math.isqrt(positions)
        if grid * grid != positions:
            raise MigmError(f"pos_emb holds {positions} image positions, not a square grid")
        self.layout = MaskGITLayout(grid, int(model.codebook_size), int(model.nclass), class_names)
        self.width = model.tok_emb.weight.shape[1]

    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, grid² + 1) -> (B, grid² + 1, C): the output of ``last_layer``."""
        check_sequence_shape(input_ids, self.layout.seq_len)
        lay, g = self.layout, self.layout.grid_shape[0]
        image, cls = input_ids[:, : lay.num_image_tokens], input_ids[:, -1]
        drop = cls == lay.drop_id
        y = torch.where(drop, 0, cls - lay.class_offset)
        box: list[torch.Tensor] = []

        def grab(module, inputs, output):
            box.append(output)
            raise _FeaturesReady

        handle = self.model.last_layer.register_forward_hook(grab)
        try:
            self.model(image.view(-1, g, g), y, drop)  # the published forward(img_token, y, drop_label)
        except _FeaturesReady:
            pass
        finally:
            handle.remove()
        if not box:
            raise MigmError("the MaskTransformer forward never reached last_layer; unsupported variant")
        return box[0]

    def logits_from_features(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``features @ tok_emb.weight[:K].T + bias[position, :K]`` (the model's own rule on the image codes)."""
        k = self.layout.codebook_size
        if positions is None:
            if features.shape[-2] != self.layout.num_image_tokens:
                raise MigmError("MaskGIT's output bias depends on the position: pass the rows' positions")
            positions = self.layout.image_positions.to(features.device)
        weight = self.model.tok_emb.weight[:k]
        return features.to(weight.dtype) @ weight.T + self.model.bias[positions.to(features.device), :k]

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.model.tok_emb(ids) + self.model.pos_emb[0, positions]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.tok_emb(input_ids) + self.model.pos_emb

    @cached_property
    def fingerprint(self) -> str:
        m, lay = self.model, self.layout
        arch = f"maskgit:d{self.width}:l{len(m.transformer.layers)}:g{lay.grid_shape[0]}:k{lay.codebook_size}:c{lay.nclass}"
        return f"{arch}:{tensor_digest(m.tok_emb.weight, m.bias, m.last_layer[-1].weight)}"


# -- a checkpoint folder in the released layout -------------------------------------------------
def infer_settings(state: dict[str, torch.Tensor]) -> dict:
    """MaskTransformer settings from the tensors (heads cannot be read off them: the published 16)."""
    try:
        rows, hidden = state["tok_emb.weight"].shape
        positions = state["pos_emb"].shape[1] - 1
        vocab = state["bias"].shape[1]
        depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("transformer.layers."))
        mlp_dim = state["transformer.layers.0.1.fn.net.0.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as exc:
        raise MigmError(f"the checkpoint is not a MaskTransformer state dict (no {exc}); "
                        "give MaskGIT/config.json with its settings") from None
    grid = math.isqrt(positions)
    # rows = codebook + 1 + nclass + 1; the published codebook is 1024 (ImageNet VQGAN)
    codebook = 1024 if rows > 1026 else rows - 3
    return {"img_size": grid * 16, "hidden_dim": hidden, "codebook_size": codebook, "f_factor": grid, "depth": depth,
            "heads": 16, "mlp_dim": mlp_dim, "dropout": 0.0, "nclass": vocab - codebook - 2}


def check_state(state: dict[str, torch.Tensor], model: nn.Module, where: Path) -> None:
    own = model.state_dict()
    for name, tensor in own.items():
        if name not in state:
            raise MigmError(f"{where}: the checkpoint has no tensor {name} that the settings need")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise MigmError(f"{where}: tensor {name} is {tuple(state[name].shape)} in the checkpoint, the settings give "
                            f"{tuple(tensor.shape)}")


def maskgit_vqvae(folder: Path, device, trust_remote_code: bool = False):
    """The folder's image decoder: a diffusers ``VQModel`` in ``vqvae/``, else the released taming VQGAN
    in ``VQGAN/`` (``last.ckpt`` + ``model.yaml``, converted on load), else None (codes only)."""
    if (folder / "vqvae" / "config.json").is_file():
        return load_vqvae(folder, device)
    if (folder / "VQGAN").is_dir():
        from migm_shortcut.maskgit.taming_vqgan import load_taming_vqgan

        return load_taming_vqgan(folder / "VQGAN", device, trust_remote_code)
    return None


class MaskGITModel(LoadedModel):
    """A MaskGIT checkpoint folder: the backbone behind the model interface, and its VQ decoder if present."""

    kind = "maskgit"
    defaults = MASKGIT_DEFAULTS
    rule = MaskGITRule()

    def __init__(self, model: nn.Module, class_names: Sequence[str] | None = None, vqvae=None, path=None):
        self.backbone = MaskGITBackbone(model, class_names)
        self.vqvae, self.path = vqvae, path
        self.head_path = own_head(path)  # FOLDER/shortcut_head, where a head was saved next to the checkpoint

    @classmethod
    def from_pretrained(cls, folder: str | Path, device="cpu", dtype: torch.dtype | None = None,
                        class_names: Sequence[str] | None = None, trust_remote_code: bool = False) -> "MaskGITModel":
        from migm_shortcut.maskgit.transformer import MaskTransformer

        folder = Path(folder)
        files = sorted((folder / "MaskGIT").glob("*.pth"))
        if not files:
            raise MigmError(f"{folder}/MaskGIT holds no .pth checkpoint (the released layout: MaskGIT/MaskGIT_ImageNet_256.pth)")
        checkpoint = load_torch(files[0])
        state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise MigmError(f"{files[0]} is not a MaskGIT checkpoint (expected a dict with model_state_dict)")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        settings_file = folder / "MaskGIT" / "config.json"
        settings = read_json(settings_file) if settings_file.is_file() else infer_settings(state)
        try:
            model = MaskTransformer(**settings)
        except TypeError as exc:
            raise MigmError(f"{settings_file}: bad MaskTransformer settings ({exc})") from None
        check_state(state, model, files[0])
        model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
        loaded = cls(model.eval(), class_names, maskgit_vqvae(folder, device, trust_remote_code), folder)
        # The fingerprint names the weights as saved, so a head trained on one dtype loads on another:
        # take it before the cast (cached on the backbone, which keeps this module).
        loaded.backbone.fingerprint
        model.to(device, dtype or torch.float32)
        return loaded

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, H, W) codes -> images in [-1, 1] (the VQGAN's range)."""
        return vq_decode(self.vqvae, codes, self.path).clamp(-1, 1)

    def parse_prompt(self, text: str):
        """A prompt as typed: a class id ("207") or a class name (with a names list)."""
        return int(text) if text.strip().isdigit() else text
