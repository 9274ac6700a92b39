"""The ``migm-shortcut`` command line.

Every sub-command turns user mistakes into one line on stderr and exit status 2
(``MigmError``); nothing else is caught, so real bugs still show a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from migm_shortcut import __version__
from .checks import check_sampling
from .embedded.data import DEFAULT_DATASET
from .eval.sizes import COST_CONFIGS, LOOP_SIZES
from .errors import MigmError
from .interface import HEAD_FOLDER
from migm_shortcut.io import write_json
from .samplers import POLICIES, POLICY_FILES, build_policy, policy_parameters


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {value}")
        return value

    return parse


def _finite(text: str) -> float:
    """A float flag: NaN and infinity are refused (they would reach run.json and the sampler)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _step_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected step indices separated by commas, like 0,7,10,13; got {text!r}")


def _budget_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budgets must be whole numbers separated by commas, like 4,6,8; got {text!r}") from None


def _add_model_args(p: argparse.ArgumentParser, device: str = "cpu") -> None:
    p.add_argument("--model", "--weights", dest="model", default=None,
                   help="model folder: a Lumina-DiMOO checkpoint, a diffusers AmusedPipeline folder, a MaskGIT-pytorch "
                        "folder (MaskGIT/, VQGAN/) or a migm-shortcut weights folder (default: the embedded model)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model folder's own Python code to run (transformers remote code): code execution")
    p.add_argument("--height", type=_positive("--height"), help="image height in pixels (Lumina-DiMOO; default 1024)")
    p.add_argument("--width", type=_positive("--width"), help="image width in pixels (Lumina-DiMOO; default 1024)")
    p.add_argument("--max-prompt-tokens", type=_positive("--max-prompt-tokens"),
                   help="longest prompt in tokens (Lumina-DiMOO; default 256)")
    p.add_argument("--model-code", metavar="DIR",
                   help="Lumina-DiMOO: the model code to load the checkpoint with (Lumina-DiMOO's model/ package) when "
                        "the folder ships none, as the downloaded one does; runs that code (needs --trust-remote-code)")
    p.add_argument("--image-size", type=_positive("--image-size"),
                   help="MaskGIT: which released checkpoint (MaskGIT/*_SIZE.pth) when the folder holds several")
    p.add_argument("--checkpoint", metavar="FILE", help="MaskGIT: the checkpoint file to load (a path, or a name in MaskGIT/)")
    p.add_argument("--choice-temperature", type=_finite,
                   help="MaskGIT's rule: the Gumbel (choice) temperature r_temp (default: the published one for the "
                        "checkpoint's size, 4.5 at 256, 7 at 512)")
    p.add_argument("--schedule", help="MaskGIT's rule: the unmasking schedule (arccos, cosine, linear, square, root)")
    p.add_argument("--class-names", help="class-conditional models (MaskGIT): a file with one class name per line, "
                                         "so prompts may be names as well as ids")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="model weights dtype (default: bfloat16 for Lumina-DiMOO on CUDA, else float32)")
    p.add_argument("--device", default=device)


def load_options(args: argparse.Namespace) -> dict:
    """``load_model``'s keyword arguments from the model flags (``_add_model_args``), device aside."""
    class_names = read_prompt_lines(args.class_names) if args.class_names else None
    return {"dtype": args.dtype, "trust_remote_code": args.trust_remote_code, "height": args.height,
            "width": args.width, "prompt_len": args.max_prompt_tokens, "class_names": class_names,
            "model_code": args.model_code, "image_size": args.image_size, "checkpoint": args.checkpoint,
            "rule_options": rule_options(args)}


def load_model_from_args(args: argparse.Namespace, device: str | None = None):
    from migm_shortcut.registry import load_model

    return load_model(args.model, device=device or args.device, **load_options(args))


def run_load_options(args: argparse.Namespace) -> dict:
    """The load options a run used, as run.json records them (the class-names file by its path)."""
    options = {k: v for k, v in load_options(args).items() if v not in (None, False, {}) and k != "class_names"}
    return options | ({"class_names": args.class_names} if args.class_names else {})


def rule_options(args: argparse.Namespace) -> dict:
    """Settings of the model's sampling rule given as flags (MaskGIT's choice temperature and schedule)."""
    given = {"choice_temperature": args.choice_temperature, "schedule": args.schedule}
    return {k: v for k, v in given.items() if v is not None}


def fill_sampling_defaults(args: argparse.Namespace, model) -> None:
    """Steps, CFG scale and temperature left unset take the model's own defaults."""
    d = model.defaults
    args.steps = d.num_steps if args.steps is None else args.steps
    args.guidance_scale = d.guidance_scale if args.guidance_scale is None else args.guidance_scale
    args.temperature = d.temperature if args.temperature is None else args.temperature


def _flag_type(kind):
    return {int: int, float: _finite, "steps": _step_list}[kind]


def _add_policy_args(p: argparse.ArgumentParser) -> None:
    """One flag per parameter any policy declares (policies sharing a name share the flag), and one
    per file kind: generated from the policies' ``Settings``, so a new policy needs no CLI change."""
    flags: dict[str, dict] = {}
    for name, cls in POLICIES.items():
        for f in dataclasses.fields(cls.Settings):
            entry = flags.setdefault(f.name, {"meta": f.metadata, "users": []})
            entry["users"].append(name)
    for key, entry in flags.items():
        meta, users = entry["meta"], "/".join(entry["users"])
        flag = "--" + (meta["flag"] or key.replace("_", "-"))
        if meta["kind"] is bool:
            p.add_argument(flag, dest=key, action="store_true", default=None, help=f"{users}: {meta['help']}")
        else:
            p.add_argument(flag, dest=key, type=_flag_type(meta["kind"]), help=f"{users}: {meta['help']}")
    for key, what in POLICY_FILES.items():
        users = "/".join(name for name, cls in POLICIES.items() if key in cls.files)
        p.add_argument(f"--{key}", default=None, help=f"{users}: {what}")


def _add_sampling_args(p: argparse.ArgumentParser, with_policy: bool = True) -> None:
    p.add_argument("--steps", type=_positive("--steps"), help="number of sampling steps N (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED + i")
    p.add_argument("--batch-size", type=_positive("--batch-size"), default=32)
    p.add_argument("--guidance-scale", type=_finite, help="CFG scale s: (1+s)c - s u (default: the model's)")
    p.add_argument("--temperature", type=_finite, help="sampling temperature (default: the model's)")
    if with_policy:  # the demo compares several policies (--methods); a single --policy would be ignored there
        p.add_argument("--policy", default="vanilla",
                       help="step policy (default vanilla): " + ", ".join(POLICY_CHOICES))
    _add_policy_args(p)
    _add_model_args(p)


def read_prompt_lines(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise MigmError(f"prompts file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _read_prompts(args: argparse.Namespace) -> list[str]:
    prompts: list[str] = list(args.prompt or [])
    if args.prompts_file:
        prompts += read_prompt_lines(args.prompts_file)
    if not prompts:
        raise MigmError("no prompts: pass --prompt TEXT or --prompts-file FILE (one prompt per line)")
    return prompts


POLICY_CHOICES = tuple(POLICIES)  # registration order: vanilla first


def policy_from_args(args: argparse.Namespace, model, name: str | None = None):
    """The step policy the sampling flags describe (``name``, else ``--policy``), with the model's own
    head and calibration unless named; bad settings (a head for another model, a budget outside
    1..N) fail here, before any work."""
    name = name or args.policy
    params = {key: vars(args)[key] for key in policy_parameters(name)}  # an unknown name: one line listing them
    return build_policy(name, model, steps=args.steps, **params)


def cmd_sample(args: argparse.Namespace) -> None:
    from migm_shortcut.distributed import finish_distributed, init_distributed

    rank, world, device = init_distributed(args.device)
    model = load_model_from_args(args, device=str(device))
    prompts = model.parse_prompts(_read_prompts(args))
    fill_sampling_defaults(args, model)
    for p in prompts:  # reject bad prompts before any work or any file
        model.backbone.layout.encode_prompt(p)
    policy = policy_from_args(args, model)
    check_sampling(args.steps, args.guidance_scale, args.temperature)
    from migm_shortcut.eval.demo import sample_to_folder

    record = sample_to_folder(model, prompts, args.per_prompt, args.seed, args.steps, args.guidance_scale,
                              args.temperature, args.batch_size, policy, Path(args.out_dir), args.grid,
                              {"model": str(args.model or "embedded"), "model_kind": model.kind,
                               "load_options": run_load_options(args),
                               "checkpoint": None if model.checkpoint is None else str(model.checkpoint),
                               "rule": model.rule.describe(), "device": args.device, "version": __version__},
                              resume=args.resume)
    if rank == 0:
        print(f"wrote {record['images_sampled_now']} of {record['num_images']} images to {args.out_dir} "
              f"({record['loop_seconds']:.1f} s sampling loop in {world} process(es))")
    finish_distributed()


def cmd_demo(args: argparse.Namespace) -> None:
    """Every requested method on the same prompts and seeds: a labelled grid and the measured speedups."""
    model = load_model_from_args(args)
    fill_sampling_defaults(args, model)
    if args.prompt or args.prompts_file:
        distinct = model.parse_prompts(_read_prompts(args))
    elif model.demo_prompts() is not None:
        distinct = model.demo_prompts()
    else:
        raise MigmError("this model has no built-in demo prompts; pass --prompt TEXT or --prompts-file FILE")
    from migm_shortcut.eval.demo import demo_methods, run_demo

    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    run_demo(model, distinct, args.per_prompt, args.seed, demo_methods(model, methods, args.steps, vars(args)), args.steps,
             args.guidance_scale, args.temperature, args.batch_size, Path(args.out_dir))


def cmd_train_base(args: argparse.Namespace) -> None:
    from migm_shortcut.train.base import BaseTrainConfig, train_base

    cfg = BaseTrainConfig(out=args.out, data=args.data, stages=tuple(args.stages.split(",")), device=args.device,
                          seed=args.seed, resume=args.resume, architecture=args.architecture,
                          init_backbone=args.init_backbone, compile=args.compile, continue_from=args.continue_from)
    for name in ("classifier_steps", "vq_steps", "backbone_steps", "backbone_lr", "backbone_batch_size",
                 "backbone_width", "backbone_depth", "backbone_warmup", "checkpoint_every", "curve_images", "stop_at"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    metrics = train_base(cfg)
    print(f"weights and metrics written to {args.out}: " + ", ".join(metrics))


def cmd_collect(args: argparse.Namespace) -> None:
    from migm_shortcut.distributed import finish_distributed, init_distributed
    from migm_shortcut.train.common import RunLog
    from migm_shortcut.train.trajectories import CollectConfig, collect

    rank, world, device = init_distributed(args.device)
    model = load_model_from_args(args, device=str(device))
    fill_sampling_defaults(args, model)
    # As in `sample`: the model's own head drives on-policy collection unless one is named.
    student_head = args.student_head
    if student_head is None and args.student_budget is not None and model.head_path is not None:
        student_head = str(model.head_path)
    prompts = model.parse_prompts(read_prompt_lines(args.prompts_file)) if args.prompts_file else None
    cfg = CollectConfig(num=args.num, steps=args.steps, guidance_scale=args.guidance_scale, temperature=args.temperature,
                        shard_size=args.shard_size, batch_size=args.batch_size, seed=args.seed,
                        student_budget=args.student_budget, student_head=student_head, prompts=prompts, rule=model.rule)
    log = RunLog(Path(args.out) / ("collect.log" if rank == 0 else f"collect.rank{rank}.log"), echo=False)
    start = time.perf_counter()
    summary = collect(model.backbone, cfg, args.out, rank=rank, world_size=world, log=log,
                      model_prompts=model.trajectory_prompt)
    seconds = time.perf_counter() - start
    log(f"collect: rank {rank} done in {seconds:.1f} s: {summary}")
    finish_distributed()
    print(f"rank {rank}: {summary['shards_written']} shard(s) written, {summary['shards_skipped']} already there, "
          f"{seconds:.1f} s -> {args.out}")


def cmd_train_head(args: argparse.Namespace) -> None:
    import dataclasses

    from migm_shortcut.distributed import finish_distributed, init_distributed
    from migm_shortcut.train.head import HeadTrainConfig, train_head, validation_means

    fields = {f.name for f in dataclasses.fields(HeadTrainConfig)}
    cfg = HeadTrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    cfg.check()  # bad settings fail before the model loads
    _, _, device = init_distributed(cfg.device)
    model = load_model_from_args(args, device=str(device))
    if args.prompts_file:
        cfg.prompts = model.parse_prompts(read_prompt_lines(args.prompts_file))
    cfg.rule = model.rule
    # online mode's teacher samples with the model's own settings unless flags name others
    for flag, value in (("teacher_steps", model.defaults.num_steps), ("guidance_scale", model.defaults.guidance_scale),
                        ("temperature", model.defaults.temperature)):
        if vars(args)[flag] is None:
            setattr(cfg, flag, value)
    if args.architecture is None:  # the family's own head architecture, at its published sizes, unless named
        cfg.architecture = model.head_architecture
        for key, value in model.head_options.items():
            if vars(args).get(key) is None:
                setattr(cfg, key, value)
    result = train_head(cfg, backbone=model.backbone, model_prompts=model.trajectory_prompt)
    if result:
        m = validation_means(result["validation"])
        print(f"head saved to {Path(args.out) / HEAD_FOLDER}; mean validation cosine {m['cos_head']:.4f} "
              f"(copy baseline {m['cos_copy']:.4f}), guided KL {m['kl_head']:.4f} (copy {m['kl_copy']:.4f}); "
              f"beats copy at every step: "
              f"{result['beats_copy_at_every_step']}")
    finish_distributed()


def cmd_validate_head(args: argparse.Namespace) -> None:
    from migm_shortcut.samplers import load_head
    from migm_shortcut.train.head import evaluate_head, format_position_errors, format_validation

    model = load_model_from_args(args)
    head_path = args.head or model.head_path
    result = evaluate_head(load_head(head_path), model.backbone, args.data, args.split, args.num, args.device,
                           rollout=args.rollout)
    rolled = f", head rolled {args.rollout} steps (step k: scored against step k+{args.rollout})" if args.rollout > 1 else ""
    print(f"{result['split']} trajectories of {args.data}: {result['trajectories']}{rolled}\n"
          f"{format_validation(result['rows'], with_mean=True)}")
    if args.by_position:
        print(format_position_errors(result["rows"]))
    if args.out:
        write_json(args.out, {"head": str(head_path), **result})
        print(f"wrote {args.out}")


def cmd_import_head(args: argparse.Namespace) -> None:
    from .released_heads import import_head

    if not Path(args.file).is_file():
        raise MigmError(f"head file not found: {args.file}")
    model = load_model_from_args(args)
    head = import_head(args.file, model, args.out, heads=args.heads)
    print(f"imported a {head.config.architecture} head ({head.num_parameters() / 1e6:.2f}M parameters, "
          f"{head.config.num_blocks} block(s), bottleneck {head.config.ratio}, {head.config.heads} heads) for this "
          f"{model.kind} model into {args.out}")


def cmd_calibrate(args: argparse.Namespace) -> None:
    from migm_shortcut.distributed import finish_distributed, init_distributed
    from migm_shortcut.samplers import calibrate

    rank, world, device = init_distributed(args.device)  # under torchrun: each process runs a share
    model = load_model_from_args(args, device=str(device))
    fill_sampling_defaults(args, model)
    lines = None
    if args.prompts_file:
        lines = model.parse_prompts(read_prompt_lines(args.prompts_file))
        if not lines:
            raise MigmError(f"{args.prompts_file} holds no prompts")
    prompts = model.require_prompts(lines, args.num)
    check_sampling(args.steps, args.guidance_scale, args.temperature)
    start = time.perf_counter()
    table = calibrate(model.backbone, prompts, args.steps, args.guidance_scale, args.temperature, args.batch_size,
                      args.seed, rule=model.rule)
    if rank == 0:
        table.save(args.out)
        shown = ", ".join(f"{v:.2f}" for v in table.sensitivity)
        print(f"sensitivity J_k (N={args.steps}, {args.num} samples, {world} process(es), "
              f"{time.perf_counter() - start:.0f} s): {shown}\nwrote {args.out}")
    finish_distributed()


def cmd_sweep(args: argparse.Namespace) -> None:
    from migm_shortcut.eval.report import markdown_for
    from migm_shortcut.eval.sweep import default_config_path, run_sweep

    from migm_shortcut.distributed import finish_distributed, init_distributed

    config = args.config or default_config_path()
    prompts = read_prompt_lines(args.prompts_file) if args.prompts_file else None
    rank, world, device = init_distributed(args.device)  # under torchrun: each process samples and scores a share
    result = run_sweep(config, args.out, quick=args.quick, model=args.model, device=str(device),
                       per_class=args.per_class, resume=args.resume, reuse_from=args.reuse_from, prompts=prompts,
                       per_prompt=args.per_prompt, load_options=load_options(args), reference=args.reference,
                       clip=args.clip, inception_weights=args.inception_weights, image_reward=args.image_reward,
                       command=args.command_line)
    if rank == 0:
        print(markdown_for(result))
        print(f"wrote {args.out}/results.json, results.md, pareto.png in {result['wall_clock_s']:.0f} s "
              f"({world} process(es))")
    finish_distributed()


def cmd_bench_cost(args: argparse.Namespace) -> None:
    from migm_shortcut.eval.cost import bench_cost, markdown_table

    configs = [c for c in args.config.split(",") if c] if args.config is not None else (
        [] if args.model else list(COST_CONFIGS))
    model = head = prompt = None
    if args.model:
        from migm_shortcut.samplers import load_head

        device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        model = load_model_from_args(args, device=device)
        head_path = args.head or model.head_path
        head = load_head(head_path) if head_path else None
        prompt = (model.demo_prompts() or [args.prompt])[0]
    results = bench_cost(configs, device=args.device, batch=args.batch_size, num_steps=args.steps, budgets=args.budgets,
                         repeats=args.repeats, model=model, head=head, prompt=prompt,
                         architectures=tuple(a for a in args.head_architecture.split(",") if a))
    print(markdown_table(results))
    if args.out:
        write_json(Path(args.out), {"results": results})
        print(f"wrote {args.out}")


def cmd_bench_loop(args: argparse.Namespace) -> None:
    from migm_shortcut.eval.loop import bench_loop, markdown_loop_table

    results = bench_loop([s for s in args.sizes.split(",") if s], device=args.device, num_steps=args.steps,
                         budgets=args.budgets, repeats=args.repeats, batch=args.batch_size, compile_step=args.compile_step)
    print(markdown_loop_table(results))
    if args.out:
        write_json(Path(args.out), {"results": results, "version": __version__})
        print(f"wrote {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from migm_shortcut.eval.report import markdown_for
    from migm_shortcut.io import read_json

    if not args.frontier:
        if args.price_at:
            raise MigmError("report --price-at prices a sweep's frontier; add --frontier")
        if args.out:
            raise MigmError("report --out writes the --frontier summary; add --frontier, or drop --out")
        print("\n".join(markdown_for(read_json(path), str(path)) for path in args.results), end="")
        return
    from migm_shortcut.eval.frontier import frontier, markdown_frontier

    if args.out and len(args.results) != 1:
        raise MigmError("report --frontier --out summarises one sweep; give one results file")
    prices = None
    if args.price_at:
        from migm_shortcut.eval.projection import cost_ratios

        prices = cost_ratios(read_json(args.price_at))
    summaries = [frontier(read_json(path), args.quality, args.min_speedup, args.tolerance, prices=prices)
                 for path in args.results]
    if args.out:
        write_json(args.out, dict(summaries[0], source=str(args.results[0])))
    print("\n".join(markdown_frontier(s) for s in summaries), end="")


def cmd_fid(args: argparse.Namespace) -> None:
    from migm_shortcut.eval.quality import score_image_folder

    result = score_image_folder(args.images, lambda: load_model_from_args(args), args.reference, args.reference_size,
                                args.backend, args.inception_weights)
    if args.out:
        write_json(args.out, result)
    if result["backend"] == "clean-fid":
        print(f"clean-fid FID: {result['fid']:.3f} (against {result['reference']})")
    else:
        domain = ("" if result["domain_fid"] is None else
                  f", domain FID {result['domain_fid']:.3f} (the model's judge's features, not comparable with papers)")
        extra = "".join(f", {name} {result[key]:.3f}" for key, name in (("precision", "precision"), ("recall", "recall"),
                                                                        ("inception_score", "Inception Score"))
                        if result.get(key) is not None)
        print(f"{result['num_images']} images vs {result['reference']} ({result['reference_images']}): FID "
              f"{result['fid']:.3f}{domain}{extra}")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, where to look) and exit status 2;
    ``--help`` is unchanged."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="migm-shortcut", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="generate images from prompts")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts-file", help="text file, one prompt per line")
    p.add_argument("--per-prompt", type=_positive("--per-prompt"), default=1)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--grid", help="also write a labelled grid PNG here")
    p.add_argument("--resume", action="store_true", help="keep the images already in --out-dir (same settings), sample the rest")
    _add_sampling_args(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("demo", help="vanilla vs every acceleration policy on the same prompts and seeds (grid + speedups)")
    p.add_argument("--out-dir", default="outputs/demo")
    p.add_argument("--methods", default=None,
                   help="comma-separated policies to compare, vanilla first (each with its default settings or the "
                        "flags); default: every policy the model has a head and calibration for")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable; default: the model's demo prompts)")
    p.add_argument("--prompts-file", help="text file, one prompt per line")
    p.add_argument("--per-prompt", "--per-class", dest="per_prompt", type=_positive("--per-prompt"), default=8,
                   help="images per prompt (one grid row each)")
    _add_sampling_args(p, with_policy=False)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train-base", help="retrain the embedded tokenizer, classifier and backbone from scratch")
    p.add_argument("--out", required=True, help="output folder (weights, metrics.json, train.log, checkpoints/)")
    p.add_argument("--data", default=DEFAULT_DATASET, help=f"{DEFAULT_DATASET!r} (the embedded model's data), a folder "
                                                          "of images, or an .npz")
    p.add_argument("--stages", default="classifier,vq,backbone")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--classifier-steps", type=_positive("--classifier-steps"))
    p.add_argument("--vq-steps", type=_positive("--vq-steps"))
    p.add_argument("--backbone-steps", type=_positive("--backbone-steps"))
    p.add_argument("--backbone-lr", type=_finite)
    p.add_argument("--backbone-batch-size", type=_positive("--backbone-batch-size"))
    p.add_argument("--backbone-width", type=_positive("--backbone-width"))
    p.add_argument("--backbone-depth", type=_positive("--backbone-depth"))
    p.add_argument("--backbone-warmup", type=_positive("--backbone-warmup"), help="LR warm-up steps (default 150)")
    p.add_argument("--init-backbone", help="warm start: a backbone (or weights) folder to start from; its shape is kept")
    p.add_argument("--continue-from", metavar="MILESTONE",
                   help="continue a long run from a milestone folder (scripts/base_milestone.py) when --out has no "
                        "checkpoint: its weights, step and clock, fresh optimizer state")
    p.add_argument("--curve-images", type=_positive("--curve-images"),
                   help="after every checkpoint, held-out masked-token CE on this many test images, to curve.jsonl")
    p.add_argument("--checkpoint-every", type=_positive("--checkpoint-every"))
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone forward while training")
    p.add_argument("--stop-at", type=_positive("--stop-at"),
                   help="end this run at that step (checkpointed); --resume later continues the same schedule")
    p.add_argument("--architecture", default="mini-dimoo", choices=["mini-dimoo", "amused", "amused-pipeline"],
                   help="backbone: the mini Lumina-DiMOO, or a diffusers UVit2DModel (aMUSEd)")
    p.set_defaults(func=cmd_train_base)

    p = sub.add_parser("collect", help="record teacher trajectories (features, tokens) for head training: vanilla, or on-policy "
                            "with --student-budget")
    p.add_argument("--num", type=_positive("--num"), required=True, help="number of trajectories")
    p.add_argument("--out", required=True, help="folder for the shards (resumable: rerun to finish)")
    p.add_argument("--steps", type=_positive("--steps"), help="teacher steps N (default: the model's)")
    p.add_argument("--shard-size", type=_positive("--shard-size"), default=16)
    p.add_argument("--batch-size", type=_positive("--batch-size"), default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance-scale", type=_finite)
    p.add_argument("--temperature", type=_finite)
    p.add_argument("--prompts-file", help="prompts to cycle through, one per line (default: the model's own, if any)")
    p.add_argument("--student-budget", type=_positive("--student-budget"), default=None,
                   help="on-policy trajectories: the shortcut sampler at this budget picks the tokens "
                        "(features are still the backbone's at every step)")
    p.add_argument("--student-head", default=None,
                   help="the head of that sampler (default: the model's shortcut_head/)")
    _add_model_args(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("train-head", help="train a shortcut head on collected (or online) trajectories")
    p.add_argument("--data", help="trajectory folder from `collect`")
    p.add_argument("--online", action="store_true", help="generate trajectories on the fly instead (no disk)")
    p.add_argument("--out", required=True, help="output folder (shortcut_head/, metrics.json, validation.json, train.log)")
    p.add_argument("--prompts-file", help="online: prompts to cycle through, one per line (default: the model's own, if any)")
    for name, kind in (("steps", int), ("batch-size", int), ("lr", _finite), ("weight-decay", _finite), ("warmup", int),
                       ("ema-decay", _finite), ("kl-weight", _finite), ("kl-temperature", _finite), ("rollout", int),
                       ("ratio", int), ("heads", int), ("mlp-ratio", _finite), ("num-blocks", int),
                       ("val-trajectories", int), ("val-every", int), ("checkpoint-every", int), ("seed", int),
                       ("teacher-steps", int), ("guidance-scale", _finite), ("temperature", _finite),
                       ("online-trajectories", int), ("online-steps-per-round", int), ("architecture", str),
                       ("mlp-hidden", int), ("rope-theta", _finite), ("norm-eps", _finite)):
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--masked-only", action="store_true", help="MSE only at image positions still masked")
    p.add_argument("--kl-target", choices=("branches", "guided"),
                   help="KL per CFG branch (default) or of the guided logits the sampler draws from")
    p.add_argument("--direct-token-path", action="store_true", default=None,
                   help="generic head: also add each new token's embedding at its own position (starts at zero, "
                        "so with --init-head training starts from that head's predictions)")
    p.add_argument("--init-head", help="fine-tune this saved head (its architecture replaces --ratio/--heads/...)")
    p.add_argument("--rebind-init-head", action="store_true", default=None,
                   help="--init-head may be a head of another checkpoint of this model's architecture (a base "
                        "being retrained); the result is bound to this model")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    _add_model_args(p, device="auto")
    p.set_defaults(func=cmd_train_head)

    p = sub.add_parser("validate-head", help="a head vs the copy-previous-features baseline, per step, on collected trajectories")
    p.add_argument("--data", required=True, help="trajectory folder from `collect`")
    p.add_argument("--head", default=None, help="saved head folder (default: the model's shortcut_head/)")
    p.add_argument("--split", choices=("held-out", "train"), default="held-out",
                   help="held-out: the trajectories train-head kept out; train: the first --num it trained on")
    p.add_argument("--num", type=_positive("--num"), default=64, help="trajectories to score (train-head's --val-trajectories)")
    p.add_argument("--rollout", type=_positive("--rollout"), default=1,
                   help="roll the head this many shortcut steps on its own predictions before scoring (copy: as many)")
    p.add_argument("--by-position", action="store_true", help="also print where the error sits: positions committed "
                   "before, committed during the rollout, still masked beside those, and still masked elsewhere")
    p.add_argument("--out", default=None, help="also write the per-step numbers to this JSON file")
    _add_model_args(p)
    p.set_defaults(func=cmd_validate_head)

    p = sub.add_parser("import-head", help="a head the MIGM-Shortcut authors released (.pth) as a head folder for this model")
    p.add_argument("file", help="the released state dict, e.g. MaskGIT-Shortcut/maskgit-shortcut.pth")
    p.add_argument("--out", required=True, help="head folder to write (MODEL/shortcut_head makes it the model's own)")
    p.add_argument("--heads", type=_positive("--heads"), help="attention heads (not in the file; default: the published)")
    _add_model_args(p)
    p.set_defaults(func=cmd_import_head)

    p = sub.add_parser("calibrate", help="per-step sensitivity table for the sencache and adaptive policies")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--num", type=_positive("--num"), default=128, help="vanilla trajectories to average over")
    p.add_argument("--steps", type=_positive("--steps"), help="N (default: the model's)")
    p.add_argument("--guidance-scale", type=_finite)
    p.add_argument("--temperature", type=_finite)
    p.add_argument("--batch-size", type=_positive("--batch-size"), default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts-file", help="prompts to cycle through, one per line (default: the model's own, if any)")
    _add_model_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("sweep", help="quality vs latency for a list of sampler settings (table, JSON, Pareto plot)")
    p.add_argument("--config", help="sweep config JSON, or a shipped protocol: maskgit-512, dimoo-1024 "
                                    "(default: the shipped default_sweep.json)")
    p.add_argument("--out", required=True, help="output folder for results.json, results.md, pareto.png")
    p.add_argument("--quick", action="store_true", help="10 images per class and a 1000-image reference: minutes on 2 cores")
    p.add_argument("--per-class", type=_positive("--per-class"), help="override the config's images per class")
    p.add_argument("--resume", action="store_true",
                   help="reuse the rows already in OUT/results.json that were measured the same way (same head files too)")
    p.add_argument("--reuse-from", action="append", default=[], metavar="RESULTS_JSON",
                   help="also reuse matching rows of another sweep's results.json (repeatable)")
    p.add_argument("--prompts-file", help="sample these prompts (one per line) and report speed only; "
                                          "needed for models without built-in prompts")
    p.add_argument("--per-prompt", type=_positive("--per-prompt"), default=1, help="with --prompts-file: images per prompt")
    p.add_argument("--reference", help="with --prompts-file: Inception FID against this folder of real images")
    p.add_argument("--clip", help="with --prompts-file: CLIPScore with the CLIP model in this local folder (never downloaded)")
    p.add_argument("--inception-weights", metavar="FILE", help="with --reference: also the Inception Score, with the "
                   "classifier of torch-fidelity's weights-inception-2015-12-05-6726825d.pth (never downloaded)")
    p.add_argument("--image-reward", metavar="FOLDER", help="with --prompts-file: ImageReward with ImageReward.pt and "
                   "med_config.json from this folder (pip install 'migm-shortcut[image-reward]'; never downloaded)")
    _add_model_args(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("bench-cost", help="full-step vs shortcut-step time and FLOPs at real model sizes (random weights)")
    p.add_argument("--config", default=None,
                   help=f"comma-separated sizes with random weights: {', '.join(COST_CONFIGS)} "
                        "(default: all, or none with --model)")
    p.add_argument("--head", default=None, help="with --model: its head (default: the model's shortcut_head/, else a fresh one)")
    p.add_argument("--head-architecture", default="generic",
                   help="comma-separated heads to price each size with: generic (this package's) and/or published "
                        "(the size's family's published architecture at the authors' sizes)")
    p.add_argument("--prompt", default="a photo", help="with --model: the prompt the steps are timed on")
    p.add_argument("--batch-size", type=_positive("--batch-size"), default=1, help="images per step (x2 CFG branches)")
    p.add_argument("--steps", type=_positive("--steps"), default=16)
    p.add_argument("--budgets", type=_budget_list, default=(4, 6, 8))
    p.add_argument("--repeats", type=_positive("--repeats"), default=5)
    p.add_argument("--out", default=None, help="also write the results to this JSON file")
    _add_model_args(p, device="auto")
    p.set_defaults(func=cmd_bench_cost)

    p = sub.add_parser("bench-loop", help="the whole sampling loop per image at real sizes: model, head and loop time")
    p.add_argument("--sizes", default=",".join(LOOP_SIZES),
                   help=f"comma-separated: {', '.join(LOOP_SIZES)} (dimoo-stub: DiMOO's grid and codebook, no model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=_positive("--steps"), default=16)
    p.add_argument("--budgets", type=_budget_list, default=(4, 6, 8))
    p.add_argument("--repeats", type=_positive("--repeats"), default=3)
    p.add_argument("--batch-size", type=_positive("--batch-size"), default=1, help="images per generation (times are per image)")
    p.add_argument("--compile-step", action="store_true", help="torch.compile the sampler's per-step sampling math")
    p.add_argument("--out", default=None, help="also write the results to this JSON file")
    p.set_defaults(func=cmd_bench_loop)

    p = sub.add_parser("report", help="the Markdown table of results JSON files (sweep, bench-cost, bench-loop, ...)")
    p.add_argument("results", nargs="+", help="results JSON files")
    p.add_argument("--frontier", action="store_true",
                   help="for a sweep: which method wins where (Pareto front, fastest setting of each method that keeps "
                        "quality, the head against every baseline at --min-speedup or faster)")
    p.add_argument("--quality", default="fid", choices=("fid", "domain_fid"), help="--frontier: the quality column (lower is better)")
    p.add_argument("--min-speedup", type=float, default=2.0, help="--frontier: baselines compared from this speedup up")
    p.add_argument("--tolerance", type=float, default=0.05, help="--frontier: allowed relative quality loss against the reference")
    p.add_argument("--price-at", metavar="BENCH_COST_JSON", help="--frontier: also project every setting's speedup at the "
                   "sizes of this bench-cost results file (its c = head step / full step), and compare there")
    p.add_argument("--out", help="--frontier: also write the summary as JSON (one results file)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("fid", help="score a folder of PNG images against a reference")
    p.add_argument("--images", required=True)
    p.add_argument("--reference", default="model", help="'model' (the model's own real images), an .npz, or a folder of real "
                   "images (then both folders are read as RGB at Inception's size, with precision and recall)")
    p.add_argument("--reference-size", type=_positive("--reference-size"), default=None,
                   help="use a class-balanced subset of the reference")
    p.add_argument("--backend", choices=("torchmetrics", "clean-fid"), default="torchmetrics")
    p.add_argument("--inception-weights", metavar="FILE", help="with a reference folder: also the Inception Score, with the "
                   "classifier of torch-fidelity's weights-inception-2015-12-05-6726825d.pth (never downloaded)")
    p.add_argument("--out", help="also write the scores to this JSON file")
    _add_model_args(p)
    p.set_defaults(func=cmd_fid)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["migm-shortcut", *map(str, argv)])  # recorded beside results
    try:
        args.func(args)
    except MigmError as exc:
        print(f"migm-shortcut {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"migm-shortcut {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
