"""``import_head``: a head the MIGM-Shortcut authors released, as a normal head folder of this package.

    from migm_shortcut import load_model
    from migm_shortcut.released_heads import import_head

    model = load_model("pretrained_maskgit", image_size=512)
    import_head("MaskGIT-Shortcut/maskgit-shortcut.pth", model, "pretrained_maskgit/shortcut_head")

The file is read with ``weights_only`` (a plain state dict of the EMA head; its tensors may be
tagged ``cuda:0``, so they are mapped to the CPU). The family's published head architecture reads
its config off the tensors (``config_from_state``); the keys then load one for one, and the first
missing, unexpected or mis-shaped key is named in one line. The head is bound to the model's
fingerprint, so it works wherever a trained head does: ``sample``, ``sweep``, ``validate-head``, and
``train-head --init-head`` to fine-tune it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from migm_shortcut.errors import MigmError
from migm_shortcut.io import load_torch
from migm_shortcut.shortcut import ShortcutHead, head_class


def released_state(path: str | Path) -> dict[str, torch.Tensor]:
    state = load_torch(path)  # weights_only: a file that needs pickle is refused in one line
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MigmError(f"{path} is not a head state dict (expected a dict of tensors, as the released heads are)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def released_sizes(state: dict[str, torch.Tensor], backbone, ratio_one_key: str, name: str) -> tuple[int, int, int]:
    """(width, bottleneck ratio, blocks) of a released head, as both published heads lay them out: the width
    and inner width from ``proj_in`` (absent at ratio 1, where ``ratio_one_key`` gives the width), the block
    count from the ``blocks.i.`` keys; a head for features of another width is refused."""
    if "proj_in.weight" in state:
        inner, width = state["proj_in.weight"].shape
    elif ratio_one_key in state:
        inner = width = state[ratio_one_key].shape[0]
    else:
        raise MigmError(f"not a {name} head: it has neither proj_in.weight nor {ratio_one_key}")
    if width != backbone.width:
        raise MigmError(f"this head is for features of width {width}; the model's are {backbone.width} "
                        "(a head for another base model)")
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    return int(width), round(width / inner), max(blocks) + 1 if blocks else 0


def check_keys(state: dict[str, torch.Tensor], head: ShortcutHead, path) -> None:
    own = head.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise MigmError(f"{path} lacks the key {missing[0]!r} of a {head.config.architecture} head "
                        f"({len(missing)} missing); it is a head of another architecture or size")
    if unexpected:
        raise MigmError(f"{path} has the key {unexpected[0]!r}, which a {head.config.architecture} head does not "
                        f"({len(unexpected)} unexpected); it is a head of another architecture or size")
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise MigmError(f"{path}: {key} is {tuple(state[key].shape)}, the head built for this model expects "
                            f"{tuple(tensor.shape)}")


def import_head(path: str | Path, model, out: str | Path, heads: int | None = None) -> ShortcutHead:
    """Read a released head for ``model`` (a loaded model), write it to the head folder ``out``, return it.
    ``heads``: the attention heads, which the tensors do not show (default: the family's published number)."""
    architecture = model.head_architecture
    cls = head_class(architecture)
    if cls is ShortcutHead or not hasattr(cls, "config_from_state"):
        raise MigmError(f"the {model.kind} family has no published head architecture to import into; train a head "
                        "instead (migm-shortcut train-head)")
    state = released_state(path)
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise MigmError(f"{path} holds NaN or inf; the file is damaged")
    options = dict(model.head_options)
    if heads:
        options["heads"] = heads
    config = cls.config_from_state(state, model.backbone, options)
    head = ShortcutHead(config)
    check_keys(state, head, path)
    head.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})  # bound to the model by its config
    dtype = next(iter(state.values())).dtype
    head.save_pretrained(out, dtype=dtype if dtype.is_floating_point else torch.float32)
    return head.eval()
