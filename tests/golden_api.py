"""How the golden tests load a family, give it files and sample: the one place that follows the public API."""

from __future__ import annotations

from pathlib import Path

from migm_shortcut import load_model
from migm_shortcut.samplers import MaskedTokenSampler, build_policy, calibrate, policy_class


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
    calibrate(model.backbone, prompts * 2, steps, d.guidance_scale, d.temperature, batch_size=4, seed=5,
              progress=False, rule=model.rule).save(calibration)
    return head, calibration


def sample(model, policy: str, params: dict, head, calibration, prompts, seeds, steps):
    files = {k: v for k, v in (("head", head), ("calibration", calibration)) if k in policy_class(policy).files}
    built = build_policy(policy, model, steps=steps, **files, **params)
    out = MaskedTokenSampler.for_model(model, steps, policy=built).generate(prompts, seeds)
    return out.codes, out.full_steps
