"""The papers' evaluations as shipped sweep configs (``migm_shortcut/configs/protocols/*.json``).

A protocol is a sweep config with a ``protocol`` block: which model it is for (family and token grid),
which metrics it reports (each needs a flag: a reference folder, the Inception classifier's weights, a
CLIP or ImageReward folder), and the published numbers of its settings, keyed by the settings' labels,
with the command that produced them. ``migm-shortcut sweep --config maskgit-512 ...`` runs it;
``migm-shortcut report OUT/results.json`` renders the rows beside the published ones.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from migm_shortcut.errors import MigmError

# metric -> (what supplies it, the flag that does)
METRICS = {
    "fid": ("a folder of real images", "--reference FOLDER"),
    "precision_recall": ("a folder of real images", "--reference FOLDER"),
    "inception_score": ("the TF-2015 Inception's classifier", "--inception-weights FILE"),
    "clip_score": ("a local CLIP model", "--clip FOLDER"),
    "image_reward": ("a local ImageReward folder", "--image-reward FOLDER"),
}
PUBLISHED_COLUMNS = ("latency_s", "fid", "inception_score", "precision", "recall", "clip_score", "image_reward")
PROTOCOL_FIELDS = {"name", "title", "model_kind", "grid", "metrics", "published", "missing"}


def protocols_dir() -> Path:
    return Path(str(files("migm_shortcut") / "configs" / "protocols"))


def shipped_protocols() -> list[str]:
    return sorted(p.stem for p in protocols_dir().glob("*.json"))


def resolve_config(config: str | Path) -> Path:
    """A config file path, or the name of a shipped protocol (``maskgit-512``, ``dimoo-1024``)."""
    path = Path(config)
    if path.is_file():
        return path
    shipped = protocols_dir() / f"{config}.json"
    if shipped.is_file():
        return shipped
    raise MigmError(f"sweep config not found: {config} (a JSON file, or a shipped protocol: {', '.join(shipped_protocols())})")


def check_protocol(raw, where: str, labels: list[str]) -> dict:
    """The ``protocol`` block, checked: known fields and metrics, published rows naming real settings."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise MigmError(f"{where}: protocol must be an object with a 'name'")
    unknown = sorted(set(raw) - PROTOCOL_FIELDS)
    if unknown:
        raise MigmError(f"{where}: protocol has an unknown field {unknown[0]!r}; allowed: {', '.join(sorted(PROTOCOL_FIELDS))}")
    bad = [m for m in raw.get("metrics", []) if m not in METRICS]
    if bad:
        raise MigmError(f"{where}: protocol metric {bad[0]!r} is unknown; choose from {', '.join(METRICS)}")
    for row in (raw.get("published") or {}).get("rows", []):
        if row.get("setting") not in labels:
            raise MigmError(f"{where}: the published row {row.get('setting')!r} names no setting of this config "
                            f"(labels: {', '.join(labels)})")
    return raw


def check_protocol_run(protocol: dict, model, given: dict[str, object]) -> None:
    """Refuse, before any work, a model the protocol is not for or a metric whose input is not given.
    ``given``: flag name -> value (None when not passed)."""
    name = protocol["name"]
    kind = protocol.get("model_kind")
    if kind is not None and model.kind != kind:
        raise MigmError(f"protocol {name} is for a {kind} model; --model loaded a {model.kind} one")
    grid = protocol.get("grid")
    if grid is not None and list(model.backbone.layout.grid_shape) != list(grid):
        got = "x".join(map(str, model.backbone.layout.grid_shape))
        raise MigmError(f"protocol {name} samples a {grid[0]}x{grid[1]} token grid; this model's is {got} "
                        "(choose its resolution: --image-size for MaskGIT, --height/--width for Lumina-DiMOO)")
    for metric in protocol.get("metrics", []):
        what, flag = METRICS[metric]
        key = flag.split()[0]
        if given.get(key) is None:
            raise MigmError(f"protocol {name} reports {metric.replace('_', ' ')}, which needs {what}: pass {flag}")


def _cell(value, key: str) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} s" if key == "latency_s" else f"{value:.3f}"


def markdown_published(result: dict) -> str:
    """Each published row beside ours: published value, ours, difference, for every column either has."""
    protocol = result.get("protocol") or {}
    published = protocol.get("published") or {}
    rows = {r["setting"]: r for r in result["rows"]}
    if not published.get("rows"):
        return ""
    pub_base = next((p for p in published["rows"] if p["setting"] == result["baseline"]), None)
    lines = [f"**{protocol.get('title', protocol['name'])}: published and measured**", "",
             "| setting | metric | published | ours | ours − published |", "|---|---|---:|---:|---:|"]
    for pub in published["rows"]:
        ours = rows.get(pub["setting"])
        for key in PUBLISHED_COLUMNS:
            if key not in pub:
                continue
            mine = None if ours is None else ours.get(key)
            diff = "—" if mine is None else (f"{mine - pub[key]:+.3f}" + (" s" if key == "latency_s" else ""))
            lines.append(f"| {pub['setting']} | {key.replace('_s', ' per image').replace('_', ' ')} | "
                         f"{_cell(pub[key], key)} | {_cell(mine, key)} | {diff} |")
        if "latency_s" in pub and pub_base is not None and ours is not None and ours.get("speedup") is not None:
            lines.append(f"| {pub['setting']} | speedup | {pub_base['latency_s'] / pub['latency_s']:.2f}x | "
                         f"{ours['speedup']:.2f}x | {ours['speedup'] - pub_base['latency_s'] / pub['latency_s']:+.2f}x |")
    lines += ["", f"Published: {published.get('source', '')}; produced by `{published.get('command', '')}`.",
              f"Ours: `{result.get('command', 'migm-shortcut sweep')}` on {result['device']}, "
              f"{result['num_images_per_setting']} images per setting, {result.get('processes', 1)} process(es)."]
    if protocol.get("missing"):
        lines.append(f"Not reproduced here: {protocol['missing']}")
    return "\n".join(lines) + "\n"
