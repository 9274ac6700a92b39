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
from migm_shortcut.interface import LoadedModel, ModelInfo, SamplingDefaults, own_head
from migm_shortcut.io import load_torch, read_json, tensor_digest
from migm_shortcut.vq import load_vqvae, vq_decode
from migm_shortcut.rules import MaskGITRule
from migm_shortcut.sequence import check_sequence_shape, write_image_codes

# The published sampling settings per image size (MaskGIT-pytorch's README, "Performance on ImageNet"):
# steps, CFG w, softmax temperature (sm_temp), Gumbel temperature (r_temp); arccos schedule, "linear" noise.
# Other sizes take the 256 settings.
PUBLISHED_SETTINGS = {
    256: (SamplingDefaults(num_steps=8, guidance_scale=3.0, temperature=1.0), MaskGITRule(choice_temperature=4.5)),
    512: (SamplingDefaults(num_steps=15, guidance_scale=2.8, temperature=1.0), MaskGITRule(choice_temperature=7.0)),
}
MASKGIT_DEFAULTS, MASKGIT_RULE = PUBLISHED_SETTINGS[256]


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

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.tok_emb(ids)

    @cached_property
    def fingerprint(self) -> str:
        m, lay = self.model, self.layout
        arch = f"maskgit:d{self.width}:l{len(m.transformer.layers)}:g{lay.grid_shape[0]}:k{lay.codebook_size}:c{lay.nclass}"
        return f"{arch}:{tensor_digest(m.tok_emb.weight, m.bias, m.last_layer[-1].weight)}"


# -- a checkpoint folder in the released layout -------------------------------------------------
def infer_settings(state: dict[str, torch.Tensor], codebook: int) -> dict:
    """MaskTransformer settings from the tensors and the tokenizer's codebook size (the embedding holds
    codebook + 1 + nclass + 1 rows, so it cannot tell the two apart); heads cannot be read off the
    tensors: the published 16."""
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
    if rows - codebook - 2 < 1:
        raise MigmError(f"the checkpoint's embedding has {rows} rows, too few for a {codebook}-code tokenizer plus classes")
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


def tokenizer_codebook(folder: Path) -> int | None:
    """The image tokenizer's codebook size, read from its config (``vqvae/`` or ``VQGAN/model.yaml``)."""
    if (folder / "vqvae" / "config.json").is_file():
        return int(read_json(folder / "vqvae" / "config.json")["num_vq_embeddings"])
    if (folder / "VQGAN" / "model.yaml").is_file():
        from migm_shortcut.maskgit.taming_vqgan import read_taming_config

        return int(read_taming_config(folder / "VQGAN" / "model.yaml")["n_embed"])
    return None


def choose_checkpoint(folder: Path, image_size: int | None, checkpoint: str | Path | None) -> Path:
    """The transformer checkpoint: ``checkpoint`` (a path, or a file name in ``MaskGIT/``), else the one
    for ``image_size`` (``..._512.pth``), else the only one; two or more is refused, listing them."""
    files = sorted((folder / "MaskGIT").glob("*.pth"))
    if checkpoint is not None:
        path = Path(checkpoint) if Path(checkpoint).is_file() else folder / "MaskGIT" / str(checkpoint)
        if not path.is_file():
            raise MigmError(f"--checkpoint {checkpoint}: no such file (MaskGIT/ holds: {', '.join(f.name for f in files) or 'none'})")
        return path
    if not files:
        raise MigmError(f"{folder}/MaskGIT holds no .pth checkpoint (the released layout: MaskGIT/MaskGIT_ImageNet_256.pth)")
    if image_size is not None:
        sized = [f for f in files if f.stem.endswith(f"_{image_size}")]
        if len(sized) != 1:
            raise MigmError(f"{folder}/MaskGIT holds no single checkpoint for --image-size {image_size} "
                            f"({', '.join(f.name for f in files)}); name one with --checkpoint FILE")
        return sized[0]
    if len(files) > 1:
        raise MigmError(f"{folder}/MaskGIT holds {len(files)} checkpoints ({', '.join(f.name for f in files)}); choose one "
                        "with --image-size 256|512 or --checkpoint FILE")
    return files[0]


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
    rule = MASKGIT_RULE
    # The published MaskGIT-Shortcut head, sized as its evaluation: bottleneck 2, 16 heads, 1 block.
    head_architecture = "maskgit-shortcut"
    head_options = {"ratio": 2, "heads": 16, "num_blocks": 1}

    def __init__(self, model: nn.Module, class_names: Sequence[str] | None = None, vqvae=None, path=None,
                 checkpoint: Path | None = None):
        self.backbone = MaskGITBackbone(model, class_names)
        self.vqvae, self.path, self.checkpoint = vqvae, path, checkpoint
        self.head_path = own_head(path)  # FOLDER/shortcut_head, where a head was saved next to the checkpoint
        # the published sampling settings of this resolution (the grid is image side / 16)
        self.image_size = self.backbone.layout.grid_shape[0] * 16
        self.defaults, self.rule = PUBLISHED_SETTINGS.get(self.image_size, PUBLISHED_SETTINGS[256])

    @classmethod
    def from_pretrained(cls, folder: str | Path, device="cpu", dtype: torch.dtype | None = None,
                        class_names: Sequence[str] | None = None, trust_remote_code: bool = False,
                        image_size: int | None = None, checkpoint: str | Path | None = None) -> "MaskGITModel":
        from migm_shortcut.maskgit.transformer import MaskTransformer

        folder = Path(folder)
        file = choose_checkpoint(folder, image_size, checkpoint)
        saved = load_torch(file)
        state = saved.get("model_state_dict", saved) if isinstance(saved, dict) else None
        if not isinstance(state, dict):
            raise MigmError(f"{file} is not a MaskGIT checkpoint (expected a dict with model_state_dict)")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        settings_file = folder / "MaskGIT" / "config.json"
        if settings_file.is_file():
            settings = read_json(settings_file)
            tokenizer_codes = tokenizer_codebook(folder)
            if tokenizer_codes is not None and settings.get("codebook_size") not in (None, tokenizer_codes):
                raise MigmError(f"{settings_file} says codebook_size {settings['codebook_size']}, the image tokenizer has "
                                f"{tokenizer_codes} codes; they must agree")
        else:
            codebook = tokenizer_codebook(folder)
            if codebook is None:
                raise MigmError(f"{folder}: no image tokenizer (VQGAN/ or vqvae/) to read the codebook size from; add it, "
                                "or give MaskGIT/config.json with the MaskTransformer settings")
            settings = infer_settings(state, codebook)
        try:
            model = MaskTransformer(**settings)
        except TypeError as exc:
            raise MigmError(f"{settings_file}: bad MaskTransformer settings ({exc})") from None
        check_state(state, model, file)
        model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
        loaded = cls(model.eval(), class_names, maskgit_vqvae(folder, device, trust_remote_code), folder, file)
        if image_size is not None and loaded.image_size != image_size:
            raise MigmError(f"{file} is a {loaded.image_size}x{loaded.image_size} model, not {image_size}; pass its size")
        # The fingerprint names the weights as saved, so a head trained on one dtype loads on another:
        # take it before the cast (cached on the backbone, which keeps this module).
        loaded.backbone.fingerprint
        model.to(device, dtype or torch.float32)
        return loaded

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, H, W) codes -> images in [-1, 1] (the VQGAN's range)."""
        return vq_decode(self.vqvae, codes, self.path).clamp(-1, 1)

    def class_prompts(self, per_class: int) -> list[int]:
        """Class ids 0..nclass-1, ``per_class`` each: MaskGIT's evaluation samples the labels of ImageNet's
        validation set, 50 images of each of the 1000 classes."""
        return [c for c in range(self.backbone.layout.nclass) for _ in range(per_class)]

    def parse_prompt(self, text: str):
        """A prompt as typed: a class id ("207") or a class name (with a names list)."""
        return int(text) if text.strip().isdigit() else text
