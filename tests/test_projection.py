"""Pricing a measured sweep at another model's size: each policy's cheap step at its own cost, the
baseline's N over the total, the published head's c chosen, and one-line refusals."""

import json

import pytest

from migm_shortcut import MigmError
from migm_shortcut.eval.frontier import frontier, markdown_frontier
from migm_shortcut.eval.projection import cost_ratios, full_pass_cost

from cli_route import run


def row(method, steps, full, fid, speedup, **params):
    return {"method": method, "setting": f"{method} {steps} {full} {params}", "steps": steps, "full_steps": full,
            "params": params, "fid": fid, "speedup": speedup, "prompt_accuracy": None}


SWEEP = {"baseline": "vanilla 16 16 {}", "rows": [
    row("vanilla", 16, 16, 40.0, 1.0), row("vanilla", 4, 4, 60.0, 4.5),
    row("shortcut", 16, 4, 45.0, 3.0, budget=4), row("fixed", 16, 4, 50.0, 4.4, interval=4),
    row("mlcache", 16, 6, 47.0, 2.2, warmup=0.3, interval=5, recompute=0.1),
    row("hybrid", 16, 4, 44.0, 2.9, budget=4, recompute=0.05),
    {"method": "cache-dit", "setting": "cache-dit", "steps": 12, "full_steps": None, "params": {}, "fid": 45.0,
     "speedup": 2.0, "prompt_accuracy": None}]}
BENCH = {"results": [
    {"config": "maskgit-512", "head_architecture": "generic", "c": 0.021, "c_flops": 0.020},
    {"config": "maskgit-512", "head_architecture": "maskgit-shortcut", "c": 0.03, "c_flops": 0.028},
    {"config": "dimoo-8b", "head_architecture": "dimoo-shortcut", "c": None, "c_flops": 0.032}]}


def test_each_policy_prices_its_cheap_steps():
    rows = {r["method"]: r for r in reversed(SWEEP["rows"])}  # the first row of each method
    c = 0.04
    assert full_pass_cost(rows["vanilla"], c) == 16
    assert full_pass_cost(rows["shortcut"], c) == pytest.approx(4 + 12 * c)    # a head pass per cheap step
    assert full_pass_cost(rows["fixed"], c) == 4                                # reused features: no model work
    assert full_pass_cost(rows["mlcache"], c) == pytest.approx(6 + 10 * 0.1)   # the recomputed share
    assert full_pass_cost(rows["hybrid"], c) == pytest.approx(4 + 12 * (c + 0.05))
    assert full_pass_cost(rows["cache-dit"], c) is None                         # not a step policy's row


def test_the_frontier_is_compared_again_at_each_priced_size():
    prices = cost_ratios(BENCH)
    assert [(p["size"], p["head_architecture"], p["c"], p["basis"]) for p in prices] == [
        ("maskgit-512", "maskgit-shortcut", 0.03, "time"), ("dimoo-8b", "dimoo-shortcut", 0.032, "FLOPs")]
    summary = frontier(SWEEP, min_speedup=2.0, prices=prices)
    at = {r["setting"]: r for r in summary["projections"][0]["rows"]}
    assert at["shortcut 16 4 {'budget': 4}"]["speedup"] == pytest.approx(16 / (4 + 12 * 0.03), abs=1e-3)
    assert at["shortcut 16 4 {'budget': 4}"]["measured_speedup"] == 3.0
    assert at["vanilla 4 4 {}"]["speedup"] == 4.0 and "cache-dit" not in at
    text = markdown_frontier(summary)
    assert "Projection (not a measurement)" in text and "projected at dimoo-8b (c=0.032, FLOPs)" in text


def test_refusals_are_one_line(tmp_path, capsys):
    with pytest.raises(MigmError, match="reads a bench-cost results file"):
        cost_ratios({"rows": []})
    with pytest.raises(MigmError, match="no vanilla baseline row"):
        frontier({**SWEEP, "baseline": "shortcut 16 4 {'budget': 4}"}, prices=cost_ratios(BENCH))
    (tmp_path / "sweep.json").write_text(json.dumps(SWEEP))
    (tmp_path / "bench.json").write_text(json.dumps(BENCH))
    code, _, err = run(capsys, "report", tmp_path / "sweep.json", "--price-at", tmp_path / "bench.json")
    assert code == 2 and err.count("\n") == 1 and "add --frontier" in err
    code, out, err = run(capsys, "report", tmp_path / "sweep.json", "--frontier", "--price-at", tmp_path / "bench.json")
    assert code == 0 and "projected at maskgit-512" in out, err
