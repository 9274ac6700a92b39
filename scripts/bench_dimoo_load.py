"""Time to first image and peak host memory of loading a Lumina-DiMOO-shaped checkpoint (~1.2B parameters, bf16 on disk).

    python scripts/bench_dimoo_load.py --work ~/migm-runs/dimoo_load --out docs/results/dimoo_load_cpu.json

The checkpoint is written once into WORK in the downloaded layout: the test stand-in of the
published LLaDA classes (``tests/llada_standin.py``, which mirrors the published code's awkward
parts: no ``post_init``, an argument-less ``tie_weights``) at 2048 wide, 12 layers, DiMOO's
vocabulary. Each case runs in a fresh process, so its peak RSS is its own:

* ``migm-shortcut``: ``load_model(FOLDER, dtype=bfloat16)`` (the package's loader: the weights'
  dtype, transformers' low-memory loading), then one 128x128 image at N=4;
* ``transformers default``: the same published class through ``from_pretrained(dtype=bfloat16)``
  without low-memory loading, as transformers 4.x does it unless asked (the way the package
  loaded before).

``--overlay DIR`` runs the cases again with the packages in DIR first on the path (``make test``'s
``.venv/min-deps``: transformers 4.46.2, the version Lumina-DiMOO pins).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPE = dict(d_model=2048, n_heads=16, n_layers=12, mlp_hidden_size=5632)


def write_checkpoint(folder: Path) -> None:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_dimoo import tiny_llada, write_tiny_dimoo

    if (folder / "done").is_file():
        return
    write_tiny_dimoo(folder, **SHAPE)  # config, tokenizer, vqvae and model code in the released layout
    config = json.loads((folder / "config.json").read_text())
    tiny_llada(0, **SHAPE).to(torch.bfloat16).save_pretrained(folder)  # the weights as released: bf16
    saved = json.loads((folder / "config.json").read_text())  # save_pretrained rewrote it: keep the code map
    (folder / "config.json").write_text(json.dumps({**saved, "auto_map": config["auto_map"],
                                                    "architectures": config["architectures"]}, indent=2))
    (folder / "done").write_text("")


def measure(folder: Path, case: str) -> dict:
    import torch

    from migm_shortcut.samplers import generate

    start = time.perf_counter()
    if case == "migm-shortcut":
        from migm_shortcut import load_model

        model = load_model(folder, trust_remote_code=True, dtype="bfloat16", height=128, width=128, prompt_len=32)
    else:
        from transformers import AutoTokenizer

        from migm_shortcut.dimoo import loading
        from migm_shortcut.dimoo.model import DiMOOModel
        from migm_shortcut.vq import load_vqvae

        cls = loading.compatible(loading.model_class(folder, None, trust_remote_code=True))
        llada = cls.from_pretrained(str(folder), **{loading.dtype_keyword(): torch.bfloat16,
                                                    "low_cpu_mem_usage": False}).eval()
        model = DiMOOModel(llada, AutoTokenizer.from_pretrained(str(folder), trust_remote_code=True), load_vqvae(folder, "cpu"), height=128,
                           width=128, prompt_len=32)
    loaded = time.perf_counter()
    generate(model, ["a red cube"], seeds=[0], num_steps=4)  # the same first image in both cases
    import transformers

    return {"case": case, "transformers": transformers.__version__,
            "parameters_b": round(sum(p.numel() for p in model.backbone.model.parameters()) / 1e9, 3),
            "load_s": round(loaded - start, 2), "first_image_s": round(time.perf_counter() - start, 2),
            # the process's peak resident set: what it needs of host memory (weights still mapped from the
            # file and never read, like most of the embedding, are not resident)
            "peak_rss_gb": round(peak_resident_kb() / 2**20, 2)}


def peak_resident_kb() -> int:
    """VmHWM, the process's peak resident set (ru_maxrss is not used: Linux carries it across exec, so a
    child started by a large parent would report the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(Path.home() / "migm-runs" / "dimoo_load"))
    parser.add_argument("--out", default=None, help="write the results JSON here")
    parser.add_argument("--overlay", default=None, help="also run with the packages in this folder first on the path")
    parser.add_argument("--measure", choices=("migm-shortcut", "transformers default"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.work) / "Lumina-DiMOO-1B"
    if args.measure:
        print("RESULT " + json.dumps(measure(folder, args.measure)))
        return
    write_checkpoint(folder)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    rows = []
    for overlay in [None, args.overlay] if args.overlay else [None]:
        env = dict(os.environ, PYTHONPATH=overlay) if overlay else dict(os.environ)
        for case in ("migm-shortcut", "transformers default"):
            run = subprocess.run([sys.executable, __file__, "--work", args.work, "--measure", case], env=env,
                                 capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"{case} failed: {run.stderr.strip().splitlines()[-1]}")
            rows.append(json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:]))
            print(rows[-1], flush=True)
    result = {"kind": "dimoo_load", "checkpoint_gb": round(size / 2**30, 2), "shape": SHAPE, "device": "cpu",
              "image": "128x128, N=4", "results": rows}
    if args.out:
        from migm_shortcut.io import write_json

        write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
