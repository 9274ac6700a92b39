"""``migm-shortcut demo``: every requested method on the same prompts and seeds, side by side in one
labelled grid, with each one's measured sampling time, speedup over vanilla and (where the model can
judge it) prompt accuracy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from migm_shortcut.errors import MigmError
from migm_shortcut.samplers import POLICIES, POLICY_FILES, MaskedTokenSampler, build_policy, policy_files, policy_parameters


def generate_batched(model, prompts: Sequence, seeds: Sequence[int], num_steps: int, guidance_scale: float,
                     temperature: float, batch_size: int, policy=None, desc: str = "generating"):
    """Images for every (prompt, seed), batch by batch; returns images, loop seconds, full steps per image."""
    images, full_steps, loop_seconds = [], [], 0.0
    sampler = MaskedTokenSampler.for_model(model, num_steps, guidance_scale, temperature, policy)
    for i in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        out = sampler.generate(prompts[i : i + batch_size], seeds[i : i + batch_size])
        loop_seconds += out.loop_seconds
        full_steps.append(out.full_steps)
        images.append(model.decode(out.codes))
    return torch.cat(images), loop_seconds, torch.cat(full_steps)


def sample_to_folder(model, prompts: Sequence, per_prompt: int, seed: int, num_steps: int, guidance_scale: float,
                     temperature: float, batch_size: int, policy, out_dir: Path, grid: str | None = None,
                     run_info: dict | None = None, resume: bool = False) -> dict:
    """``migm-shortcut sample``: ``per_prompt`` images of each prompt (seeds ``seed, seed + 1, ...``) as PNGs
    in ``out_dir``, an optional labelled grid, and ``run.json`` with the settings and measured loop time.

    Under torchrun every process samples whole batches of the one-process run, dealt round-robin, and
    writes them under their global numbers, so the folder is the one a single process writes (every
    image has its own seed). ``resume``: images already in the folder from the same settings
    (``sample.json``) are kept, the rest sampled; a folder of other settings is refused."""
    from migm_shortcut.distributed import gather_objects, my_batches, rank_and_world
    from migm_shortcut.images import load_pngs, save_grid, save_pngs
    from migm_shortcut.io import read_json, write_json

    rank, world = rank_and_world()
    all_prompts = [p for p in prompts for _ in range(per_prompt)]
    seeds = [seed + i for i in range(len(all_prompts))]
    out_dir = Path(out_dir)
    settings = {"prompts": [str(p) for p in prompts], "per_prompt": per_prompt, "seed": seed, "steps": num_steps,
                "guidance_scale": guidance_scale, "temperature": temperature, "policy_params": policy.describe(),
                "model": (run_info or {}).get("model")}
    marker = out_dir / "sample.json"
    if resume and marker.is_file() and read_json(marker) != settings:
        raise MigmError(f"{out_dir} holds images of other settings ({marker}); use another --out-dir or drop --resume")
    gather_objects(None)  # every rank has checked the folder before any writes to it
    if rank == 0:
        write_json(marker, settings)
    # A resumed batch is sampled whole again, so its samples keep their batch mates.
    missing = lambda index: [i for i in index if not (resume and (out_dir / f"{i:06d}.png").is_file())]  # noqa: E731
    mine = [index for index in my_batches(len(all_prompts), batch_size) if missing(index)]
    loop_seconds, full_steps = 0.0, {}
    sampler = MaskedTokenSampler.for_model(model, num_steps, guidance_scale, temperature, policy)
    for index in tqdm(mine, desc=f"sampling (rank {rank})" if world > 1 else "sampling", unit="batch", disable=not mine):
        out = sampler.generate([all_prompts[i] for i in index], [seeds[i] for i in index])
        loop_seconds += out.loop_seconds
        todo = set(missing(index))
        for i, image, paid in zip(index, model.decode(out.codes), out.full_steps.tolist()):
            if i in todo:
                save_pngs(image[None], out_dir, start=i)
                full_steps[i] = int(paid)
    shares = gather_objects({"loop_seconds": loop_seconds, "full_steps": full_steps})
    if rank != 0:
        return {}
    paid = {i: n for share in shares for i, n in share["full_steps"].items()}
    if resume and (out_dir / "run.json").is_file():  # images kept from an earlier run of these settings
        earlier = read_json(out_dir / "run.json").get("full_steps", [])
        paid = {**{i: n for i, n in enumerate(earlier) if n is not None}, **paid}
    loops = [share["loop_seconds"] for share in shares]
    sampled = sum(len(share["full_steps"]) for share in shares)
    if grid:
        rows = [load_pngs(out_dir, range(i * per_prompt, i * per_prompt + min(per_prompt, 16)))
                for i in range(min(len(prompts), 20))]
        save_grid(rows, [str(p) for p in prompts[:20]], grid)
    counts = [paid.get(i) for i in range(len(all_prompts))]
    record = {
        "prompts": list(prompts), "per_prompt": per_prompt, "num_images": len(all_prompts), "steps": num_steps,
        "seed": seed, "policy": policy.describe()["policy"], "policy_params": policy.describe(),
        "guidance_scale": guidance_scale, "temperature": temperature, "batch_size": batch_size, "processes": world,
        "images_sampled_now": sampled, "loop_seconds": round(sum(loops), 4),
        "loop_seconds_per_image": round(sum(loops) / max(sampled, 1), 5),
        # across processes: the images sampled now over the slowest process's loop time
        "throughput_images_per_s": round(sampled / max(max(loops), 1e-9), 3) if sampled else None,
        "mean_full_steps": round(sum(paid.values()) / max(len(paid), 1), 3),
        # image i (seed + i) paid for full_steps[i] backbone passes (a sample-dependent policy varies them;
        # None: an image kept on --resume from a run that recorded none)
        "full_steps": counts, **(run_info or {}),
    }
    write_json(out_dir / "run.json", record)
    return record


def method_label(policy) -> str:
    """Short label of a policy's settings for grids and printouts, e.g. ``sencache eps=0.3 K=3``."""
    short = {"budget": "B", "max_reuse": "K", "final_full": "final", "interval": "k", "recompute": "r",
             "warmup": "w", "early_eps": "eps0", "shortcut_guidance": "s_short"}
    shown = [f"{short.get(k, k)}={v}" for k, v in policy.describe().items() if k != "policy" and v not in (None, False)]
    return " ".join([policy.name] + shown)


def demo_methods(model, methods: list[str] | None, steps: int, settings: dict) -> list[tuple[str, object]]:
    """(label, policy) of every method the demo compares: ``methods`` (vanilla first), else every
    registered policy the model has the files for (its head, its calibration). Each policy takes its
    declared parameters from ``settings`` (the CLI's flag values; unset ones keep its defaults)."""
    given = {key: settings.get(key) for key in POLICY_FILES}
    if methods is None:
        methods = [name for name in POLICIES
                   if all(path is not None for path in policy_files(name, model, **given).values())]
    if [m for m in methods if m not in POLICIES] or not methods or methods[0] != "vanilla":
        raise MigmError(f"--methods must start with vanilla and name policies from {', '.join(POLICIES)}; "
                        f"got {','.join(methods)!r}")
    chosen = []
    for name in methods:
        try:
            policy = build_policy(name, model, steps=steps, **{k: settings.get(k) for k in policy_parameters(name)})
        except MigmError as exc:
            raise MigmError(f"cannot run {name}: {exc} (or leave it out of --methods)") from None
        chosen.append((method_label(policy), policy))
    return chosen


def run_demo(model, distinct_prompts: Sequence, per_prompt: int, seed: int, methods: list[tuple[str, object]],
             num_steps: int, guidance_scale: float, temperature: float, batch_size: int, out_dir: Path,
             log=print) -> Path:
    """Sample ``per_prompt`` images of each prompt with every (label, policy), the first being vanilla;
    write ``out_dir/demo_grid.png`` (a row per prompt and method) and print the measured speedups."""
    from migm_shortcut.images import save_comparison_grid

    prompts = [p for p in distinct_prompts for _ in range(per_prompt)]
    seeds = [seed + i for i in range(len(prompts))]
    start = time.perf_counter()
    results = []
    for name, policy in methods:
        MaskedTokenSampler.for_model(model, num_steps, guidance_scale, temperature, policy).generate(prompts[:2], seeds[:2])  # warm-up
        images, loop_seconds, full_steps = generate_batched(model, prompts, seeds, num_steps, guidance_scale,
                                                            temperature, batch_size, policy, desc=name)
        results.append((name, images, loop_seconds, full_steps.float().mean().item()))
    vanilla_seconds = results[0][2]
    # One row per method, one column per prompt: the same seeds in every row, so rows compare cell by cell.
    cells = [[images[c * per_prompt : (c + 1) * per_prompt] for c in range(len(distinct_prompts))]
             for _, images, _, _ in results]
    labels = [f"{name} ({1000 * sec / len(prompts):.0f} ms/img, {vanilla_seconds / sec:.2f}x, {full:.1f} full steps)"
              for name, _, sec, full in results]
    title = (f"{model.kind} model, N={num_steps}, seeds {seed}..{seed + len(prompts) - 1}: each row one method on the "
             "same prompts and seeds; speedups are sampling-loop time against vanilla")
    path = save_comparison_grid(cells, labels, [str(p) for p in distinct_prompts], Path(out_dir) / "demo_grid.png", title)
    log(f"demo grid: {path}")
    for name, images, seconds, full in results:
        accuracy = (f", prompt accuracy {model.judge.accuracy(images, prompts):.1%}"
                    if model.judge is not None else "")
        log(f"{name:>22}: {len(prompts)} images, sampling loop {seconds:.1f} s ({1000 * seconds / len(prompts):.0f} ms/image, "
            f"{full:.1f} full steps), speedup {vanilla_seconds / seconds:.2f}x over vanilla{accuracy}")
    judged = " (accuracy by the model's judge)" if model.judge is not None else ""
    log(f"total {time.perf_counter() - start:.1f} s (same prompts and seeds for every method){judged}")
    return path
