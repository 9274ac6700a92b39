"""The MaskGIT family: valeoai MaskGIT-pytorch checkpoints in the released layout (``MaskGIT/*.pth``
and the taming VQGAN in ``VQGAN/``), run by this package's re-implementation of the published
``MaskTransformer`` (``transformer.py``) and sampled with MaskGIT's own rule.

Registers the ``maskgit`` folder kind (options: ``class_names``, ``image_size``, ``checkpoint``).
"""

from pathlib import Path

from migm_shortcut.registry import ModelKind, register_model_kind

from . import shortcut_head  # noqa: F401  (registers the published MaskGIT-Shortcut head architecture)


def load(folder: Path, device="cpu", dtype=None, trust_remote_code: bool = False, class_names=None, image_size=None,
         checkpoint=None):
    from .model import MaskGITModel

    return MaskGITModel.from_pretrained(folder, device=device, dtype=dtype, class_names=class_names,
                                        trust_remote_code=trust_remote_code, image_size=image_size, checkpoint=checkpoint)


register_model_kind(ModelKind("maskgit", "a MaskGIT-pytorch folder (MaskGIT/*.pth, the released layout)",
                              lambda folder: (folder / "MaskGIT").is_dir(), load, order=20,
                              options=("class_names", "image_size", "checkpoint")))
