"""Price a measured sweep at another model's size: ``migm-shortcut report --frontier --price-at BENCH_COST.json``.

A sweep on a small model measures quality and latency there; what the same settings would buy at
Lumina-DiMOO's or MaskGIT's size depends on what a cheap step costs against a full one at that size,
c = head step / full step, which ``bench-cost`` measures with random weights at the real sizes. Each
setting's cost per image in full passes is its backbone passes plus its other steps at what each
policy's cheap step costs (``StepPolicy.cheap_step_cost``: c for a head step, the recomputed share for
ML-Cache, both for the hybrid, nothing for feature reuse), and its projected speedup is the
baseline's N over that. It is a projection: sampling-loop time, attention's share of a partial pass
and memory traffic are left out, and quality is the small model's.
"""

from __future__ import annotations

from migm_shortcut.errors import MigmError
from migm_shortcut.samplers import POLICIES, policy_class


def cost_ratios(bench_cost: dict) -> list[dict]:
    """One price per size in a bench-cost results file: the family's published head where it was priced
    (what each family trains by default), else the generic one; c from time where measured, else FLOPs."""
    results = bench_cost.get("results") if isinstance(bench_cost, dict) else None
    if not results or not all(isinstance(r, dict) and "config" in r and "c_flops" in r for r in results):
        raise MigmError("--price-at reads a bench-cost results file (migm-shortcut bench-cost --out FILE)")
    chosen: dict[str, dict] = {}
    for r in results:
        size = r.get("config") or "model"
        if size not in chosen or (chosen[size].get("head_architecture") == "generic" and r.get("head_architecture") != "generic"):
            chosen[size] = r
    prices = []
    for size, r in chosen.items():
        timed = r.get("c") is not None
        prices.append({"size": size, "head_architecture": r.get("head_architecture", "generic"),
                       "c": r["c"] if timed else r["c_flops"], "basis": "time" if timed else "FLOPs",
                       "device": r.get("device")})
    return prices


def full_pass_cost(row: dict, head_cost: float) -> float | None:
    """A sweep row's cost per image in full backbone passes at that ``head_cost``; None for rows no step
    policy made (real images, rows inside a diffusers pipeline)."""
    if row.get("method") not in POLICIES or row.get("full_steps") is None or row.get("steps") is None:
        return None
    cheap_steps = row["steps"] - row["full_steps"]
    return row["full_steps"] + cheap_steps * policy_class(row["method"]).cheap_step_cost(row.get("params") or {}, head_cost)


def projected_rows(result: dict, price: dict) -> list[dict]:
    """The sweep's timed rows with ``speedup`` replaced by the projection at ``price`` (the measured
    one kept as ``measured_speedup``)."""
    baseline = next((r for r in result["rows"] if r.get("setting") == result.get("baseline")), None)
    if baseline is None or baseline.get("method") != "vanilla":
        raise MigmError("the sweep has no vanilla baseline row to price the others against")
    base_cost = full_pass_cost(baseline, price["c"])
    rows = []
    for r in result["rows"]:
        cost = full_pass_cost(r, price["c"])
        if cost is not None and r.get("speedup") is not None:
            rows.append({**r, "measured_speedup": r["speedup"], "speedup": base_cost / cost})
    return rows
