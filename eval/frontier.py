"""Which method wins where, read off a sweep's results: ``migm-shortcut report --frontier``.

A sweep's table lists every setting; the questions a paper asks of it are comparisons:

* **the Pareto front** — the settings no other setting beats on both speed and quality;
* **the fastest setting of each method that keeps quality** — FID within ``tolerance`` of the
  reference row's (vanilla at the full N) and prompt accuracy within ``accuracy_points``;
* **the head against each baseline in the fast regime** — for every baseline setting at
  ``min_speedup`` or more, the best head-driven setting that is at least as fast, and whether
  its FID is lower.

Head-driven methods are the shortcut and its variants (``HEAD_METHODS``); every other timed
row is a baseline (fewer steps, fixed-interval reuse, SenCache-style, ML-Cache, cache-dit).
"""

from __future__ import annotations

from migm_shortcut.errors import MigmError

HEAD_METHODS = ("shortcut", "adaptive", "hybrid", "pipeline-shortcut")


def _timed(rows: list[dict], quality: str) -> list[dict]:
    return [r for r in rows if r.get("method") != "real" and r.get("speedup") is not None and r.get(quality) is not None]


def _brief(row: dict, quality: str) -> dict:
    return {"method": row["method"], "setting": row["setting"], "speedup": round(row["speedup"], 3),
            quality: round(row[quality], 3), "prompt_accuracy": row.get("prompt_accuracy")}


def pareto_settings(rows: list[dict], quality: str = "fid") -> list[dict]:
    """Rows that no other row beats: none is at least as fast with at most the same ``quality``
    (lower is better) and strictly better in one. Sorted by speedup."""
    front = []
    for row in rows:
        dominated = any(o is not row and o["speedup"] >= row["speedup"] and o[quality] <= row[quality]
                        and (o["speedup"] > row["speedup"] or o[quality] < row[quality]) for o in rows)
        if not dominated:
            front.append(row)
    return sorted(front, key=lambda r: r["speedup"])


def frontier(result: dict, quality: str = "fid", min_speedup: float = 2.0, tolerance: float = 0.05,
             accuracy_points: float = 1.0, prices: list[dict] | None = None) -> dict:
    """The comparisons above for one sweep's ``results.json`` (as a dict); with ``prices``
    (``eval.projection.cost_ratios``), the same comparisons again at each priced size's projected speedups."""
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
        raise MigmError("--frontier reads a sweep's results.json (a file with 'rows'); this is another kind of result")
    rows = _timed(result["rows"], quality)
    reference = next((r for r in rows if r["setting"] == result.get("baseline")), None)
    if reference is None:
        raise MigmError(f"the sweep has no {quality} for its baseline {result.get('baseline')!r}; "
                        f"rerun it with quality scoring (--reference, or a config with a reference)")
    limit = (1 + tolerance) * reference[quality]
    accuracy_floor = None if reference.get("prompt_accuracy") is None else reference["prompt_accuracy"] - accuracy_points / 100

    def keeps_quality(row: dict) -> bool:
        accurate = accuracy_floor is None or (row.get("prompt_accuracy") is not None and row["prompt_accuracy"] >= accuracy_floor)
        return row[quality] <= limit and accurate

    fastest = {}
    for row in rows:
        if row is not reference and keeps_quality(row) and row["speedup"] > fastest.get(row["method"], {"speedup": 0})["speedup"]:
            fastest[row["method"]] = row
    head_rows = [r for r in rows if r["method"] in HEAD_METHODS]
    duels = []
    for baseline in sorted((r for r in rows if r["method"] not in HEAD_METHODS and r is not reference
                            and r["speedup"] >= min_speedup), key=lambda r: r["speedup"]):
        rivals = [r for r in head_rows if r["speedup"] >= baseline["speedup"]]
        best = min(rivals, key=lambda r: r[quality], default=None)
        duels.append({"baseline": _brief(baseline, quality), "head": None if best is None else _brief(best, quality),
                      "head_wins": best is not None and best[quality] < baseline[quality]})
    summary = {"kind": "frontier", "quality": quality, "min_speedup": min_speedup, "tolerance": tolerance,
               "accuracy_points": accuracy_points, "reference": _brief(reference, quality),
               "pareto": [_brief(r, quality) for r in pareto_settings(rows, quality)],
               "fastest_keeping_quality": [_brief(r, quality) for r in sorted(fastest.values(), key=lambda r: -r["speedup"])],
               "head_vs_baselines": duels}
    if prices:
        from .projection import projected_rows

        summary["projections"] = []
        for price in prices:
            priced = projected_rows(result, price)
            at_size = frontier({**result, "rows": priced}, quality, min_speedup, tolerance, accuracy_points)
            summary["projections"].append({
                **price, **{k: at_size[k] for k in ("pareto", "fastest_keeping_quality", "head_vs_baselines")},
                "rows": [{**_brief(r, quality), "measured_speedup": round(r["measured_speedup"], 3)}
                         for r in _timed(priced, quality)]})
    return summary


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def markdown_frontier(summary: dict) -> str:
    q, ref = summary["quality"], summary["reference"]
    label = q.upper() if q == "fid" else q
    lines = [f"Reference: {ref['setting']}, {label} {ref[q]:.2f}, prompt accuracy {_pct(ref['prompt_accuracy'])}.", "",
             f"Fastest setting of each method with {label} within {100 * summary['tolerance']:g}% of the reference's and "
             f"prompt accuracy within {summary['accuracy_points']:g} point(s):", "",
             f"| method | setting | speedup | {label} | prompt acc |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['setting']} | {r['speedup']:.2f}x | {r[q]:.2f} | {_pct(r['prompt_accuracy'])} |"
              for r in summary["fastest_keeping_quality"]] or ["| (none) | | | | |"]
    lines += ["", f"Every baseline setting at {summary['min_speedup']:g}x or faster against the best head-driven setting "
              "at least as fast:", "",
              f"| baseline | speedup | {label} | best head setting as fast | speedup | {label} | head better |",
              "|---|---:|---:|---|---:|---:|---|"]
    for duel in summary["head_vs_baselines"]:
        b, h = duel["baseline"], duel["head"]
        head = "(none as fast) | | " if h is None else f"{h['setting']} | {h['speedup']:.2f}x | {h[q]:.2f}"
        lines.append(f"| {b['setting']} | {b['speedup']:.2f}x | {b[q]:.2f} | {head} | {'yes' if duel['head_wins'] else 'no'} |")
    lines += ["", "Pareto front (no setting is both at least as fast and at least as good): "
              + ", ".join(f"{r['setting']} ({r['speedup']:.2f}x, {r[q]:.2f})" for r in summary["pareto"]) + "."]
    if summary.get("projections"):
        lines += ["", markdown_projections(summary)]
    return "\n".join(lines) + "\n"


def markdown_projections(summary: dict) -> str:
    """Every setting's measured speedup beside its projections, and who wins at each projected size."""
    q, label = summary["quality"], summary["quality"].upper() if summary["quality"] == "fid" else summary["quality"]
    projections = summary["projections"]
    by_setting = {}
    for i, p in enumerate(projections):
        for r in p["rows"]:
            by_setting.setdefault(r["setting"], {"row": r, "projected": {}})["projected"][i] = r["speedup"]
    head = " | ".join(f"projected at {p['size']} (c={p['c']:g}, {p['basis']})" for p in projections)
    lines = ["Projection (not a measurement): each setting priced at the cost ratio c = head step / full step that "
             "bench-cost measured at these sizes; quality as measured here.", "",
             f"| method | setting | {label} | measured speedup | {head} |",
             "|---|---|---:|---:|" + "---:|" * len(projections)]
    for entry in by_setting.values():
        r = entry["row"]
        cells = " | ".join(f"{entry['projected'][i]:.2f}x" if i in entry["projected"] else "—" for i in range(len(projections)))
        lines.append(f"| {r['method']} | {r['setting']} | {r[q]:.2f} | {r['measured_speedup']:.2f}x | {cells} |")
    for p in projections:
        wins = [d for d in p["head_vs_baselines"]]
        won = sum(d["head_wins"] for d in wins)
        lines += ["", f"At {p['size']}: the head beats {won} of the {len(wins)} baseline settings at "
                  f"{summary['min_speedup']:g}x or faster (projected); Pareto front: "
                  + ", ".join(f"{r['setting']} ({r['speedup']:.2f}x, {r[q]:.2f})" for r in p["pareto"]) + "."]
    return "\n".join(lines)
