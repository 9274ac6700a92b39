"""``load_model(PATH)``: one way to name a model, whatever kind of folder it is.

The kind is read from the folder:

* no path — the embedded model shipped with the package;
* a project weights folder (``backbone/config.json``, written by ``train-base``) — the
  embedded mini DiMOO or the project's aMUSEd UVit2D, with the head and calibration inside;
* a Lumina-DiMOO / LLaDA checkpoint folder (``config.json`` with ``model_type`` "llada").

Anything else is refused with one line listing these kinds. Every loaded model has
``backbone`` (the model interface), ``decode(codes)``, ``sampler(...)``, ``generate(...)``,
``defaults`` (its own N, CFG scale and temperature), ``kind`` and, where one exists, the
``head_path`` and ``calibration_path`` that belong to it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import MigmError
from .io import read_json

MODEL_KINDS = (
    "the embedded model (no --model)",
    "a migm-shortcut weights folder (backbone/config.json, from train-base)",
    "a Lumina-DiMOO / LLaDA checkpoint folder (config.json with model_type 'llada')",
    "a MaskGIT-pytorch folder (MaskGIT/*.pth, the released layout)",
    "a diffusers AmusedPipeline folder (model_index.json)",
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LoadedModel:
    """What every loaded model offers on top of its ``backbone``: a sampler with the model's own
    defaults and sampling rule, and ``generate`` = sample + ``decode``."""

    defaults: dict = {}
    rule = "dimoo"
    head_path = None          # the head that belongs to the model, where one exists
    calibration_path = None   # its sensitivity table, where one exists

    def sampler(self, num_steps: int | None = None, guidance_scale: float | None = None,
                temperature: float | None = None, policy=None, **options):
        from .samplers import DiMOOSampler  # the core never imports the sampler layer at import time

        d = self.defaults
        return DiMOOSampler(self.backbone, d["num_steps"] if num_steps is None else num_steps,
                            d["guidance_scale"] if guidance_scale is None else guidance_scale,
                            d["temperature"] if temperature is None else temperature, policy,
                            **{"rule": self.rule, **options})

    def generate(self, prompts, seeds, num_steps: int | None = None, policy=None, guidance_scale: float | None = None,
                 temperature: float | None = None):
        """Images in [-1, 1] and the sampler's output (codes, step counts, time)."""
        out = self.sampler(num_steps, guidance_scale, temperature, policy).generate(prompts, seeds)
        return self.decode(out.codes), out


@torch.no_grad()
def vq_decode(vq, codes: torch.Tensor, what) -> torch.Tensor:
    """Decoder output of a diffusers ``VQModel`` for (N, H, W) code grids (its own value range)."""
    if vq is None:
        raise MigmError(f"{what or 'this model'} has no vqvae/ (a diffusers VQModel), so its codes cannot be decoded to images")
    n, h, w = codes.shape
    codes = codes.to(vq.device)
    if vq.config.lookup_from_codebook:  # DiMOO's VQ: decode looks the codes up itself
        return vq.decode(codes, force_not_quantize=True, shape=(n, h, w, vq.config.latent_channels)).sample.float().cpu()
    emb = vq.quantize.embedding.weight.shape[1]
    quant = vq.quantize.get_codebook_entry(codes.reshape(-1), (n, h, w, emb))
    return vq.decode(quant, force_not_quantize=True).sample.float().cpu()


def load_vqvae(folder: Path, device):
    """A diffusers ``VQModel`` saved in ``folder/vqvae``, or None."""
    if not (Path(folder) / "vqvae" / "config.json").is_file():
        return None
    from diffusers import VQModel

    return VQModel.from_pretrained(str(folder), subfolder="vqvae", low_cpu_mem_usage=False).to(device).eval()


def detect_kind(path: str | Path | None) -> str:
    """'embedded', 'weights', 'maskgit', 'amused-pipeline' or 'llada'; one line listing the supported
    kinds otherwise."""
    if path is None:
        return "embedded"
    folder = Path(path)
    if not folder.is_dir():
        raise MigmError(f"model folder not found: {folder} (train one with `migm-shortcut train-base --out {folder}`, "
                        "or pass a checkpoint folder)")
    if (folder / "backbone" / "config.json").is_file():
        return "weights"
    if (folder / "MaskGIT").is_dir():
        return "maskgit"
    if (folder / "model_index.json").is_file():
        pipeline = read_json(folder / "model_index.json").get("_class_name")
        if pipeline == "AmusedPipeline":
            return "amused-pipeline"
        raise MigmError(f"{folder} holds a {pipeline!r}, which is not supported; supported: {'; '.join(MODEL_KINDS)}")
    if (folder / "config.json").is_file():
        model_type = read_json(folder / "config.json").get("model_type")
        if model_type == "llada":
            return "llada"
        raise MigmError(f"{folder} holds a {model_type!r} model, which is not supported; supported: {'; '.join(MODEL_KINDS)}")
    raise MigmError(f"{folder} is not a model folder this package knows; supported: {'; '.join(MODEL_KINDS)}")


def load_model(path: str | Path | None = None, *, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
               trust_remote_code: bool = False, height: int | None = None, width: int | None = None,
               prompt_len: int | None = None, class_names: list[str] | None = None):
    """The model in ``path`` (see the module docstring for the kinds), ready to sample on ``device``.

    ``height``/``width`` (pixels) and ``prompt_len`` (prompt tokens) apply to models that take
    them (Lumina-DiMOO: 1024 x 1024 and 256 by default); ``class_names`` names a class-conditional
    model's classes (MaskGIT: then prompts may be names as well as ids). ``trust_remote_code`` allows a
    checkpoint folder's own Python code to run: it is code execution, so it is off by default.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise MigmError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    kind = detect_kind(path)
    sizes = {k: v for k, v in (("height", height), ("width", width), ("prompt_len", prompt_len)) if v is not None}
    if class_names is not None and kind != "maskgit":
        raise MigmError("class names apply to class-conditional models (MaskGIT); this model takes text prompts")
    if sizes and kind != "llada":
        raise MigmError(f"{', '.join(sizes)} apply to Lumina-DiMOO checkpoints; this model has a fixed size")
    if kind == "amused-pipeline":
        from .adapters.amused import AmusedPipelineModel

        return AmusedPipelineModel.from_pretrained(path, device=device, dtype=dtype)
    if kind == "maskgit":
        from .adapters.maskgit import MaskGITModel

        return MaskGITModel.from_pretrained(path, device=device, dtype=dtype, class_names=class_names,
                                            trust_remote_code=trust_remote_code)
    if kind in ("embedded", "weights"):
        from .pipeline import EmbeddedModel

        model = EmbeddedModel.from_pretrained(path, device=device)
        if dtype is not None:
            # The fingerprint names the weights as saved: take it before the cast rounds them (a bf16
            # copy of fp16 weights hashes differently), so the shipped head and table still match.
            model.backbone.fingerprint
            model.backbone.to(dtype)
        return model
    from .adapters.dimoo import DiMOOModel

    return DiMOOModel.from_pretrained(path, trust_remote_code=trust_remote_code, device=device, dtype=dtype, **sizes)
