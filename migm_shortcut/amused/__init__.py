"""The aMUSEd family: a diffusers ``AmusedPipeline`` folder behind the model contract, and the
shortcut hook that runs inside the pipeline's own loop (``apply_shortcut``). The project's own
UVit2D backbone (``AmusedBackbone``, saved in weights folders) lives here too.

Registers the ``amused-pipeline`` folder kind.
"""

from pathlib import Path

from migm_shortcut.io import read_json
from migm_shortcut.registry import ModelKind, register_model_kind


def is_amused_pipeline(folder: Path) -> bool:
    index = folder / "model_index.json"
    return index.is_file() and read_json(index).get("_class_name") == "AmusedPipeline"


def load(folder: Path, device="cpu", dtype=None, **options):
    from .model import AmusedPipelineModel

    return AmusedPipelineModel.from_pretrained(folder, device=device, dtype=dtype)


register_model_kind(ModelKind("amused-pipeline", "a diffusers AmusedPipeline folder (model_index.json)",
                              is_amused_pipeline, load, order=30))
