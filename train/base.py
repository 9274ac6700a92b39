"""``migm-shortcut train-base``: train the embedded model's three parts from scratch.

Stages, in order (each resumable, each writing its weights and metrics when done):

1. ``classifier`` — the judge used for prompt accuracy and domain FID;
2. ``vq`` — the diffusers ``VQModel`` tokenizer (28x28 -> 14x14 codes), scored by PSNR and
   by the classifier's accuracy on reconstructions;
3. ``backbone`` — the mini Lumina-DiMOO, trained with the masked-token objective (mask
   ratio cos(pi/2 u), u ~ U(0, 1); prompt dropped 10% of the time for CFG), EMA weights saved.

Every batch is a pure function of (seed, step), so a run killed at any point and restarted
with ``--resume`` continues exactly from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from migm_shortcut.amused.model import AmusedBackbone, AmusedConfig
from migm_shortcut.embedded.backbone import BackboneConfig, MiniDiMOO
from migm_shortcut.embedded.classifier import ClassifierConfig, ImageClassifier
from migm_shortcut.embedded.data import DEFAULT_DATASET, ImageDataset, load_dataset, to_model_range
from migm_shortcut.errors import MigmError
from migm_shortcut.modeling import SHIPPED_WEIGHTS
from migm_shortcut.io import append_jsonl, load_tensors, read_json, save_tensors, write_json
from migm_shortcut.embedded.prompts import CLASS_PHRASES, TEMPLATES, WORDS
from migm_shortcut.embedded.tokenizer import VQTokenizer

from migm_shortcut.distributed import pick_device

from .common import EMA, RunLog, batch_generator, train_loop

STAGES = ("classifier", "vq", "backbone")


@dataclass
class BaseTrainConfig:
    out: str
    data: str = DEFAULT_DATASET
    stages: tuple[str, ...] = STAGES
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    # Sized for about 75 minutes on 2 CPU cores (bf16 autocast); raise them on a GPU.
    classifier_steps: int = 2500
    classifier_batch_size: int = 128
    vq_steps: int = 1500
    vq_batch_size: int = 64
    backbone_steps: int = 4000
    backbone_batch_size: int = 64
    backbone_lr: float = 1.5e-3
    backbone_width: int = 192
    backbone_depth: int = 6
    backbone_warmup: int = 150
    architecture: str = "mini-dimoo"   # or "amused": a diffusers UVit2DModel (AmusedConfig defaults)
    # Warm start: a backbone folder (or a weights folder holding backbone/) whose weights the
    # new run starts from; its config replaces width and depth. Ignored when resuming.
    init_backbone: str | None = None
    # Held-out masked-token CE after every checkpoint, appended to curve.jsonl (0: only at the end).
    curve_images: int = 0
    compile: bool = False   # torch.compile the backbone's forward for training
    stop_at: int | None = None  # end this run at that step (checkpointed; resume later with the same schedule)
    # A milestone folder (``export_milestone``) whose EMA weights, step and clock a run continues from
    # when --out holds no checkpoint: a long run carried across machines. Ignored when resuming.
    continue_from: str | None = None
    checkpoint_every: int = 250
    validation_images: int = 2000


def _augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels and horizontal flips (classifier training only)."""
    n = images.shape[0]
    shift = (torch.randint(-2, 3, (n, 2), generator=gen, device=images.device).float() * 2 / 28)
    theta = torch.zeros(n, 2, 3, device=images.device)
    flip = torch.rand(n, generator=gen, device=images.device) < 0.5
    theta[:, 0, 0] = torch.where(flip, -1.0, 1.0)
    theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


def train_classifier(cfg: BaseTrainConfig, train: ImageDataset, test: ImageDataset, device, log) -> dict:
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    model = ImageClassifier(ClassifierConfig()).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    x_train = to_model_range(train.images).to(device)
    y_train = train.labels.to(device)

    def loss_at(step: int) -> torch.Tensor:
        gen = batch_generator(cfg.seed, step, device)
        idx = torch.randint(0, len(x_train), (cfg.classifier_batch_size,), generator=gen, device=device)
        return F.cross_entropy(model(_augment(x_train[idx], gen)), y_train[idx], label_smoothing=0.05)

    seconds = train_loop(name="classifier", model=model, optimizer=opt, total_steps=cfg.classifier_steps,
                         warmup=200, loss_at=loss_at, checkpoint=out / "checkpoints" / "classifier.pt",
                         log=log, resume=cfg.resume, checkpoint_every=cfg.checkpoint_every)
    model.eval()
    acc = model.accuracy(to_model_range(test.images), test.labels)
    model.cpu().save_pretrained(out / "classifier")
    log(f"classifier: test accuracy {acc:.4f}")
    return {"test_accuracy": round(acc, 4), "train_seconds": round(seconds, 1), "steps": cfg.classifier_steps,
            "parameters": model.num_parameters()}


def train_vq(cfg: BaseTrainConfig, train: ImageDataset, test: ImageDataset, device, log) -> dict:
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    tok = VQTokenizer.new()
    model = tok.model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.0, betas=(0.9, 0.99))
    x_train = to_model_range(train.images).to(device)
    usage = torch.zeros(tok.codebook_size, device=device)
    recent_latents: list[torch.Tensor] = []

    def loss_at(step: int) -> torch.Tensor:
        gen = batch_generator(cfg.seed, step, device)
        x = x_train[torch.randint(0, len(x_train), (cfg.vq_batch_size,), generator=gen, device=device)]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            latents = model.encode(x).latents.float()
        # The codebook search stays in fp32: bf16 distances pick wrong codes.
        quant, commit_loss, (_, _, indices) = model.quantize(latents)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            recon = model.decoder(model.post_quant_conv(quant)).float()
        usage.add_(torch.bincount(indices.flatten(), minlength=tok.codebook_size).float())
        recent_latents[:] = [latents.detach().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])]
        return F.mse_loss(recon, x) + 0.1 * F.l1_loss(recon, x) + commit_loss

    def restart_dead_codes(done: int) -> None:
        # Codes unused in the last interval are moved onto random encoder outputs, a standard
        # fix for codebook collapse; stop halfway so the end of training settles.
        if done > cfg.vq_steps // 2 or not recent_latents:
            usage.zero_()
            return
        dead = torch.nonzero(usage == 0).flatten()
        if len(dead):
            pool = recent_latents[0]
            gen = batch_generator(cfg.seed + 7, done, device)
            pick = torch.randint(0, len(pool), (len(dead),), generator=gen, device=device)
            with torch.no_grad():
                model.quantize.embedding.weight[dead] = pool[pick]
        usage.zero_()

    seconds = train_loop(name="vq", model=model, optimizer=opt, total_steps=cfg.vq_steps, warmup=300,
                         loss_at=loss_at, checkpoint=out / "checkpoints" / "vq.pt", log=log, resume=cfg.resume,
                         checkpoint_every=cfg.checkpoint_every, on_interval=restart_dead_codes)
    model.eval()
    metrics = evaluate_tokenizer(tok, test, ImageClassifier.from_pretrained(out / "classifier", device=device))
    tok.model.cpu()
    tok.save_pretrained(out / "vq")
    metrics.update(train_seconds=round(seconds, 1), steps=cfg.vq_steps, parameters=sum(p.numel() for p in model.parameters()))
    log(f"vq: {metrics}")
    return metrics


@torch.no_grad()
def evaluate_tokenizer(tok: VQTokenizer, test: ImageDataset, classifier: ImageClassifier) -> dict:
    x = to_model_range(test.images)
    codes = torch.cat([tok.encode(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    recon = torch.cat([tok.decode(codes[i : i + 1000]) for i in range(0, len(x), 1000)])
    # PSNR on [0, 1] pixels, per image, then averaged.
    mse = ((recon - x) / 2).pow(2).flatten(1).mean(1)
    psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean().item()
    return {
        "test_psnr_db": round(psnr, 2),
        "classifier_accuracy_on_reconstructions": round(classifier.accuracy(recon, test.labels), 4),
        "classifier_accuracy_on_originals": round(classifier.accuracy(x, test.labels), 4),
        "codes_used": int(codes.unique().numel()),
        "codebook_size": tok.codebook_size,
    }


def prompt_texts() -> list[list[str]]:
    """Per class, every template x class phrase."""
    per_class: list[list[str]] = [[] for _ in range(10)]
    for phrase, c in CLASS_PHRASES.items():
        article = "an" if phrase[0] in "aeiou" else "a"
        per_class[c] += [template.format(a=article, c=phrase) for template in TEMPLATES]
    return per_class


def prompt_variants(layout) -> torch.Tensor:
    """(10, M, prompt_len) token ids: every template x class phrase, cycled to a common count M."""
    per_class = [[layout.encode_prompt(text) for text in texts] for texts in prompt_texts()]
    m = max(len(v) for v in per_class)
    return torch.stack([torch.stack([v[i % len(v)] for i in range(m)]) for v in per_class])


def masked_token_batch(layout, codes: torch.Tensor, labels: torch.Tensor, variants: torch.Tensor,
                       gen: torch.Generator, uncond_prob: float = 0.1):
    """Inputs and targets for the masked-token objective: (input_ids, mask over image tokens)."""
    b, n = codes.shape
    device = codes.device
    pick = torch.randint(0, variants.shape[1], (b,), generator=gen, device=device)
    prompts = variants[labels, pick]
    drop = torch.rand(b, generator=gen, device=device) < uncond_prob
    uncond = layout.encode_prompt(None).to(device)  # the model's own unconditional input, for CFG
    prompts = torch.where(drop[:, None], uncond[None], prompts)
    ratio = torch.cos(math.pi / 2 * torch.rand(b, generator=gen, device=device))
    n_mask = (ratio * n).ceil().clamp(1, n)
    rank = torch.rand(b, n, generator=gen, device=device).argsort(1).argsort(1)
    mask = rank < n_mask[:, None]
    input_ids = layout.with_codes(layout.template(prompts), codes, ~mask)
    return input_ids, mask


# amused-pipeline: a UVit2DModel with a small CLIP text encoder, saved as a diffusers AmusedPipeline folder.
ARCHITECTURES = ("mini-dimoo", "amused", "amused-pipeline")


def new_backbone(cfg: BaseTrainConfig, tok: VQTokenizer):
    if cfg.architecture == "amused-pipeline":
        from .amused_pipeline import new_pipeline_backbone

        corpus = [text for texts in prompt_texts() for text in texts]
        return new_pipeline_backbone(corpus, Path(cfg.out) / "checkpoints" / "tokenizer", tok.codebook_size,
                                     tok.grid_size(), image_size=28)
    if cfg.architecture == "mini-dimoo":
        return MiniDiMOO(BackboneConfig(codebook_size=tok.codebook_size, grid_size=tok.grid_size(), width=cfg.backbone_width,
                                        depth=cfg.backbone_depth, heads=max(1, cfg.backbone_width // 64)))
    if cfg.architecture == "amused":
        return AmusedBackbone(AmusedConfig(words=list(WORDS), codebook_size=tok.codebook_size, grid_size=tok.grid_size()))
    raise MigmError(f"unknown architecture {cfg.architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")


def vq_folder(out: Path, log) -> Path:
    """The run's own tokenizer, or the shipped one when this run trains no tokenizer."""
    if (out / "vq").is_dir():
        return out / "vq"
    log(f"backbone: no tokenizer in {out}; using the shipped one ({SHIPPED_WEIGHTS / 'vq'})")
    return SHIPPED_WEIGHTS / "vq"


def warm_start_backbone(cfg: BaseTrainConfig, tok: VQTokenizer, log):
    """The backbone a run starts from: new, or ``cfg.init_backbone``'s weights (its own shape)."""
    if cfg.init_backbone is None:
        return new_backbone(cfg, tok)
    folder = Path(cfg.init_backbone)
    if (folder / "backbone").is_dir():
        folder = folder / "backbone"
    if cfg.architecture == "amused-pipeline":
        return warm_start_uvit(cfg, tok, folder, log)
    if cfg.architecture != "mini-dimoo":
        raise MigmError("--init-backbone warm-starts the mini-dimoo and amused-pipeline architectures only")
    model = MiniDiMOO.from_pretrained(folder)
    if model.config.codebook_size != tok.codebook_size or model.config.grid_size != tok.grid_size():
        raise MigmError(f"{folder} was trained on another tokenizer ({model.config.codebook_size} codes, grid "
                        f"{model.config.grid_size}); warm-start from a backbone of this run's tokenizer")
    log(f"backbone: warm start from {folder}")
    return model.float()


def warm_start_uvit(cfg: BaseTrainConfig, tok: VQTokenizer, folder: Path, log):
    """A new amused-pipeline model whose UVit starts from a trained ``amused`` backbone's (its CLIP starts new)."""
    model = new_backbone(cfg, tok)
    try:
        source = AmusedBackbone.from_pretrained(folder)
    except MigmError as exc:
        raise MigmError(f"--init-backbone {folder}: an amused-pipeline run warm-starts from an amused backbone folder "
                        f"({exc})") from None
    mine, theirs = model.transformer.state_dict(), source.transformer.state_dict()
    wrong = next((k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape), None)
    if wrong is not None:
        raise MigmError(f"--init-backbone {folder}: its UVit does not match this run's (first difference: {wrong})")
    model.transformer.load_state_dict({k: v.float() for k, v in theirs.items()})
    log(f"backbone: UVit warm start from {folder}; new CLIP text encoder")
    return model


def train_backbone(cfg: BaseTrainConfig, train: ImageDataset, test: ImageDataset, device, log) -> dict:
    out = Path(cfg.out)
    tok = VQTokenizer.from_pretrained(vq_folder(out, log), device=device)
    codes_path = out / "checkpoints" / "codes.safetensors"
    if codes_path.is_file():
        cached = load_tensors(codes_path)
        train_codes, test_codes = cached["train"], cached["test"]
    else:
        encode = lambda ds: torch.cat([tok.encode(to_model_range(ds.images[i : i + 2000])) for i in range(0, len(ds), 2000)])
        train_codes, test_codes = encode(train).flatten(1), encode(test).flatten(1)
        save_tensors(codes_path, {"train": train_codes, "test": test_codes})
    torch.manual_seed(cfg.seed)
    checkpoint = out / "checkpoints" / "backbone.pt"
    start = None
    if cfg.continue_from is not None and not (cfg.resume and checkpoint.is_file()):
        start = read_milestone(Path(cfg.continue_from), cfg)
        cfg = dataclasses.replace(cfg, init_backbone=str(Path(cfg.continue_from) / "backbone"))
    model = warm_start_backbone(cfg, tok, log).to(device)
    if cfg.architecture == "mini-dimoo":  # the shape export_milestone rebuilds the model with
        model.save_config(out / "checkpoints" / "backbone_config")
    layout = model.layout
    log(f"backbone: {model.num_parameters():,} parameters, sequence length {layout.seq_len}")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.backbone_lr, betas=(0.9, 0.95))
    ema = EMA(model, decay=0.998)
    variants = prompt_variants(layout).to(device)
    train_codes, train_labels = train_codes.to(device), train.labels.to(device)
    img_pos = layout.image_positions.to(device)
    # Compiling the image-logit forward (not the module) keeps state_dict keys and checkpoints unchanged.
    image_logits = lambda ids: model.logits_from_features(model.features(ids)[:, img_pos])
    if cfg.compile:
        image_logits = torch.compile(image_logits)

    def loss_at(step: int) -> torch.Tensor:
        gen = batch_generator(cfg.seed, step, device)
        idx = torch.randint(0, len(train_codes), (cfg.backbone_batch_size,), generator=gen, device=device)
        codes = train_codes[idx]
        input_ids, mask = masked_token_batch(layout, codes, train_labels[idx], variants, gen)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = image_logits(input_ids)
        return F.cross_entropy(logits[mask].float(), codes[mask], label_smoothing=0.1)

    curve_path = out / "curve.jsonl"

    def record_curve(step: int, elapsed: float) -> None:
        # The EMA copy is what gets saved; the raw weights lead it by about 1 / (1 - decay) steps.
        n = cfg.curve_images
        codes, labels = test_codes[:n].to(device), test.labels[:n].to(device)
        val = masked_token_validation(ema.shadow, codes, labels, variants, cfg.seed)
        model.eval()
        raw = masked_token_validation(model, codes, labels, variants, cfg.seed)
        val.update({f"raw_{k}": v for k, v in raw.items()})
        append_jsonl(curve_path, {"step": step, "train_seconds": round(elapsed, 1), **val})
        log(f"backbone: step {step} held-out {val}")

    seconds = train_loop(name="backbone", model=model, optimizer=opt, total_steps=cfg.backbone_steps,
                         warmup=cfg.backbone_warmup, loss_at=loss_at, checkpoint=checkpoint,
                         log=log, resume=cfg.resume, checkpoint_every=cfg.checkpoint_every, ema=ema,
                         on_checkpoint=record_curve if cfg.curve_images > 0 else None, stop_at=cfg.stop_at,
                         start=start)
    if cfg.stop_at is not None and cfg.stop_at < cfg.backbone_steps:
        log(f"backbone: stopped at step {cfg.stop_at} of {cfg.backbone_steps} (--stop-at); resume to continue")
        return {"stopped_at": cfg.stop_at, "train_seconds": round(seconds, 1)}
    final = ema.shadow.eval()
    n_val = cfg.validation_images
    val = masked_token_validation(final, test_codes[:n_val].to(device), test.labels[:n_val].to(device), variants, cfg.seed)
    if cfg.architecture == "amused-pipeline":
        from .amused_pipeline import save_pipeline

        save_pipeline(final.cpu(), tok.model.cpu(), out / "pipeline")
    else:
        final.cpu().save_pretrained(out / "backbone")
    metrics = {"train_seconds": round(seconds, 1), "steps": cfg.backbone_steps, "batch_size": cfg.backbone_batch_size,
               "parameters": final.num_parameters(), **val}
    log(f"backbone: {metrics}")
    return metrics


@torch.no_grad()
def masked_token_validation(model: MiniDiMOO, codes: torch.Tensor, labels: torch.Tensor, variants: torch.Tensor,
                            seed: int, batch_size: int = 500) -> dict:
    """Cross-entropy and accuracy at masked positions on held-out codes (fixed masks)."""
    device = codes.device
    gen = batch_generator(seed + 99, 0, device)
    img_pos = model.layout.image_positions.to(device)
    total_loss, total_correct, total = 0.0, 0, 0
    for i in range(0, len(codes), batch_size):
        input_ids, mask = masked_token_batch(model.layout, codes[i : i + batch_size], labels[i : i + batch_size],
                                             variants, gen, uncond_prob=0.0)
        logits = model.logits_from_features(model.features(input_ids)[:, img_pos]).float()
        target = codes[i : i + batch_size]
        total_loss += F.cross_entropy(logits[mask], target[mask], reduction="sum").item()
        total_correct += (logits.argmax(-1)[mask] == target[mask]).sum().item()
        total += int(mask.sum())
    return {"val_masked_ce": round(total_loss / total, 4), "val_masked_accuracy": round(total_correct / total, 4)}


# What must match for a run to continue a milestone's schedule.
SCHEDULE_FIELDS = ("backbone_steps", "backbone_batch_size", "backbone_lr", "backbone_warmup", "seed")


def export_milestone(run: Path, dest: Path) -> dict:
    """Write a run's latest backbone checkpoint as a milestone folder that outlives the machine.

    ``dest/backbone/`` holds the EMA weights in fp16 (about 5 MB where the full checkpoint with its
    optimizer state is 40), ``milestone.json`` the step, clock and schedule, and the run's
    ``curve.jsonl`` and ``train.log`` come along. ``train-base --continue-from dest`` carries on
    from there with fresh optimizer state: not bit-exact like ``--resume``, but nothing is retrained.
    """
    checkpoint, config_dir = run / "checkpoints" / "backbone.pt", run / "checkpoints" / "backbone_config"
    for path in (checkpoint, config_dir / "config.json"):
        if not path.is_file():
            raise MigmError(f"{path} not found: export a mini-dimoo train-base run folder that has checkpointed")
    from migm_shortcut.io import atomic_dir, load_torch

    state = load_torch(checkpoint)
    if "ema" not in state:
        raise MigmError(f"{checkpoint} has no EMA weights; it is not a backbone checkpoint")
    model = MiniDiMOO(MiniDiMOO.load_config(config_dir)[0])
    model.load_state_dict(state["ema"])
    run_config = read_json(run / "run_config.json") if (run / "run_config.json").is_file() else {}
    info = {"step": state["step"], "train_seconds": round(state["elapsed"], 1),
            **{k: run_config[k] for k in SCHEDULE_FIELDS if k in run_config}}
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp / "backbone")
        write_json(tmp / "milestone.json", info)
        for name in ("curve.jsonl", "train.log"):
            if (run / name).is_file():
                shutil.copyfile(run / name, tmp / name)
    return info


# Where a run's history lies in a milestone folder, and in a weights folder (the shipped one included).
HISTORY = {"curve.jsonl": ("curve.jsonl", "backbone_curve.jsonl"), "train.log": ("train.log", "backbone_train.log")}


def milestone_record(folder: Path) -> Path:
    """``milestone.json`` of a milestone folder (``export_milestone``) or of a weights folder's backbone."""
    for path in (folder / "milestone.json", folder / "backbone" / "milestone.json"):
        if path.is_file():
            return path
    raise MigmError(f"--continue-from {folder}: no milestone.json there or in its backbone/ (pass a milestone folder "
                    "from scripts/base_milestone.py, or a weights folder such as the shipped one)")


def read_milestone(folder: Path, cfg: BaseTrainConfig) -> tuple[int, float]:
    """The (step, seconds) a run continues from; refuses a milestone of another schedule."""
    info = read_json(milestone_record(folder))
    if cfg.architecture != "mini-dimoo":
        raise MigmError("--continue-from continues mini-dimoo runs only")
    for key in SCHEDULE_FIELDS:
        if key in info and info[key] != getattr(cfg, key):
            raise MigmError(f"--continue-from {folder}: its run used {key.replace('_', '-')} {info[key]}, this one "
                            f"{getattr(cfg, key)}; pass the same schedule to continue it")
    if not 0 < info["step"] < cfg.backbone_steps:
        raise MigmError(f"--continue-from {folder}: it stopped at step {info['step']}, outside this schedule's "
                        f"1..{cfg.backbone_steps - 1}")
    return int(info["step"]), float(info["train_seconds"])


def train_base(cfg: BaseTrainConfig) -> dict:
    if cfg.architecture not in ARCHITECTURES:
        raise MigmError(f"unknown architecture {cfg.architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise MigmError(f"unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    if cfg.continue_from is not None:  # a continued run keeps its history: the curve and log go on
        for name, sources in HISTORY.items():
            found = [Path(cfg.continue_from) / source for source in sources if (Path(cfg.continue_from) / source).is_file()]
            if not (out / name).is_file() and found:
                shutil.copyfile(found[0], out / name)
    log = RunLog(out / "train.log")
    train, test = load_dataset(cfg.data, "train"), load_dataset(cfg.data, "test")
    metrics_path = out / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    write_json(out / "run_config.json", dataclasses.asdict(cfg))
    log(f"train-base on {device}: stages {', '.join(cfg.stages)}; {len(train)} train / {len(test)} test images")
    runners = {"classifier": train_classifier, "vq": train_vq, "backbone": train_backbone}
    for stage in STAGES:
        if stage in cfg.stages:
            metrics[stage] = runners[stage](cfg, train, test, device, log)
            metrics[stage]["device"] = str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)
            write_json(metrics_path, metrics)
    return metrics
