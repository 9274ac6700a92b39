"""The four families, built the same way every time, and each policy's tokens on fixed prompts and seeds.

``python tests/golden_families.py --write`` records the digests in ``tests/golden_tokens.json``;
``test_golden_tokens.py`` checks every family and policy against them, so a refactor that changes
a single sampled token fails.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).parent
GOLDEN = HERE / "golden_tokens.json"
WEIGHTS = HERE.parent / "migm_shortcut" / "weights"
POLICIES = {
    "vanilla": {},
    "shortcut": {"budget": 3},
    "adaptive": {"eps": 2.0},
    "sencache": {"eps": 2.0},
    "mlcache": {"warmup": 0.3, "interval": 3, "recompute": 0.2},
    "fixed": {"interval": 2},
    "hybrid": {"budget": 3, "recompute": 0.2},
}
STEPS = 6


def families(root: Path) -> dict:
    """family -> (model folder or None, load options, prompts)."""
    sys.path.insert(0, str(HERE))
    from test_maskgit import TINY, tiny_maskgit
    from taming_standin import write_taming_vqgan
    from tiny_dimoo import write_tiny_dimoo

    dimoo = write_tiny_dimoo(root / "dimoo")
    maskgit = root / "maskgit"
    (maskgit / "MaskGIT").mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": tiny_maskgit().state_dict(), "iter": 10, "global_epoch": 1},
               maskgit / "MaskGIT" / "MaskGIT_ImageNet_64.pth")
    (maskgit / "MaskGIT" / "config.json").write_text(json.dumps(TINY))
    write_taming_vqgan(maskgit / "VQGAN")
    return {
        "embedded": (None, {}, ["a photo of a sneaker", "a photo of a bag", "a photo of a dress"]),
        "amused-pipeline": (WEIGHTS / "amused_pipeline", {}, ["a photo of a sneaker", "a photo of a shirt", "a photo of a bag"]),
        "dimoo": (dimoo, {"trust_remote_code": True, "height": 64, "width": 64, "prompt_len": 40},
                  ["a red cube", "a photo of a small dog over green hills", "blue sky"]),
        "maskgit": (maskgit, {"trust_remote_code": True}, [0, 3, 4]),
    }


def random_head(backbone, seed: int = 1):
    from migm_shortcut import ShortcutHead

    torch.manual_seed(seed)
    head = ShortcutHead.for_base(backbone, ratio=2, heads=2)
    for p in head.parameters():
        nn.init.normal_(p, std=0.05)
    return head.eval()


def digest(codes: torch.Tensor, full_steps: torch.Tensor) -> str:
    data = codes.to(torch.int64).numpy().tobytes() + full_steps.to(torch.int64).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def family_digests(name: str, folder, options: dict, prompts: list, root: Path) -> dict:
    """policy -> digest of the codes and full-step counts, seeds 11, 12, 13, batch of three."""
    from golden_api import files_for, load, sample

    model = load(folder, options)
    head, calibration = files_for(model, name, root, prompts, STEPS, random_head)
    from migm_shortcut import MigmError

    result = {}
    for policy, params in POLICIES.items():
        try:  # a policy a family cannot run is refused the same way before and after
            result[policy] = digest(*sample(model, policy, params, head, calibration, prompts, [11, 12, 13], STEPS))
        except MigmError as exc:
            result[policy] = f"refused: {str(exc).split(';')[0]}"
    return result


def all_digests(root: Path) -> dict:
    return {name: family_digests(name, *spec, root) for name, spec in families(root).items()}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = all_digests(Path(tmp))
    print(json.dumps(result, indent=1))
    if "--write" in sys.argv:
        GOLDEN.write_text(json.dumps(result, indent=1) + "\n")
