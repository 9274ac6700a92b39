"""How the golden tests load a family, give it files and sample: the one place that follows the public API."""

from __future__ import annotations

from pathlib import Path

from migm_shortcut import load_model
from migm_shortcut.samplers import calibrate, make_policy


def load(folder, options: dict):
    return load_model(folder, **options)


def files_for(model, name: str, root: Path, prompts: list, steps: int, random_head):
    """(head folder, calibration file): the shipped ones where the family has them, else fresh ones."""
    head = model.head_path
    if head is None:
        head = root / f"{name}_head"
        random_head(model.backbone).save_pretrained(head)
    calibration = root / f"{name}_calibration.json"
    d = model.defaults
    calibrate(model.backbone, prompts * 2, steps, d["guidance_scale"], d["temperature"], batch_size=4, seed=5,
              progress=False, rule=model.rule).save(calibration)
    return head, calibration


def sample(model, policy: str, params: dict, head, calibration, prompts, seeds, steps):
    files = {}
    if policy in ("shortcut", "adaptive", "hybrid"):
        files["head"] = head
    if policy in ("sencache", "adaptive"):
        files["calibration"] = calibration
    out = model.sampler(steps, policy=make_policy(policy, **params, **files)).generate(prompts, seeds)
    return out.codes, out.full_steps
