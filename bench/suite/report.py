"""BENCHMARKS.md sections, docs/benchmarks-history.md and plots from the JSON results under bench/results/.

``write_report(results_dir, plots_dir, markdown, history)`` regenerates only this suite's sections of the
markdown, each between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (``SECTIONS``); everything else in
the file is kept. The main tables show the runs of today's settings
(``labels.is_current``); older settings and the cold-start diagnostics go to the history document. Every
number is computed here from the stored runs; nothing is typed in by hand.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

from bench.suite.labels import (COLD_ORDER, DATASET as MAIN_DATASET, QUALITY_ORDER, canonical_label, is_current,
                                overrides_of, run_label)
from bench.suite.plots import GB, plot_curves, plot_scaling, plot_speed_bars
from bench.suite.results import load_results, write_json

SECTIONS = ["intro", "targets", "quality", "coldstart", "speed", "scaling", "recommend", "scale", "transfer", "method"]
MAIN_METRICS = ("recall@10", "ndcg@10", "mrr@10")
QUALITY_HEADER = ("| model | seeds | epochs (best) | Recall@10 | NDCG@10 | MRR@10 | NDCG@10, history removed |",
                  "|---|---|---|---|---|---|---|")


# ---------------------------------------------------------------------------- small helpers
def done(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r.get("status") == "done"]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def fmt_ms(values: list[float], digits: int = 4) -> str:
    m, s = mean_std(values)
    if math.isnan(m):
        return "—"
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if s is not None else "")


def fmt(x, digits=2, suffix=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}{suffix}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def by_label(runs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in runs:
        out.setdefault(run_label(r), []).append(r)
    return out


def time_to_reach(run: dict, target: float, key: str = "score") -> float | None:
    """Wall seconds (training + validation since fit started) at the first validation >= target (``key``: the
    curve's selection score, or e.g. ``valid_history_removed``)."""
    for p in run.get("curve", []):
        if "score" in p and p[key] >= target - 1e-12:
            return p["wall_s"]
    return None


def best_point(run: dict, key: str = "score") -> dict | None:
    scored = [p for p in run.get("curve", []) if "score" in p]
    return max(scored, key=lambda p: p[key]) if scored else None


def capped(run: dict) -> bool:
    """Whether a run was stopped by its wall-time budget, or by its epoch budget (``epochs``, when more than one: a
    one-epoch run is training-free), before early stopping would have stopped it. Early stopping (RecBole's, and the
    worker's for a selected baseline) stops once more than ``stopping_step`` validations have followed the best one;
    a run whose budget ran out on that validation met both rules at once, so it counts as converged."""
    config = (run.get("spec") or {}).get("config") or {}
    epochs = config.get("epochs")
    last = max((p["epoch"] for p in run.get("curve", [])), default=None)
    out_of_epochs = epochs is not None and int(epochs) > 1 and last is not None and last + 1 >= int(epochs)
    if not (run.get("stopped_by_budget") or out_of_epochs):
        return False
    patience = config.get("stopping_step")
    best = best_point(run)
    if patience is None or best is None:
        return True
    after = sum(1 for p in run.get("curve", []) if "score" in p and p["epoch"] > best["epoch"])
    return after <= int(patience)


def status_line(runs: list[dict]) -> str:
    bad = [r for r in runs if r.get("status") != "done"]
    return "" if not bad else "; ".join(f"{r.get('label')}: {r.get('status')} {str(r.get('error', ''))[:120]}"
                                        for r in bad)


# ---------------------------------------------------------------------------- derived numbers
def speed_numbers(speed: dict) -> dict:
    tags = {r.get("tag"): r for r in speed.get("runs", [])}
    out: dict = {"tags": tags}
    sas, pmm, k1 = tags.get("sasrec"), tags.get("pmmrec"), tags.get("pmmrec_k1")
    if sas and best_point(sas):
        sb = best_point(sas)
        out["sasrec_best"], out["sasrec_time"] = sb["score"], sb["wall_s"]
        for name, run in (("pmmrec", pmm), ("pmmrec_k1", k1)):
            if run and best_point(run):
                reach = time_to_reach(run, sb["score"])
                own = best_point(run)
                out[f"{name}_reached"] = reach is not None
                out[f"{name}_ttq"] = (reach if reach is not None else own["wall_s"]) / sb["wall_s"]
                out[f"{name}_best"], out[f"{name}_best_time"] = own["score"], own["wall_s"]
                # both at the same quality: the lower of the two bests, reached by both
                common = min(own["score"], sb["score"])
                t_run, t_sas = time_to_reach(run, common), time_to_reach(sas, common)
                out[f"{name}_common"] = common
                out[f"{name}_common_times"] = (t_run, t_sas)
                out[f"{name}_ttq_common"] = t_run / t_sas if t_run and t_sas else None
    # the same under one protocol: validation with the input history removed for both (recorded since 2026-11-30)
    hr = "valid_history_removed"
    if sas and pmm and all(hr in p for r in (sas, pmm) for p in r.get("curve", []) if "score" in p) \
            and best_point(sas) and best_point(pmm):
        sb, own = best_point(sas, hr), best_point(pmm, hr)
        reach = time_to_reach(pmm, sb[hr], hr)
        out.update(sasrec_best_hr=sb[hr], sasrec_time_hr=sb["wall_s"], pmmrec_best_hr=own[hr],
                   pmmrec_best_time_hr=own["wall_s"], pmmrec_reached_hr=reach is not None,
                   pmmrec_ttq_hr=(reach if reach is not None else own["wall_s"]) / sb["wall_s"])
    for name, run in (("sasrec", sas), ("pmmrec", pmm), ("pmmrec_k1", k1)):
        if run:
            out[f"{name}_epoch_s"] = median([p.get("train_s") for p in run.get("curve", [])])
            out[f"{name}_eval_s"] = median([p.get("valid_s") for p in run.get("curve", [])])
            out[f"{name}_rss"] = run.get("peak_rss_bytes")
    for name in ("pmmrec", "pmmrec_k1"):
        if out.get(f"{name}_epoch_s") and out.get("sasrec_epoch_s"):
            out[f"{name}_epoch_ratio"] = out[f"{name}_epoch_s"] / out["sasrec_epoch_s"]
        if out.get(f"{name}_eval_s") and out.get("sasrec_eval_s"):
            out[f"{name}_eval_ratio"] = out[f"{name}_eval_s"] / out["sasrec_eval_s"]
    for suffix in ("_ti", ""):  # text + image (the default modalities), text only
        c, e = tags.get(f"subset_cached{suffix}"), tags.get(f"subset_e2e{suffix}")
        if c and e and c.get("epoch_s") and e.get("epoch_s"):
            n = min(len(c["epoch_s"]), len(e["epoch_s"]))  # the same number of epochs of each (first ones)
            out[f"cached_epoch_s{suffix}"], out[f"e2e_epoch_s{suffix}"] = min(c["epoch_s"][:n]), min(e["epoch_s"][:n])
            out[f"cached_speedup{suffix}"] = out[f"e2e_epoch_s{suffix}"] / out[f"cached_epoch_s{suffix}"]
            out[f"e2e_complete{suffix}"] = e.get("status") == "done"
    f, w = tags.get("build_fresh"), tags.get("build_warm")
    if f and w and f.get("data_s") is not None and w.get("data_s") is not None:
        out["cache_build_s"] = f["data_s"] - w["data_s"]
        out["build_fresh_rss"], out["build_fresh_data_s"], out["build_warm_data_s"] = (
            f.get("peak_rss_bytes"), f["data_s"], w["data_s"])
    return out


def quality_table_rows(runs: list[dict]) -> dict[str, dict]:
    rows = {}
    for label, rs in by_label(done(runs)).items():
        rows[label] = {"n": len(rs), "seeds": sorted(r.get("seed") for r in rs),
                       "dataset": rs[0]["spec"].get("dataset", MAIN_DATASET),  # one per row (run_label)
                       "test": {m: [r["test"]["all"][m] for r in rs] for m in MAIN_METRICS},
                       "test_recbole": [r.get("test_recbole", {}).get("ndcg@10") for r in rs],
                       "history_removed": [r["test"].get("all_history_removed", {}).get("ndcg@10") for r in rs],
                       "history_removed_by_seed": {r.get("seed"): r["test"].get("all_history_removed", {}).get("ndcg@10")
                                                   for r in rs},
                       "epochs": [len(r.get("curve", [])) for r in rs],
                       "best_epoch": [(best_point(r) or {}).get("epoch") for r in rs],
                       "budget": any(capped(r) for r in rs),
                       # the data's users repeat items: exclude_history ~ kept the history in the ranking
                       "repeats": any((r["spec"].get("resolved") or {}).get("exclude_history") is False for r in rs)}
        if all("cold" in r["test"] for r in rs):
            for group in ("cold", "warm"):
                rows[label][group] = {m: [r["test"][group][m] for r in rs] for m in MAIN_METRICS}
                rows[label][f"n_{group}"] = [r["test"][group]["n"] for r in rs]
            rows[label]["cold_recall_by_seed"] = {r.get("seed"): r["test"]["cold"]["recall@10"] for r in rs}
    return rows


def fit_loglog(xs: list[float], ys: list[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


def fit_two(xs1, xs2, ys):
    """Least squares log y = a + b log x1 + c log x2; (b, c) or None."""
    import numpy as np

    rows = [(1.0, math.log(a), math.log(b), math.log(y)) for a, b, y in zip(xs1, xs2, ys) if a and b and y]
    if len(rows) < 3:
        return None
    m = np.array(rows)
    coef, *_ = np.linalg.lstsq(m[:, :3], m[:, 3], rcond=None)
    if np.linalg.matrix_rank(m[:, :3]) < 3:
        return None
    return float(coef[1]), float(coef[2])


def scaling_numbers(scaling: dict) -> dict:
    rows = []
    for r in [r for r in scaling.get("runs", []) if r.get("status") == "done" or r.get("epoch_s")]:
        rows.append({"label": r["label"] + ("" if r.get("status") == "done" else f" ({r.get('status')}, "
                                            f"{len(r['epoch_s'])} epoch)"), "partial": r.get("status") != "done",
                     "n_inter": r.get("n_inter"), "n_items": r.get("n_items"),
                     "n_rows": r.get("n_train_rows"), "epoch_s": min(r["epoch_s"]) if r.get("epoch_s") else None,
                     "rss": r.get("peak_rss_bytes"), "data_s": _setup_s(r, with_model=False),
                     "generate_s": r.get("generate_s"),
                     "n_inter_target": r.get("n_inter_target"), "n_items_target": r.get("n_items_target")})
    rows.sort(key=lambda r: (r["n_inter"] or 0, r["n_items"] or 0))
    out = {"rows": rows, "failed": [r for r in scaling.get("runs", []) if r.get("status") != "done"]}
    diag = [r for r in rows if r["n_inter_target"] and r["n_items_target"]
            and r["n_inter_target"] == 10 * r["n_items_target"]]
    out["slope_diag"] = fit_loglog([r["n_inter"] for r in diag], [r["epoch_s"] for r in diag])
    out["rss_slope_diag"] = fit_loglog([r["n_inter"] for r in diag], [r["rss"] for r in diag])
    two = fit_two([r["n_inter"] for r in rows], [r["n_items"] for r in rows], [r["epoch_s"] for r in rows])
    out["slope_inter"], out["slope_items"] = two if two else (None, None)
    return out


# ---------------------------------------------------------------------------- sections
def section_intro(q: dict, cs: dict) -> str:
    return f"""# Benchmarks

Is PMMRec (this plugin) better than RecBole's own sequential baselines, and at what cost? Per data set, PMMRec
with the settings recommended for that kind of data against SASRec and the training-free ContentKNN floor (test
NDCG@10, leave-one-out split by time, full ranking over all items):

{readme_results(q, cs, pointer=False)}

The cost (epoch and evaluation time, memory, time to SASRec's best validation) is in the targets table below and
in [Speed and memory](#speed-and-memory). All models run through this plugin's entry point on the same atomic files: by default
**ml100k-posters** (MovieLens-100K with TMDB titles, genres, overviews and posters); `--dataset` adds the other
data sets. The targets table answers the issue's goals; the tables after it give the numbers, and
[how they are made](#how-these-numbers-are-made) comes last. Settings measured and not adopted, and the
cold-start diagnostics: [docs/benchmarks-history.md](docs/benchmarks-history.md) (generated with this file);
hand-written notes on the runs and decisions: [docs/benchmarks-notes.md](docs/benchmarks-notes.md).
"""


def section_method(meta: dict) -> str:
    date = meta.get("date", "—")
    load = meta.get("loadavg_at_start")
    return f"""## How these numbers are made

```bash
python -m dataset_tools.convert movielens-posters --input PATH/ml100k_posters --output /tmp/pmmrec_data
python bench/run.py all --data-dir /tmp/pmmrec_data --seeds 3     # or one part: speed | quality | coldstart | scaling
python bench/run.py report                                       # rewrite this file from bench/results/*.json
```

Each run is its own subprocess (`bench/suite/worker.py`), which calls `run_recbole_pmmrec` as a user would and
records every epoch through its `epoch_callback` (runs made before 2026-12-03 built the same objects with the
package's factories and timed the trainer's epochs from outside; the report reads both kinds of record).
`--dataset NAME` runs the quality or cold-start part on another
converted data set (for example `microlens-50k`, converted by `python -m dataset_tools.convert microlens ...
--name microlens-50k`); its runs get rows of their own, labelled "... on NAME". A finished run is reused only if
it started from the same `.yaml` defaults and RecBole version as the invocation (`defaults` in its record).
When a default changes, `python bench/run.py stamp --set KEY=OLD_VALUE ... [--write]` writes the old values into
the stored runs made before it, so that they stay rows of their own instead of passing for today's default.
`--seed-list` picks seeds; the cold-start part also takes 2023 and 2024, because each seed has only ~87 cold
test rows here (its tables pool every seed of a model and say how many).

Every number here is computed by `bench/suite/report.py` from the JSON under `bench/results/` (nothing is
typed in by hand); a row's label and settings come from the spec stored with each run. Machine of the last run:
{meta.get('cpus', '?')} CPUs, no GPU, started {date}, load average at start {fmt(load[0], 1) if load else '—'}
(shared with other jobs, so absolute seconds are noisy; compare the **ratios**, which come from runs made back
to back in one invocation). With `--threads 1`, two `bench/run.py` processes can share the 2 cores, one run per
core; the speed section says how its runs shared the machine. Studies outside the suite live in
`bench/studies/` (each writes its own `bench/results/NAME.json`).
"""


def _target_row(name: str, target: str, value: str, ok: bool | None) -> str:
    """One row of the targets table; ``ok`` None: no verdict."""
    mark = "—" if ok is None else ("met" if ok else "**missed**")
    return f"| {name} | {target} | {value} | {mark} |"


def _present(values: list) -> list:
    return [x for x in values if x is not None]


def _history_removed_row(ours: dict, base: dict | None, title: str, goal: str, final: bool, why: str,
                         each_seed_ratio: float | None = None) -> list[str]:
    """The targets row comparing two quality rows' mean test NDCG@10 with the input history removed (none when
    either has no such value): ``title`` gets the two seed counts; a verdict only when ``final`` and both have 3
    seeds or more, else ``why`` follows the value. The verdict is ours >= base; with ``each_seed_ratio`` it is ours
    >= that ratio x base on the mean and ahead on every seed both ran (the row then counts those seeds)."""
    a_all, b_all = _present(ours["history_removed"]), _present(base["history_removed"]) if base else []
    if not (a_all and b_all):
        return []
    a, b = mean_std(a_all)[0], mean_std(b_all)[0]
    ok = final and min(len(a_all), len(b_all)) >= 3
    measured, met = f"{a:.4f} vs {b:.4f} ({a / b:.2f}x)", a >= b
    if each_seed_ratio is not None:
        mine, theirs = ours.get("history_removed_by_seed", {}), base.get("history_removed_by_seed", {})
        paired = [seed for seed in mine if mine[seed] is not None and theirs.get(seed) is not None]
        ahead = sum(mine[seed] > theirs[seed] for seed in paired)
        measured = f"{a:.4f} vs {b:.4f} ({a / b:.2f}x; ahead on {ahead} of {len(paired)} paired seeds)"
        met = a >= each_seed_ratio * b and ahead == len(paired)
    return [_target_row(title.format(len(a_all), len(b_all)), goal, measured + ("" if ok else why),
                        met if ok else None)]


def section_targets(sp: dict, q: dict, cs: dict, sc: dict, qruns: list[dict] | None = None) -> str:
    row = _target_row
    lines = ["## Targets at a glance", "", "| target | goal | measured | |", "|---|---|---|---|"]
    if sp.get("pmmrec_ttq_hr") is not None:
        ttq = sp["pmmrec_ttq_hr"]
        lines.append(row("time to SASRec's best validation NDCG@10, PMMRec / SASRec, both with the input history "
                         "removed", "<= 1.0", fmt(ttq) + ("" if sp["pmmrec_reached_hr"] else
                                                        " (not reached: ratio at PMMRec's best)"),
                         ttq <= 1.0 and sp["pmmrec_reached_hr"]))
    ttq = sp.get("pmmrec_ttq")
    lines.append(row("time to SASRec's best validation NDCG@10, PMMRec / SASRec, each as RecBole evaluates it"
                     + (" (PMMRec removes history items itself, SASRec does not)" if sp.get("pmmrec_ttq_hr") is not None
                        else ""), "<= 1.0",
                     fmt(ttq) + ("" if sp.get("pmmrec_reached", True) else " (not reached: ratio at PMMRec's best)"),
                     None if ttq is None else (ttq <= 1.0 and sp.get("pmmrec_reached", False))))
    for key, goal, lim in (("pmmrec_epoch_ratio", "<= 1.0", 1.0), ("pmmrec_eval_ratio", "<= 2.0", 2.0)):
        v = sp.get(key)
        name = "seconds per epoch, PMMRec / SASRec" if "epoch" in key else "seconds per full evaluation, PMMRec / SASRec"
        lines.append(row(name, goal, fmt(v), None if v is None else v <= lim))
    for suffix, what in (("_ti", "text + image"), ("", "text only")):
        v = sp.get(f"cached_speedup{suffix}")
        if v is not None or suffix == "_ti":
            lines.append(row(f"epoch time end_to_end / cached, {what} (same k = 1, subset)", ">= 5", fmt(v, 1),
                             None if v is None else v >= 5))
    v = sp.get("pmmrec_rss")
    lines.append(row("peak RSS, PMMRec training on ml100k-posters", "<= 4 GB", fmt(v / GB if v else None, 2, " GiB"),
                     None if v is None else v <= 4 * GB))
    big = [r for r in sc.get("rows", []) if (r.get("n_items") or 0) >= 90_000]
    v = max((r["rss"] for r in big), default=None)
    lines.append(row("peak RSS, cache build + training with 10^5 items (synthetic, tiny encoder)", "<= 2 GB",
                     fmt(v / GB if v else None, 2, " GiB"), None if v is None else v <= 2 * GB))
    s = sc.get("slope_inter") if sc.get("slope_inter") is not None else sc.get("slope_diag")
    lines.append(row("log-log slope of epoch time vs interactions", "<= 1.1", fmt(s), None if s is None else s <= 1.1))
    pm, sa = q.get("PMMRec"), q.get("SASRec")
    if pm and sa:
        a, b = mean_std(pm["test"]["ndcg@10"])[0], mean_std(sa["test"]["ndcg@10"])[0]
        final = not (pm["budget"] or sa["budget"]) and min(pm["n"], sa["n"]) >= 3
        note = "" if final else " (budget-capped or < 3 seeds: no verdict)"
        lines += _history_removed_row(
            pm, sa, "test NDCG@10, PMMRec vs SASRec, both with the input history removed (mean of {} / {} seeds)",
            ">= SASRec", final, " (< 3 seeds with this record: no verdict)")
        hr_sel = q.get("SASRec hr-selected")  # SASRec also stopped and selected by that rule
        lines += _history_removed_row(
            pm, hr_sel, "test NDCG@10, PMMRec vs SASRec hr-selected (SASRec stopped and selected by validation with "
            "the history removed; mean of {} / {} seeds)", ">= SASRec", final and not (hr_sel or {}).get("budget"),
            " (budget-capped or < 3 seeds: no verdict)")
        lines.append(row(f"test NDCG@10, PMMRec vs SASRec, each as RecBole evaluates it (mean of {pm['n']} / "
                         f"{sa['n']} seeds)", ">= SASRec",
                         f"{a:.4f} vs {b:.4f} ({a / b:.2f}x){note}", (a >= b) if final else None))
    else:
        lines.append(row("test NDCG@10, PMMRec vs SASRec", ">= SASRec", "not run", None))
    lines += _other_datasets(q, qruns or [])
    pc = cs.get("PMMRec")
    if pc and "cold" in pc:
        c, w = mean_std(pc["cold"]["recall@10"])[0], mean_std(pc["warm"]["recall@10"])[0]
        lines.append(row("PMMRec Recall@10 on cold targets / warm targets", ">= 0.5",
                         f"{c:.4f} / {w:.4f} = {c / w:.2f}" if w else "—", (c / w >= 0.5) if w else None))
    else:
        lines.append(row("PMMRec Recall@10 on cold / warm targets", ">= 0.5", "not run", None))
    for label, r in cs.items():  # the same protocol on other data sets (bench/run.py quality --dataset)
        if label.startswith("PMMRec") and r["dataset"] != MAIN_DATASET and "cold" in r:
            lines.append(row(*_cold_ratio(f"{label}: Recall@10 on cold targets / warm targets ({r['n']} seed"
                                          f"{'s' * (r['n'] > 1)}, ~{round(mean_std(r['n_cold'])[0])} cold rows each)",
                                          r, r["warm"]["recall@10"], 0.5)))
    for label, r in cs.items():  # issue 22's cold-start goal: PMMRec's cold hits against the training-free floor
        suffix = label[len("PMMRec"):] if label.startswith("PMMRec") else None
        knn = cs.get("ContentKNN" + suffix) if suffix == "" or (suffix or "").startswith(" on ") else None
        if not (knn and "cold" in r and "cold" in knn and set(r["seeds"]) <= set(knn["seeds"])):
            continue  # same seeds = the same cold items and rows: ContentKNN's runs of this row's seeds
        same_rows = [knn["cold_recall_by_seed"][seed] for seed in r["seeds"]]
        lines.append(row(*_cold_ratio(f"{label}: Recall@10 on cold targets / ContentKNN's on the same rows "
                                      f"({r['n']} seed{'s' * (r['n'] > 1)})", r, same_rows, 1.5)))
    return "\n".join(lines) + "\n"


# settings the README recommends for some data instead of the default: label -> (goal against SASRec hr-selected, when)
# (with the item ID on text alone, score_tau ~ gives cosine scores: "with item ID" is that setting there)
RECOMMENDED = {"PMMRec with item ID": (1.05, "recommended where every item to rank has training interactions"),
               # 0.8: cosine scores (score_tau 0.1) without the ID, opt-in while measured on a few data sets
               "PMMRec cosine 0.1": (1.0, "cosine scores, score_tau 0.1")}


def _other_datasets(q: dict, runs: list[dict]) -> list[str]:
    """Issue 22's quality and time targets on each data set other than the main one, from the quality part's
    runs there: PMMRec's test NDCG@10 (input history removed) against SASRec hr-selected's, and, per seed that both
    ran, PMMRec's wall time to SASRec's best validation NDCG@10 (history removed) over SASRec's time to it.
    A verdict needs 3 seeds and no budget-stopped run; otherwise the row says why there is none. Each
    ``RECOMMENDED`` setting that ran there gets the same two rows."""
    lines = []
    datasets = sorted({r["dataset"] for r in q.values()} - {MAIN_DATASET})
    for dataset in datasets:
        pm, sa = q.get(f"PMMRec on {dataset}"), q.get(f"SASRec hr-selected on {dataset}")
        if not (pm and sa):
            continue
        no_verdict = " (budget-capped or < 3 seeds: no verdict)"
        quality, times = [], []
        # the default, then each recommended setting other than it that ran there (RECOMMENDED): a quality row each,
        # all quality rows before the time rows
        for label in ["PMMRec", *RECOMMENDED]:
            ours = q.get(f"{label} on {dataset}")
            if not ours:
                continue
            judged = not (ours["budget"] or sa["budget"]) and min(len(_present(ours["history_removed"])),
                                                                  len(_present(sa["history_removed"]))) >= 3
            if label in RECOMMENDED:
                goal, what = RECOMMENDED[label]
                quality += _history_removed_row(
                    ours, sa, f"{dataset}: test NDCG@10, {label} ({what}) vs SASRec hr-selected, both with the input "
                    "history removed (mean of {} / {} seeds)", f">= {goal:.2f}x, ahead on each seed", judged,
                    no_verdict, each_seed_ratio=goal)
            else:
                quality += _history_removed_row(ours, sa, f"{dataset}: test NDCG@10, PMMRec vs SASRec hr-selected, "
                                                "both with the input history removed (mean of {} / {} seeds)",
                                                ">= 1.0x", judged, no_verdict)
            times += _time_to_best_row(dataset, label, runs, "" if judged else no_verdict)
        lines += quality + times
    return lines


def _time_to_best_row(dataset: str, label: str, runs: list[dict], why: str) -> list[str]:
    """The time target's row for ``label`` on ``dataset``: per seed that it and SASRec hr-selected both ran, its
    wall time to SASRec's best validation NDCG@10 (history removed) over SASRec's time to it. ``why`` (empty when a
    verdict may be given) follows the value otherwise."""
    hr = "valid_history_removed"
    ours, theirs = f"{label} on {dataset}", f"SASRec hr-selected on {dataset}"
    by_seed = {}
    for r in done(runs):
        row = run_label(r)
        if row in (ours, theirs):
            by_seed.setdefault(r.get("seed"), {})["sas" if row == theirs else "pmm"] = r
    parts, ratios, reached_all = [], [], True
    for seed, pair in sorted(by_seed.items()):
        if len(pair) < 2 or not all(hr in p for r in pair.values() for p in r.get("curve", []) if "score" in p):
            continue
        sb, own = best_point(pair["sas"], hr), best_point(pair["pmm"], hr)
        if not (sb and own):
            continue
        reach = time_to_reach(pair["pmm"], sb[hr], hr)
        if reach is None:
            reached_all = False
            parts.append(f"seed {seed}: not reached ({own[hr]:.4f} against {sb[hr]:.4f})")
        else:
            ratios.append(reach / sb["wall_s"])
            parts.append(f"seed {seed}: {reach / 60:.0f} / {sb['wall_s'] / 60:.0f} min = {ratios[-1]:.2f}")
    if not parts:
        return []
    ok = not why and reached_all and len(ratios) >= 3
    return [_target_row(f"{dataset}: time to SASRec hr-selected's best validation NDCG@10 (history removed), "
                        f"{label} / SASRec, wall time per seed", "<= 1.0", f"{'; '.join(parts)}{why}",
                        (max(ratios) <= 1.0) if ok else None)]


def _cold_ratio(title: str, r: dict, against: list, goal: float) -> tuple:
    """A targets row's (name, goal, value, verdict): mean cold-target Recall@10 of row ``r`` over the mean of
    ``against``, judged against ``goal`` only with 3 seeds or more and no budget-stopped run."""
    c, w = mean_std(r["cold"]["recall@10"])[0], mean_std(against)[0]
    ok = (c / w >= goal) if w and r["n"] >= 3 and not r["budget"] else None
    return (title, f">= {goal}", (f"{c:.4f} / {w:.4f} = {c / w:.2f}" if w else "—")
            + ("" if ok is not None else " (budget-capped or < 3 seeds: no verdict)"), ok)


def _quality_row(label: str, r: dict) -> str:
    ep = ", ".join(f"{e} ({(b or 0) + 1})" for e, b in zip(r["epochs"], r["best_epoch"]))
    mark = " †" if r["budget"] else ""
    removed = [x for x in r["history_removed"] if x is not None]
    removed = (fmt_ms(removed) + (f" ({len(removed)} of {r['n']})" if len(removed) < r["n"] else "")) if removed else "–"
    return (f"| {label}{mark} | {r['n']} | {ep} | " + " | ".join(fmt_ms(r["test"][m]) for m in MAIN_METRICS)
            + f" | {removed} |")


QUALITY_INTRO = (
    "Test metrics of the checkpoint with the best validation NDCG@10 (early stopping, patience {patience} "
    "validations), full ranking over all items, mean ± sample standard deviation over seeds. PMMRec: text (MiniLM) "
    "+ image (EfficientNet-Lite0), frozen encoders with cached states, d = 64 (see `properties/model/PMMRec.yaml`); "
    "the ablations change one key each. Baselines run with RecBole's default hyper-parameters for the model and "
    "this plugin's protocol (`properties/overall.yaml`: CE loss, MAX_ITEM_LIST_LENGTH 20); FDSA uses the `genres` "
    "feature. RecBole ranks every item, also those in the user's input history; PMMRec (`exclude_history: True`) "
    "ranks only the others, as the authors' evaluation does. The last column applies that rule to every model "
    "after the fact (`bench/suite/ranks.py`; recorded for runs made since 2026-11-30), so that each model can be "
    "compared under either protocol. `SASRec hr-selected` is SASRec whose early stopping and checkpoint follow "
    "validation NDCG@10 under that rule instead of RecBole's (`SELECT` in `bench/suite/labels.py`), the fairer "
    "baseline for the history-removed column.")


def split_current(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(runs of today's settings, older runs): ``labels.is_current`` on each stored run's label and spec. Of two
    finished runs of today's settings with the same row and seed (the same setting run again under other run keys,
    e.g. another epoch cap or budget) only the later one counts, so that no seed is counted twice; the earlier
    goes with the older runs, under its own row ("LABEL (superseded)"), so that it is not averaged with runs of
    settings that have since left."""
    current = [r for r in runs if is_current(r)]
    latest = {(run_label(r), r.get("seed")): i for i, r in enumerate(current) if r.get("status") == "done"}
    kept = [r for i, r in enumerate(current)
            if r.get("status") != "done" or latest[(run_label(r), r.get("seed"))] == i]
    ids = {id(r) for r in kept}
    superseded = {id(r) for r in current} - ids
    return kept, [dict(r, label=f"{r.get('label', r['spec']['model'])} (superseded)") if id(r) in superseded else r
                  for r in runs if id(r) not in ids]


def _settings(runs: list[dict]) -> str:
    """The config overrides a row's runs were made with, from their stored specs (`k: v`, ...; "default")."""
    texts = dict.fromkeys(_keys_text(overrides_of(r.get("spec") or {})) or "default" for r in runs)
    return " / ".join(texts)


def _table(runs: list[dict], header: tuple[str, str], order, row, with_settings: bool) -> tuple[list[str], dict]:
    """(lines, rows) of a table of these runs, one row per label, largest ``order(row)`` first; ``row(label, r)``
    gives a row's text (None: no row); ``with_settings``: a last column with the overrides of the row's runs."""
    rows = quality_table_rows(runs)
    groups = by_label(done(runs))
    head, rule = header
    lines = [head + " settings |", rule + "---|"] if with_settings else [head, rule]
    for label, r in sorted(rows.items(), key=lambda kv: -order(kv[1])):
        line = row(label, r)
        if line is not None:
            lines.append(line + (f" {_settings(groups[label])} |" if with_settings else ""))
    return lines, rows


def quality_table(runs: list[dict], with_settings: bool = False) -> list[str]:
    """The quality table of these runs, best test NDCG@10 first (``with_settings``: a column with the overrides)."""
    lines, rows = _table(runs, QUALITY_HEADER, lambda r: mean_std(r["test"]["ndcg@10"])[0], _quality_row,
                         with_settings)
    return lines + _budget_note(rows, runs)


def section_quality(quality: dict, plots_dir: Path, md_dir: Path) -> str:
    runs = quality.get("runs", [])
    current, _ = split_current(runs)
    suite = [r for r in current if r.get("label") in QUALITY_ORDER and run_label(r) == r.get("label")]
    others = [r for r in current if r not in suite]
    lines = ["## Quality", "", QUALITY_INTRO.format(patience=_patience(runs)), ""]
    lines += quality_table(suite) if done(suite) else [*QUALITY_HEADER, "| (not run yet) | | | | | | |"]
    if done(others):
        lines += ["", "Other settings of today's package, tried against the default (each row's overrides from its "
                      "runs' stored specs), same protocol:", "", *quality_table(others, with_settings=True)]
    rows = quality_table_rows(current)
    check = [(a, b) for r in rows.values() for a, b in zip(r["test"]["ndcg@10"], r["test_recbole"]) if b is not None]
    if check:
        diff = max(abs(a - b) for a, b in check)
        lines += ["", f"The metrics are recomputed from each test row's target rank (ties broken by item id); "
                      f"largest difference to RecBole's own evaluator over these runs: {diff:.4f} NDCG@10."]
    bad = status_line(runs)
    if bad:
        lines += ["", f"Not finished: {bad}."]
    lines += _not_run_note(quality_table_rows(suite), QUALITY_ORDER)
    first = [r for r in done(suite) if r.get("seed") == min(x.get("seed", 0) for x in done(suite))]
    if plot_curves(first, plots_dir / "quality_valid_curves.png", "epoch", "Validation NDCG@10 per epoch (first seed)"):
        lines += ["", f"![validation curves]({_rel(plots_dir / 'quality_valid_curves.png', md_dir)})"]
    return "\n".join(lines) + "\n"


COLD_HEADER = ("| model | seeds | cold rows | Recall@10 warm | Recall@10 cold | cold / warm | cold hits (95% interval of "
               "cold / warm) | NDCG@10 warm | NDCG@10 cold | NDCG@10 all |", "|---|---|---|---|---|---|---|---|---|---|")


def _cold_row(label: str, r: dict) -> str | None:
    if "cold" not in r:
        return None
    c, w = mean_std(r["cold"]["recall@10"])[0], mean_std(r["warm"]["recall@10"])[0]
    return (f"| {label}{' †' if r['budget'] else ''} | {r['n']} | {round(mean_std(r['n_cold'])[0])} | "
            f"{fmt_ms(r['warm']['recall@10'])} | {fmt_ms(r['cold']['recall@10'])} | {fmt(c / w if w else None)} | "
            f"{_pooled_hits(r, w)} | {fmt_ms(r['warm']['ndcg@10'])} | {fmt_ms(r['cold']['ndcg@10'])} | "
            f"{fmt_ms(r['test']['ndcg@10'])} |")


def cold_table(runs: list[dict], with_settings: bool = False) -> list[str]:
    """The cold-start table of these runs, best cold Recall@10 first; the footnotes on cold hits and budgets."""
    lines, rows = _table(runs, COLD_HEADER, lambda r: mean_std(r.get("cold", {}).get("recall@10", [0]))[0],
                         _cold_row, with_settings)
    if len(lines) == 2:
        lines.append("| (not run yet) |" + " |" * (9 + with_settings))
    lines += ["", "Cold hits: test rows with a cold target ranked in the top 10, summed over the seeds, of all cold "
                  "rows; the interval is the 95% Wilson interval of the pooled cold Recall@10, divided by the mean "
                  "warm Recall@10 (whose own error is much smaller: ten times the rows). With ~87 cold rows per "
                  "seed, one hit moves a seed's ratio by about 0.1."]
    return lines + _budget_note(rows, runs)


def section_coldstart(cold: dict) -> str:
    runs = cold.get("runs", [])
    current, _ = split_current(runs)
    lines = ["## Cold start", "",
             "`cold_item_ratio: 0.1` for every model (`recbole_pmmrec/data/splits.py`): 10% of the items, drawn "
             "with the run's seed, lose all their training interactions (removed from training histories and "
             "targets) and stay ranking candidates; validation and test rows are unchanged, so some test targets "
             "are items no model saw in training. After training, `bench/suite/worker.py` scores the test rows "
             "again with the trainer's own full-ranking scores (history items masked as RecBole does), takes the "
             "rank of each row's target and splits the rows by `dataset.cold_items[target]`. An ID model has only "
             "an untrained embedding for a cold item; PMMRec computes it from its text and poster. Today's "
             "settings only; the diagnostics (by epoch, by popularity, a score offset for new items) and older "
             "settings are in [docs/benchmarks-history.md](docs/benchmarks-history.md).", ""]
    lines += cold_table(current)
    lines += _not_run_note(quality_table_rows([r for r in current if run_label(r) == r.get("label")]), COLD_ORDER)
    bad = status_line(runs)
    if bad:
        lines += ["", f"Not finished: {bad}."]
    return "\n".join(lines) + "\n"


def cold_studies(cold: dict) -> str:
    """The history document's cold-start part: older settings, then the diagnostics of every run."""
    runs = cold.get("runs", [])
    _, older = split_current(runs)
    lines = ["## Cold start: older settings and diagnostics", ""]
    if done(older):
        lines += ["Runs of settings that changed or left the package since (each row's overrides from its runs' "
                  "stored specs; `v0.x` labels: that version's default), same protocol as BENCHMARKS.md:", "",
                  *cold_table(older, with_settings=True)]
    lines += _cold_by_epoch(runs)
    lines += _cold_diagnosis(runs)
    lines += _new_item_offset(runs)
    return "\n".join(lines) + "\n"


def quality_history(quality: dict) -> str:
    """The history document's quality part: runs of settings that changed or left the package."""
    _, older = split_current(quality.get("runs", []))
    if not done(older):
        return ""
    return "\n".join(["## Quality: older settings", "",
                      "Runs of settings that changed or left the package since (each row's overrides from its runs' "
                      "stored specs; `v0.x` labels: that version's default), same protocol as BENCHMARKS.md:", "",
                      *quality_table(older, with_settings=True)]) + "\n"


def _new_item_offset(runs: list[dict]) -> list[str]:
    """The runs that recorded the ``new_item_offset`` diagnostic: the offset for items without a training
    interaction chosen on validation, and the test rows with it (cold hits pooled over the runs)."""
    groups = {label: [r for r in rs if "new_item_offset" in r] for label, rs in by_label(done(runs)).items()}
    groups = {label: rs for label, rs in groups.items() if rs}
    if not groups:
        return []
    mean = statistics.fmean
    lines = ["", "Would a score offset for new items help? (`bench/suite/ranks.py`, `new_item_offset`.) After training, "
                 "an offset is added to the score of every item without a training interaction, chosen from -3 to 3 "
                 "score scales (a scale: the median over the rows of the 10th-highest score minus the median score) "
                 "to maximise validation NDCG@10 over all rows, then applied to the test rows. A negative offset "
                 "means new items score too high for how often they are the target. Per run: the chosen offset in "
                 "scales; cold hits and warm Recall@10 without / with it.", "",
              "| model | runs | offset (scales) per run | validation NDCG@10 without / with | cold hits without / with | "
              "Recall@10 warm without / with | NDCG@10 all without / with |",
              "|---|---|---|---|---|---|---|"]
    for label, rs in sorted(groups.items()):
        o = [r["new_item_offset"] for r in rs]
        n_cold = sum(r["test"]["cold"]["n"] for r in rs)
        before = _hits([r["test"]["cold"]["recall@10"] for r in rs], [r["test"]["cold"]["n"] for r in rs])
        after = _hits([x["test"]["cold"]["recall@10"] for x in o], [x["test"]["cold"]["n"] for x in o])
        steps = " / ".join(f"{x['step']:+.1f}" for x in o)
        lines.append(
            f"| {label} | {len(rs)} | {steps} | "
            f"{fmt(mean([x['valid_ndcg@10']['zero'] for x in o]), 4)} / "
            f"{fmt(mean([x['valid_ndcg@10']['chosen'] for x in o]), 4)} | {before} / {after} of {n_cold} | "
            f"{fmt(mean([r['test']['warm']['recall@10'] for r in rs]), 3)} / "
            f"{fmt(mean([x['test']['warm']['recall@10'] for x in o]), 3)} | "
            f"{fmt(mean([r['test']['all']['ndcg@10'] for r in rs]), 4)} / "
            f"{fmt(mean([x['test']['all']['ndcg@10'] for x in o]), 4)} |")
    return lines


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``hits / n``."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def _hits(recalls: list[float], rows: list[int]) -> int:
    """Rows with the target in the top 10, summed over runs, from each run's Recall@10 and row count."""
    return sum(round(rec * n) for rec, n in zip(recalls, rows))


def _pooled_hits(row: dict, warm: float) -> str:
    """'H / N (lo-hi)': cold rows ranked in the top 10 over all seeds, and the Wilson interval of the pooled cold
    Recall@10 divided by the mean warm Recall@10."""
    rows_n = [int(n) for n in row["n_cold"]]
    hits = _hits(row["cold"]["recall@10"], rows_n)
    lo, hi = wilson(hits, sum(rows_n))
    return f"{hits} / {sum(rows_n)} ({fmt(lo / warm if warm else None)}-{fmt(hi / warm if warm else None)})"


def _cold_by_epoch(runs: list[dict], max_rows: int = 20) -> list[str]:
    """Validation Recall@10 split by cold / warm target after each epoch, pooled over the seeds (runs whose
    worker recorded ``valid_cold``), and at the epoch early stopping selected."""
    lines = []
    for label, rs in by_label(done(runs)).items():
        rs = [r for r in rs if any("valid_cold" in p for p in r.get("curve", []))]
        if not rs:
            continue

        def pooled(points):
            hits = _hits([p["valid_cold"]["recall@10"] for p in points], [p["valid_cold"]["n"] for p in points])
            n_cold = sum(p["valid_cold"]["n"] for p in points)
            warm = statistics.fmean(p["valid_warm"]["recall@10"] for p in points)
            ratio = hits / n_cold / warm if n_cold and warm else None
            return (f"{len(points)} | {hits} / {n_cold} | {fmt(hits / n_cold if n_cold else None, 4)} | "
                    f"{fmt(warm, 4)} | {fmt(ratio)} | {fmt_ms([p['score'] for p in points])} |")

        if not lines:
            lines += ["", "Validation rows by target after each epoch (`bench/suite/worker.py` records them for cold-start "
                          "runs; the validation targets are other interactions than the test targets, so this is a "
                          "second sample), pooled over the seeds that reached the epoch:"]
        lines += ["", f"{label}:", "",
                  "| epoch | seeds | cold hits / rows | Recall@10 cold | Recall@10 warm | cold / warm | NDCG@10 all |",
                  "|---|---|---|---|---|---|---|"]
        n_epochs = max(len(r["curve"]) for r in rs)
        for e in range(min(n_epochs, max_rows)):
            points = [r["curve"][e] for r in rs if len(r["curve"]) > e and "valid_cold" in r["curve"][e]]
            if points:
                lines.append(f"| {e + 1} | " + pooled(points))
        best = [max((p for p in r["curve"] if "valid_cold" in p), key=lambda p: p["score"]) for r in rs]
        lines.append("| selected | " + pooled(best))
    return lines


def _cold_diagnosis(runs: list[dict]) -> list[str]:
    """Median target ranks and popularity-matched mean scores of cold vs warm items (runs that recorded them)."""
    by = {label: [r["test"]["diagnosis"] for r in rs if "diagnosis" in r.get("test", {})]
          for label, rs in by_label(done(runs)).items()}
    by = {label: ds for label, ds in by.items() if ds}
    if not by:
        return []
    mean = lambda xs: statistics.fmean(xs) if xs else None  # noqa: E731
    buckets = [(b["lo"], b["hi"]) for b in next(iter(by.values()))[0]["buckets"]]
    names = [f"{lo}-{hi - 1}" if hi < 10**9 else f">= {lo}" for lo, hi in buckets]
    lines = ["", "Why cold targets rank lower (`bench/suite/ranks.py`, `cold_diagnosis`; mean over the runs that recorded it): "
             "median 0-based rank of the test targets, the targets' median popularity (interactions in the whole "
             "data set), and the mean score of cold vs warm items within popularity buckets (over every test "
             "row where the item is a candidate). Where warm items of the same popularity score higher than cold "
             "ones, the model has fitted the warm items' own popularity from their content during training, "
             "which it cannot do for an item it never trained on. The last column ranks each cold target among "
             "the items without a training interaction only (`among_new_items`): whether the model tells cold "
             "items apart, whatever it makes of them against the trained ones; a random ranking gets about "
             "10 / (new items) of them in the top 10.", "",
             "| model | runs | median rank cold / warm | target popularity cold / warm | "
             + " | ".join(f"score cold / warm, popularity {n}" for n in names)
             + " | cold target among the new items: median rank, recall@10 (random) |",
             "|---|---|---|---|" + "---|" * len(names) + "---|"]
    for label, ds in by.items():
        cells = []
        for i in range(len(buckets)):
            c = mean([d["buckets"][i]["score_cold"] for d in ds if d["buckets"][i]["score_cold"] is not None])
            w = mean([d["buckets"][i]["score_warm"] for d in ds if d["buckets"][i]["score_warm"] is not None])
            n = round(mean([d["buckets"][i]["n_cold"] for d in ds]))
            cells.append(f"{fmt(c, 3)} / {fmt(w, 3)} ({n} cold)")
        lines.append(f"| {label} | {len(ds)} | {mean([d['median_rank']['cold'] for d in ds]):.0f} / "
                     f"{mean([d['median_rank']['warm'] for d in ds]):.0f} | "
                     f"{mean([d['target_popularity_median']['cold'] for d in ds]):.0f} / "
                     f"{mean([d['target_popularity_median']['warm'] for d in ds]):.0f} | " + " | ".join(cells)
                     + f" | {_among_new(ds)} |")
    return lines


def _among_new(ds: list[dict]) -> str:
    """Pooled ``among_new_items`` of one model's runs: mean median rank, recall@10 over all cold rows."""
    xs = [d["among_new"] for d in ds if d.get("among_new", {}).get("n_rows")]
    if not xs:
        return "–"
    rows = sum(x["n_rows"] for x in xs)
    hits = sum(round(x["recall@10"] * x["n_rows"]) for x in xs)
    n_new = statistics.fmean(x["n_new_items"] for x in xs)
    runs = f", {len(xs)} of the runs" if len(xs) < len(ds) else ""
    return (f"{statistics.fmean(x['median_rank'] for x in xs):.0f} of {n_new:.0f}, "
            f"{hits / rows:.2f} ({hits}/{rows}{runs}; random {10 / n_new:.2g})")


def section_speed(speed: dict, sp: dict, plots_dir: Path, md_dir: Path) -> str:
    tags = sp["tags"]
    lines = ["## Speed and memory", "",
             "`python bench/run.py speed`, each run in its own subprocess: SASRec, "
             "PMMRec (default: text + image, frozen encoders, cached states) and PMMRec with k = 1 trainable "
             "text block, all with MAX_ITEM_LIST_LENGTH 20 and early stopping on validation NDCG@10. "
             + _lanes_text(speed) + " Wall time "
             "counts training and validation from the first epoch; setup (data loading, encoder-state cache, "
             "model) is listed separately. Seconds per epoch and per evaluation are medians over epochs; peak "
             "RSS is each subprocess's own `ru_maxrss`.", ""]
    if sp.get("sasrec_best") is not None:
        cut = capped(tags["sasrec"])
        lines += [f"**Time to quality (headline).** SASRec's best validation NDCG@10 is {sp['sasrec_best']:.4f}, "
                  f"reached after {sp['sasrec_time']:.0f} s"
                  + (f" (SASRec was stopped by the {tags['sasrec'].get('max_fit_s'):.0f} s budget, not by early "
                     f"stopping, so this is its best so far and the ratio flatters PMMRec)." if cut else ".")]
        for name, label in (("pmmrec", "PMMRec"), ("pmmrec_k1", "PMMRec k=1")):
            if name in tags and _capped_epochs(tags[name]):
                lines[-1] += (f" ({label} ran only {_capped_epochs(tags[name])} epoch(s) by design, for its epoch "
                              f"and evaluation cost: no time-to-quality for it.)")
                continue
            if sp.get(f"{name}_ttq") is not None:
                if sp.get(f"{name}_reached"):
                    lines[-1] += (f" {label} reaches it after {sp[f'{name}_ttq'] * sp['sasrec_time']:.0f} s: ratio "
                                  f"**{sp[f'{name}_ttq']:.2f}**.")
                else:
                    lines[-1] += (f" {label} never reaches it (its best: {sp[f'{name}_best']:.4f} after "
                                  f"{sp[f'{name}_best_time']:.0f} s): ratio at its own best **{sp[f'{name}_ttq']:.2f}**.")
                    if sp.get(f"{name}_ttq_common") is not None:
                        t_run, t_sas = sp[f"{name}_common_times"]
                        lines[-1] += (f" At the same quality (its best, {sp[f'{name}_common']:.4f}, which SASRec "
                                      f"reaches after {t_sas:.0f} s) the ratio is {t_run:.0f} / {t_sas:.0f} = "
                                      f"{sp[f'{name}_ttq_common']:.2f}.")
        if sp.get("pmmrec_ttq_hr") is not None:
            lines[-1] += (f" PMMRec removes the items of the input history from its ranking (`exclude_history`), "
                          f"RecBole's SASRec does not, so these two curves are measured under different rules. "
                          f"Under one rule, with the history removed for both after each epoch "
                          f"(`valid_history_removed`): SASRec's best is {sp['sasrec_best_hr']:.4f} after "
                          f"{sp['sasrec_time_hr']:.0f} s; PMMRec "
                          + (f"reaches it: ratio **{sp['pmmrec_ttq_hr']:.2f}**." if sp["pmmrec_reached_hr"] else
                             f"never reaches it (its best: {sp['pmmrec_best_hr']:.4f} after "
                             f"{sp['pmmrec_best_time_hr']:.0f} s): ratio at its own best "
                             f"**{sp['pmmrec_ttq_hr']:.2f}**."))
        lines.append("")
    lines += ["| run | status | epochs | best valid NDCG@10 (epoch) | s to own best | s / epoch | s / evaluation | "
              "setup s (data + model) | peak RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for tag in ("sasrec", "pmmrec", "pmmrec_k1"):
        r = tags.get(tag)
        if not r:
            continue
        b = best_point(r)
        status = (f"stopped by budget ({r.get('max_fit_s'):.0f} s)" if capped(r)
                  else f"{_capped_epochs(r)} epoch(s) by design" if _capped_epochs(r)
                  else "early-stopped" if r.get("status") == "done" else r.get("status"))
        lines.append(f"| {r['label']} | {status} | {len(r.get('curve', []))} | "
                     f"{fmt(b['score'], 4) + ' (' + str(b['epoch'] + 1) + ')' if b else '—'} | "
                     f"{fmt(b['wall_s'] if b else None, 0)} | {fmt(median([p.get('train_s') for p in r.get('curve', [])]), 1)} | "
                     f"{fmt(median([p.get('valid_s') for p in r.get('curve', [])]), 1)} | "
                     f"{fmt(_setup_s(r), 0)} | "
                     f"{fmt((r.get('peak_rss_bytes') or 0) / GB, 2, ' GiB')} |")
    lines.append("")
    ratios = []
    for name in ("pmmrec", "pmmrec_k1"):
        if sp.get(f"{name}_epoch_ratio") is not None:
            label = tags[name]["label"]
            old = _old_keys(tags[name])  # a run kept from an earlier default: not side by side with this SASRec run
            ratios.append(f"{label} / SASRec: {sp[f'{name}_epoch_ratio']:.2f}x per epoch, "
                          f"{fmt(sp.get(f'{name}_eval_ratio'))}x per full evaluation"
                          + (f" (an earlier speed run, made with {old}, against this SASRec run)" if old else ""))
    if ratios:
        lines += ["Ratios to the SASRec run above: " + "; ".join(ratios) + ".", ""]
    for suffix, what in (("_ti", "text + image, k = 1 trainable block of MiniLM and of EfficientNet-Lite0"),
                         ("", "text only, k = 1 trainable MiniLM block")):
        if sp.get(f"cached_speedup{suffix}") is None:
            continue
        c, e = tags[f"subset_cached{suffix}"], tags[f"subset_e2e{suffix}"]
        lines += [f"**Cached top-k against end_to_end** ({what}; few_shot_ratio "
                  f"{c['spec']['config'].get('few_shot_ratio')} of the training users = {c.get('n_train_rows')} "
                  f"training windows; "
                  + (f"made with {_old_keys(c)}; " if _old_keys(c) else "")
                  + f"the faster of the first "
                  f"{min(len(c['epoch_s']), len(e['epoch_s']))} epoch(s) of each): cached "
                  f"{sp[f'cached_epoch_s{suffix}']:.1f} s, end_to_end {sp[f'e2e_epoch_s{suffix}']:.1f} s per epoch, "
                  f"**{sp[f'cached_speedup{suffix}']:.1f}x** (peak RSS {fmt((c.get('peak_rss_bytes') or 0) / GB, 2)} "
                  f"vs {fmt((e.get('peak_rss_bytes') or 0) / GB, 2)} GiB; setup, including the cache of the "
                  f"bottom states, {fmt(_setup_s(c, with_model=False), 0)} s vs "
                  f"{fmt(_setup_s(e, with_model=False), 0)} s)."
                  + (f" The end_to_end run was {e['note']}." if e.get("note") else ""), ""]
    if sp.get("cache_build_s") is not None:
        lines += [f"**Encoder-state cache build** (ml100k-posters, 1,682 items, MiniLM text + EfficientNet-Lite0 "
                  f"posters, empty cache folder): data preparation took {sp['build_fresh_data_s']:.0f} s against "
                  f"{sp['build_warm_data_s']:.0f} s with the cache filled, so building the cache costs "
                  f"{sp['cache_build_s']:.0f} s once; peak RSS of that process "
                  f"{fmt((sp.get('build_fresh_rss') or 0) / GB, 2)} GiB.", ""]
    reuse = _cache_reuse(Path(md_dir) / "bench" / "results" / "cache_reuse.json")
    if reuse:
        lines += [reuse, ""]
    bad = status_line(speed.get("runs", []))
    if bad:
        lines += [f"Not finished: {bad}.", ""]
    curves = [tags[t] for t in ("sasrec", "pmmrec", "pmmrec_k1") if t in tags]
    if plot_curves(curves, plots_dir / "speed_valid_vs_time.png", "wall", "Validation NDCG@10 against wall time"):
        lines.append(f"![validation NDCG@10 vs wall time]({_rel(plots_dir / 'speed_valid_vs_time.png', md_dir)})")
    if plot_speed_bars(sp, plots_dir / "speed_ratios.png"):
        lines.append(f"![speed ratios]({_rel(plots_dir / 'speed_ratios.png', md_dir)})")
    return "\n".join(lines) + "\n"


def _scaling_when(scaling: dict) -> str:
    """When the scaling runs were made (their model keys are the defaults of that day)."""
    meta = scaling.get("meta") or {}
    parts = [f"commit {meta['commit']}" if meta.get("commit") else "", f"{meta['date']}" if meta.get("date") else ""]
    return ", ".join(p for p in parts if p) or "date not recorded"


RECOMMEND_TARGETS = (("batch top-10, users/s", "users_per_s", ">= 2,000", lambda v: v >= 2000),
                     ("one user, p99 ms", ("one_user_ms", "p99"), "<= 30", lambda v: v <= 30),
                     ("adding 1,000 text items, s", "add_1000_text_items_s", "<= 10", lambda v: v <= 10),
                     ("vs RecBole's full_sort_topk on the same model and users", "ratio_vs_recbole", ">= 5x",
                      lambda v: v >= 5))


def study_results(results_dir: Path, pattern: str) -> list[dict]:
    """The readable JSON result files of a study (``bench/results/<pattern>``), in name order."""
    runs = []
    for path in sorted(Path(results_dir).glob(pattern)):
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return runs


def section_recommend(results_dir: Path) -> str:
    """Speed of ``recbole_pmmrec.recommend`` from ``bench/studies/recommend_speed.py``'s result files."""
    runs = study_results(results_dir, "recommend_speed_*.json")
    lines = ["## Recommend", ""]
    if not runs:
        return "\n".join(lines + ["Not measured yet: `python bench/studies/recommend_speed.py synthetic --out "
                                  "bench/results/recommend_speed_synthetic.json`."])

    def value(run, key):
        return run[key[0]][key[1]] if isinstance(key, tuple) else run[key]

    lines += ["`Recommender.recommend` (cached item vectors, one thread) against RecBole's `full_sort_topk` on the "
              "same model and users, measured in one process by `bench/studies/recommend_speed.py`; both give the "
              "same top-10 lists (checked for every measured user).", "",
              "| measure | target | " + " | ".join(f"{r['dataset']} ({r['items']:,} items, {'+'.join(r['modalities'])})"
                                                  for r in runs) + " |",
              "|---|---|" + "---|" * len(runs)]
    for name, key, goal, ok in RECOMMEND_TARGETS:
        cells = []
        for r in runs:
            v = value(r, key)
            cells.append(f"{v:,}{'x' if key == 'ratio_vs_recbole' else ''} {'met' if ok(v) else '**missed**'}")
        lines.append(f"| {name} | {goal} | " + " | ".join(cells) + " |")
    lines.append("| RecBole's path, users/s | | " + " | ".join(f"{r['recbole_users_per_s']:,}" for r in runs) + " |")
    lines.append("| same top-10 as RecBole | | " + " | ".join(str(r["same_top10_as_recbole"]) for r in runs) + " |")
    lines.append("| machine load at the end (1-min average, 2 cores) | | "
                 + " | ".join(str((r.get("loadavg_at_end") or ["not recorded"])[0]) for r in runs) + " |")
    lines += ["", "RecBole's path calls `model.eval()` per call; PMMRec keeps its item vectors across such calls since "
              "0.6, so both paths score from the same cached vectors and the ratio measures the ranking code alone."]
    parts = [r for r in runs if r.get("batch256_ms")]
    if parts:
        cells = []
        for r in parts:
            b = r["batch256_ms"]
            shared = b["user_encoder"] + b["scores"] + b["topk"]
            cells.append(f"{r['dataset']}: user encoder {b['user_encoder']:.1f} ms, scores {b['scores']:.1f} ms, "
                         f"top-k {b['topk']:.1f} ms of {b['total']:.1f} ms ({shared / b['total']:.0%})")
        lines += ["", "Where a batch of 256 users goes (best of 3): " + "; ".join(cells) + ". Those three steps are "
                  "the same arithmetic on RecBole's path, so no ranking code can make it 5x faster on the same model "
                  "while returning the same lists: the >= 5x target was set when RecBole's path re-encoded the whole "
                  "catalogue on every call, which the model no longer does for either path."]
    return "\n".join(lines)


def section_scale(results_dir: Path) -> str:
    """PMMRec against SASRec side by side from ``bench/studies/scale.py``'s result files (one column per file)."""
    runs = study_results(results_dir, "scale_*.json")
    lines = ["## Scale", ""]
    if not runs:
        return "\n".join(lines + ["Not measured yet: `python bench/studies/scale.py --dataset ml1m-posters --data-dir "
                                  "/tmp/pmmrec_data --epochs 2 --work-dir /tmp/scale --out "
                                  "bench/results/scale_ml1m-posters.json`."])

    def model(run, name, key, digits=1, scale=1.0, suffix=""):
        v = (run["models"].get(name) or {}).get(key)
        return fmt(None if v is None else v / scale, digits, suffix)

    def ratio(run, key):
        return fmt((run.get("ratios") or {}).get(key), 2, "x")

    def rss_met(run):
        target = run.get("pmmrec_peak_rss_target") or {}
        if target.get("met") is None:
            return "—"
        return f"{'met' if target['met'] else '**missed**'} ({fmt(target['judged_on'] / GB, 2, ' GiB')})"

    rows = [("s/epoch, PMMRec", lambda r: model(r, "PMMRec", "epoch_s_mean_after_first")),
            ("s/epoch, SASRec", lambda r: model(r, "SASRec", "epoch_s_mean_after_first")),
            ("s/epoch, PMMRec / SASRec", lambda r: ratio(r, "epoch_s")),
            ("full evaluation s, PMMRec", lambda r: model(r, "PMMRec", "eval_s_mean")),
            ("full evaluation s, SASRec", lambda r: model(r, "SASRec", "eval_s_mean")),
            ("full evaluation, PMMRec / SASRec", lambda r: ratio(r, "eval_s")),
            ("peak RSS, PMMRec", lambda r: model(r, "PMMRec", "peak_rss_bytes", 2, GB, " GiB")),
            ("peak RSS, SASRec", lambda r: model(r, "SASRec", "peak_rss_bytes", 2, GB, " GiB")),
            ("peak RSS, PMMRec / SASRec", lambda r: ratio(r, "peak_rss")),
            ("PMMRec peak RSS <= 4 GB", rss_met),
            ("share of epoch time side by side, PMMRec / SASRec",
             lambda r: " / ".join(model(r, m, "epochs_side_by_side", 2) for m in ("PMMRec", "SASRec"))),
            ("machine load (1-min average, start / end)",
             lambda r: " / ".join(fmt(((r.get("machine") or {}).get(k) or [None])[0])
                                  for k in ("loadavg_at_start", "loadavg_at_end")))]
    epochs = sorted({r.get("epochs") for r in runs}, key=str)
    lines += [f"Measured by `bench/studies/scale.py`: both models started at the same time, side by side, each in "
              f"its own process with one torch thread (`threads: 1`), {' / '.join(map(str, epochs))} training "
              "epoch(s) through `run_recbole_pmmrec`, each followed by a full validation over all items. s/epoch is "
              "the mean training time of the epochs after the first (the first when only one ran); peak RSS is the "
              "worker's `ru_maxrss`, as elsewhere in this file; the 4 GB target is judged on the larger of that and "
              "the whole process's (`wait4`, which also counts the interpreter's exit).", "",
              "| measure | " + " | ".join(f"{r['dataset']} ({(r.get('date') or 'undated')[:10]})" for r in runs) + " |",
              "|---|" + "---|" * len(runs)]
    lines += [f"| {name} | " + " | ".join(cell(r) for r in runs) + " |" for name, cell in rows]
    return "\n".join(lines)


TRANSFER_RESULT = "transfer_corpus.json"


def _xfer_cell(s: dict | None, digits: int = 4) -> str:
    if not s:
        return "—"
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["n"] > 1 else " (1 seed)")


def _xfer_seconds(values: list) -> str:
    """Median seconds over the runs that reached the mark, and how many did."""
    if not values:
        return "—"
    m = median(values)
    return ("never" if m is None else f"{m:.0f}") + f" ({sum(v is not None for v in values)}/{len(values)})"


def transfer_tables(summary: dict, level: str = "###") -> str:
    """One table per target of ``bench/studies/transfer.py``'s summary: zero-shot line, then each setting x ratio."""
    lines = []
    for target, part in summary["targets"].items():
        zero = "; ".join(f"{k} {v['ndcg@10']:.4f}" for k, v in sorted(part["zero_shot"].items())) or "not run"
        lines += [f"{level} {target}", "", f"Zero-shot (no training step), test NDCG@10: {zero}.", ""]
        if not part["results"]:
            lines += ["No fine-tuning runs.", ""]
            continue
        lines += ["| setting | users | NDCG@10 | Recall@10 | Δ NDCG@10 vs scratch/all (paired, wins) | × scratch/all "
                  "| × ContentKNN (zero-shot) | s to scratch's best valid (reached) | epochs |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for setting, by_ratio in part["results"].items():
            for ratio, c in sorted(by_ratio.items(), key=lambda kv: float(kv[0])):
                diff = (f"{_xfer_cell(c['diff_vs_scratch'])} ({c['wins_vs_scratch']}/{c['diff_vs_scratch']['n']})"
                        if "diff_vs_scratch" in c else "—")
                lines.append(f"| {setting} | {float(ratio):.0%} | {_xfer_cell(c['ndcg@10'])} "
                             f"| {_xfer_cell(c['recall@10'])} | {diff} | {fmt(c.get('ratio_vs_scratch'), 3, 'x')} "
                             f"| {fmt(c.get('ratio_vs_contentknn'), 3, 'x')} "
                             f"| {_xfer_seconds(c['s_to_scratch_best_valid'])} "
                             f"| {', '.join(map(str, c['epochs']))} |")
        lines.append("")
    return "\n".join(lines)


def transfer_targets(summary: dict) -> list[tuple[str, str, str, str]]:
    """(target, goal, measured, met) for the transfer issue's targets: zero-shot per corpus, the fine-tuned ones
    per pre-trained setting (``CORPUS/MODE``)."""
    rows = []
    for target, part in summary["targets"].items():
        scratch = part["results"].get("scratch/all", {})
        for corpus in part["corpora"]:
            name = f"{target}, {corpus}"
            anchor = part.get("zero_shot_anchors", {}).get(corpus) or {}
            z, knn = anchor.get("model"), anchor.get("contentknn")
            if z is not None and knn:
                rows.append((name, "zero-shot NDCG@10 >= 1.2x ContentKNN (same modalities)",
                             f"{z / knn:.2f}x ({z:.4f} vs {knn:.4f})", "met" if z >= 1.2 * knn else "**missed**"))
            for setting, by_ratio in part["results"].items():
                if setting.startswith(f"{corpus}/"):
                    rows += _transfer_target_rows(f"{target}, {setting}", by_ratio, scratch)
    return rows


TRANSFER_SEEDS = 3  # paired seeds a fine-tuning target needs for a verdict (the 3 seeds, as in quality)


def _transfer_target_rows(name: str, by_ratio: dict, scratch: dict) -> list[tuple[str, str, str, str]]:
    """The few-shot and 100% target rows of one pre-trained setting (``by_ratio``: its cells by ratio). A verdict
    needs ``TRANSFER_SEEDS`` paired seeds and no run of the pair (this setting's or scratch's) stopped by its time
    budget; otherwise the row gives the value and says why there is none."""
    rows = []
    for ratio, c in sorted(by_ratio.items(), key=lambda kv: float(kv[0])):
        r, wins, n = c.get("ratio_vs_scratch"), c.get("wins_vs_scratch"), (c.get("diff_vs_scratch") or {}).get("n")
        if r is None:
            continue
        capped = sum(c.get("stopped_by_budget") or []) + sum((scratch.get(ratio) or {}).get("stopped_by_budget") or [])
        few = ("" if (n or 0) >= TRANSFER_SEEDS else f" ({n or 0} paired seed{'s' * ((n or 0) != 1)}: no verdict)")
        if capped:
            few += f" ({capped} run{'s' * (capped != 1)} stopped by the time budget: no verdict)"
        if float(ratio) < 1.0:
            ok = r >= 1.15 and wins == n
            rows.append((name, f"{float(ratio):.0%} of users: >= 1.15x scratch, ahead on every seed",
                         f"{r:.3f}x, ahead on {wins}/{n}{few}", "—" if few else "met" if ok else "**missed**"))
            continue
        own = (scratch.get(ratio) or {}).get("s_to_own_best_valid") or []
        reach = c.get("s_to_scratch_best_valid") or []
        times = [a / b for a, b in zip(reach, own) if a is not None and b]
        t = statistics.fmean(times) if len(times) == len(reach) and times else None
        ok = r >= 1.0 and t is not None and t <= 0.5
        rows.append((name, "100% of users: >= scratch, scratch's best validation in <= 0.5x its time",
                     f"{r:.3f}x; time {fmt(t, 2, 'x') if t is not None else 'never reached'}{few}",
                     "—" if few else "met" if ok else "**missed**"))
    return rows


def section_transfer(results_dir: Path) -> str:
    """Pre-training on a merged corpus and transfer to unseen targets, from ``bench/studies/transfer.py``'s summary."""
    runs = study_results(results_dir, TRANSFER_RESULT)
    lines = ["## Transfer", ""]
    if not runs:
        return "\n".join(lines + ["Not measured yet: `python bench/studies/transfer.py --steps merge pretrain zeroshot "
                                  "grid report` (docs/TRANSFER.md)."])
    summary = runs[0]
    lines += ["PMMRec pre-trained once on a corpus merged from several data sets, then scored on targets that were "
              "never in it: zero-shot (no training step), and fine-tuned on 5%, 20% and 100% of the target's "
              "training users against the same model trained from scratch on the same users (per seed: the seed "
              "sets the initial weights and the users). Fine-tuning trains next-item prediction only, with early "
              "stopping on validation NDCG@10. Produced by `bench/studies/transfer.py` (one torch thread per run); "
              f"numbers in `bench/results/{TRANSFER_RESULT}` ({summary.get('created', 'undated')}). "
              + summary["protocol"].capitalize() + ".", ""]
    variants = study_results(results_dir, TRANSFER_VARIANTS)
    if variants:
        lines += ["Variants, each in its own section below (the settings each one changes, and when it ran): "
                  + "; ".join(f"{v.get('variant') or v.get('file')} ({str(v.get('created', 'undated'))[:10]})"
                              for v in variants) + ".", ""]
    lines += _transfer_targets_table(summary) + ["**Corpus and pre-training cost**", ""]
    lines += _corpus_lines(summary) + ["", transfer_tables(summary)]
    for variant in variants:
        name = variant.get("file", TRANSFER_VARIANTS)
        overrides = ", ".join(f"`{k}: {v}`" + (" (pre-training; each fine-tuning run keeps its setting's own)"
                                                 if k == "finetune" else "")
                              for k, v in sorted((variant.get("config_overrides") or {}).items())
                              if k not in _WHERE_KEYS)
        lines += [f"### Variant: {variant.get('variant') or name}", "",
                  f"The same study in its own work dir, every run (pre-training, zero-shot, fine-tuning, scratch) "
                  f"with {overrides or 'the same keys'}; numbers in `bench/results/{name}` "
                  f"({variant.get('created', 'undated')}). Seeds {', '.join(map(str, variant.get('seeds', [])))}; "
                  f"ratios and settings as run.", ""]
        lines += _transfer_targets_table(variant) + _corpus_lines(variant) + ["", transfer_tables(variant, "####")]
    return "\n".join(lines)


TRANSFER_VARIANTS = "transfer_corpus_*.json"
_WHERE_KEYS = {"data_path", "cache_dir", "checkpoint_dir", "log_dir", "tensorboard_dir"}  # where, not what


def _transfer_targets_table(summary: dict) -> list[str]:
    rows = transfer_targets(summary)
    if not rows:
        return []
    return (["| target | goal | measured | |", "|---|---|---|---|"]
            + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows] + [""])


def _corpus_lines(summary: dict) -> list[str]:
    """One line per corpus of a transfer summary: its sources and counts, and what pre-training cost."""
    lines = []
    for name, c in summary["corpora"].items():
        counts, pre = c.get("counts") or {}, c.get("pretrain")
        caps = ([f"{c['max_source_users']:,} random users of each"] if c.get("max_source_users") else []) + \
            [f"{n:,} of {s}" for s, n in (c.get("source_users") or {}).items()]
        what = (f"`{name}`: {', '.join(c['sources'])}" + (f" ({', '.join(caps)})" if caps else "")
                + (f"; {counts['users']:,} users, {counts['items']:,} items, {counts['interactions']:,} interactions"
                   if counts else "") + (f"; merged in {c['merge_s']:.0f} s" if c.get("merge_s") else ""))
        if pre:
            loss = pre.get("loss") or []
            what += (f". Pre-training: {pre['epochs']} epochs, {pre['fit_s'] / 60:.1f} min of training "
                     f"({pre['wall_s'] / 60:.1f} min with the encoder-state cache and evaluation)"
                     + (", stopped by its time budget" if pre.get("stopped_by_budget") else "")
                     + (f"; loss {loss[0]:.3f} -> {loss[-1]:.3f}" if loss else "")
                     + (f"; on the corpus's own test split NDCG@10 {pre['test']['ndcg@10']:.4f}" if pre.get("test")
                        else "; no test evaluation on the corpus (`--no-pretrain-test`)"))
        elif c.get("header_corpus"):  # a checkpoint is there, made outside the study's pretrain step
            what += (". Pre-trained outside the study's `pretrain` step (its checkpoint's header lists this corpus); "
                     "its cost is in docs/TRANSFER.md, not in the study's records")
        else:
            what += ". Not pre-trained yet"
        lines.append(f"- {what}.")
    return lines


def section_scaling(scaling: dict, sc: dict, plots_dir: Path, md_dir: Path) -> str:
    lines = ["## Scaling", "",
             "Synthetic data (`recbole_pmmrec.synthetic.make_synthetic_dataset`, 30–70 interactions per user, "
             "text only) with a random 1-layer BERT (hidden 64) as the frozen text encoder, so the numbers measure "
             "the recommender's own cost (cached states, item tower, user encoder, and the default's objectives "
             "for one modality: NIP + NID), not a large encoder. The model keys are the defaults of the day the "
             "runs were made (" + _scaling_when(scaling) + "; `train_window_stride: 5` since v0.4). Epoch time "
             "is the faster of two training epochs; peak RSS covers loading, cache build and training.", "",
             "| interactions | items | training windows | s / epoch | peak RSS | data + cache s | generate s |",
             "|---|---|---|---|---|---|---|"]
    for r in sc["rows"]:
        lines.append(f"| {r['n_inter']:,}{' *' if r['partial'] else ''} | {r['n_items']:,} | {r['n_rows'] or '—'} | {fmt(r['epoch_s'], 2)} | "
                     f"{fmt((r['rss'] or 0) / GB, 2, ' GiB')} | {fmt(r['data_s'], 0)} | {fmt(r['generate_s'], 0)} |")
    if not sc["rows"]:
        lines.append("| (not run yet) | | | | | | |")
    lines.append("")
    if sc.get("slope_diag") is not None:
        lines.append(f"Log-log slope of epoch time against interactions (items growing with them, 10 interactions "
                     f"per item): **{sc['slope_diag']:.2f}**; of peak RSS: {fmt(sc.get('rss_slope_diag'))}.")
    if sc.get("slope_inter") is not None:
        lines.append(f"Fitted jointly on all sizes, log t = a + b log(interactions) + c log(items): b = "
                     f"**{sc['slope_inter']:.2f}**, c = {sc['slope_items']:.2f}.")
    if any(r["partial"] for r in sc["rows"]):
        lines.append("\* stopped by the run's timeout: the epoch time is its only finished epoch, and the peak RSS is "
                     "up to then.")
    if sc["failed"]:
        lines.append("Not finished: " + "; ".join(f"{r.get('label')}: {r.get('status')}" for r in sc["failed"]) + ".")
    if plot_scaling(sc, plots_dir / "scaling.png"):
        lines += ["", f"![scaling]({_rel(plots_dir / 'scaling.png', md_dir)})"]
    return "\n".join(lines) + "\n"


def _budget_note(rows: dict, runs: list[dict]) -> list[str]:
    """The † footnote of a table whose rows include runs stopped by their wall-time or epoch budget."""
    if not any(r["budget"] for r in rows.values()):
        return []
    stopped = [r for r in done(runs) if capped(r)]
    budgets = sorted({r.get("max_fit_s") for r in stopped if r.get("stopped_by_budget") and r.get("max_fit_s")})
    epochs = sorted({int(r["spec"]["config"]["epochs"]) for r in stopped if not r.get("stopped_by_budget")})
    what = [f"the wall-time budget ({', '.join(f'{b:.0f} s' for b in budgets)})"] if budgets else []
    what += [f"the epoch budget ({', '.join(map(str, epochs))} epochs)"] if epochs else []
    return ["", f"† stopped by {' or '.join(what)} before early stopping: not converged; tested with its best "
                "validation epoch so far."]


def _not_run_note(rows: dict, order: list[str]) -> list[str]:
    """"Not run yet: ..." for the suite's labels of a part (``QUALITY_ORDER`` / ``COLD_ORDER``) without results."""
    missing = [label for label in order if label not in rows]
    return ["", "Not run yet: " + ", ".join(missing) + "."] if rows and missing else []


def _keys_text(keys: dict) -> str:
    """"`k: v`, `k2: v2`" for config keys named in the report."""
    return ", ".join(f"`{k}: {v}`" for k, v in keys.items())


SPEED_KEYS = {"few_shot_ratio", "text_train_layers", "image_train_layers", "modalities", "encoder_mode"}


def _old_keys(run: dict) -> str:
    """The overrides of a speed run beyond what the speed part sets (the keys of an earlier default), as text."""
    return _keys_text({k: v for k, v in overrides_of(run.get("spec") or {}).items() if k not in SPEED_KEYS})


def _setup_s(run: dict, with_model: bool = True) -> float | None:
    """Seconds before training starts: ``setup_s`` (data, encoder-state cache and model, timed by the worker up to
    the first epoch), or in older records ``data_s`` (+ ``model_s``)."""
    if run.get("setup_s") is not None:
        return run["setup_s"]
    if run.get("data_s") is None:
        return None
    return run["data_s"] + ((run.get("model_s") or 0) if with_model else 0)


def _lanes_text(speed: dict) -> str:
    lanes = (speed.get("meta") or {}).get("lanes") or []
    if lanes and all(lane.get("threads") == 1 for lane in lanes):
        return ("Every run here was limited to 1 torch thread and two runs went at a time on the 2 cores (SASRec "
                "in one lane; PMMRec, then the other PMMRec runs, in the other), so each had a core to itself and "
                "all of them shared the machine the same way.")
    return "Runs went one at a time, back to back."


def _capped_epochs(run: dict) -> int | None:
    """The epoch limit of a run whose ``epochs`` was set below the suite's maximum (e.g. the k = 1 run)."""
    cfg = (run.get("spec") or {}).get("config") or {}
    curve = run.get("curve") or []
    n = cfg.get("epochs")
    return n if n is not None and len(curve) >= n and n <= 5 else None


def _cache_reuse(path: Path) -> str | None:
    """One paragraph from ``bench/studies/cache_reuse.py``'s record (a separate script; its own machine state)."""
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    first, second = r.get("first", {}), r.get("second", {})
    if not first or not second:
        return None
    load = r.get("load_average_at_end")
    return (f"**Encoder-state cache build and reuse** (`python bench/studies/cache_reuse.py`, {r.get('dataset')}, MiniLM "
            f"text + EfficientNet-Lite0 posters, default boundary = frozen encoders): data preparation with an "
            f"empty cache {first['total_s']:.0f} s (item features {first['item_features_s']:.0f} s), the same with "
            f"the cache filled {second['total_s']:.1f} s ({second['item_features_s']:.1f} s): "
            f"**{r.get('ratio_total_first_over_second', float('nan')):.0f}x**"
            + (f"; measured with the machine at load average {load:.1f}, so the absolute build time is inflated"
               if load and load > 2.5 else "") + ".")


def _patience(runs):
    steps = {r["spec"]["config"].get("stopping_step") for r in runs if "spec" in r}
    return "/".join(str(s) for s in sorted(steps, key=str)) if steps else "3"


def _rel(path: Path, md_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(md_dir).resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- markdown
def replace_section(text: str, name: str, body: str, before: str | None = None) -> str:
    """Put ``body`` between this section's markers: in place if they exist, else before ``before``'s
    heading (when given and present), else at the end (intro: at the start)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    if name == "intro":
        return block + "\n\n" + text.lstrip()
    if before:
        m = re.search(rf"^{re.escape(before)}\s*$", text, re.M)
        if m:
            return text[:m.start()] + block + "\n\n" + text[m.start():]
    return text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"


HISTORY_HEAD = """# Benchmarks: history and studies

Generated by `python bench/run.py report` from `bench/results/*.json`, together with BENCHMARKS.md; do not edit
(hand-written notes: [benchmarks-notes.md](benchmarks-notes.md)). Rows come from the label and spec stored with
each run, so the settings listed here need not exist in the package any more.
"""


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def readme_results(rows: dict[str, dict], cold_rows: dict[str, dict] | None = None, pointer: bool = True) -> str:
    """The README's results table: per data set, PMMRec (its recommended setting: the default, or the
    single-modality one the data allows), and under it each ``RECOMMENDED`` setting that ran there, against SASRec and
    the ContentKNN floor, test NDCG@10, mean over seeds.
    Quality runs (leave-one-out) are compared with the input history removed for every model, except on data whose
    users repeat items (``exclude_history: ~`` kept the history there), compared as RecBole ranks: every item; a data
    set without a leave-one-out SASRec run also gets its cold-split row, compared on all test rows as RecBole
    evaluates them.
    ``pointer``: end the caption with where the full tables are (the README's copy; BENCHMARKS.md's own is False)."""
    def values(table: dict, label: str, key: str) -> list[float]:
        r = table.get(label) or {}
        got = r.get("history_removed", []) if key == "history_removed" else r.get("test", {}).get("ndcg@10", [])
        return [x for x in got if x is not None]

    def cell(vs: list[float], budget: bool) -> str:
        return f"{fmt_ms(vs)} ({len(vs)}){' †' if budget else ''}" if vs else "–"

    lines = ["| data set | split, protocol | PMMRec | SASRec hr-selected | SASRec | ContentKNN | PMMRec / SASRec |",
             "|---|---|---|---|---|---|---|"]
    capped = repeats = False
    sources = [(rows, "history_removed", "leave-one-out, history removed")]
    sources.append((cold_rows or {}, "all", "cold split (10% of items unseen), all test rows, RecBole's rule"))
    compared = set()  # data sets with a leave-one-out row against a SASRec: their cold-split row is not needed
    for table, main_key, main_protocol in sources:
        datasets = sorted({r["dataset"] for r in table.values()}, key=lambda d: (d != MAIN_DATASET, d))
        for dataset in datasets:
            if main_key == "all" and dataset in compared:
                continue
            key, protocol = main_key, main_protocol
            if key == "history_removed" and any(r.get("repeats") for r in table.values() if r["dataset"] == dataset):
                key, protocol, repeats = "all", "leave-one-out, RecBole's rule (users repeat items) ‡", True
            on = "" if dataset == MAIN_DATASET else f" on {dataset}"
            pmmrec = next((f"PMMRec{v}{on}" for v in ("", " text-only", " image-only") if f"PMMRec{v}{on}" in table),
                          None)
            if pmmrec is None:
                continue
            # the data set's default row, then a row for each recommended setting it ran (RECOMMENDED)
            for ours in [pmmrec] + [f"{label}{on}" for label in RECOMMENDED if f"{label}{on}" in table]:
                columns = (("pmmrec", ours), ("hr", f"SASRec hr-selected{on}"), ("sasrec", f"SASRec{on}"),
                           ("knn", f"ContentKNN{on}"))
                got = {name: values(table, label, key) for name, label in columns}
                budget = {name: bool((table.get(label) or {}).get("budget")) for name, label in columns}
                capped = capped or any(budget.values())
                base = got["hr"] or got["sasrec"]
                if base and main_key == "history_removed":
                    compared.add(dataset)
                ratio = (f"{mean_std(got['pmmrec'])[0] / mean_std(base)[0]:.2f}x"
                         if got["pmmrec"] and base and mean_std(base)[0] > 0 else "–")
                name = dataset + ("" if ours.startswith("PMMRec on") or ours == "PMMRec"
                                  else f" ({ours.split(' on ')[0].removeprefix('PMMRec ')})")
                lines.append(f"| {name} | {protocol} | " + " | ".join(cell(got[k], budget[k]) for k in
                                                                   ("pmmrec", "hr", "sasrec", "knn")) + f" | {ratio} |")
    lines += ["", "Test NDCG@10, mean ± sd (number of seeds). \"History removed\": the items of the input sequence "
              "are not ranked, for every model (PMMRec's own protocol); `SASRec hr-selected` is also stopped and "
              "selected by that rule. The ratio is against SASRec hr-selected where it ran, else SASRec. \"With "
              "item ID\": `item_id_embedding: True`. On text alone PMMRec scores by cosine (`score_tau: ~` = 0.1), "
              "with or without the ID."
              + (" † a run was stopped by its time or epoch budget before early stopping." if capped else "")
              + (" ‡ where users repeat items, history items are ranked (as RecBole ranks) for every model."
                 if repeats else "")
              + (" Generated by `python bench/run.py report` from `bench/results/`; the full tables, costs and the "
                 "RecBole-rule numbers are in [BENCHMARKS.md](BENCHMARKS.md)." if pointer else "")]
    return "\n".join(lines)


def write_readme_results(readme: Path, rows: dict[str, dict], cold_rows: dict[str, dict] | None = None) -> None:
    """Replace the text between the README's results markers (left alone when the markers are missing)."""
    text = readme.read_text() if readme.exists() else ""
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{readme_results(rows, cold_rows)}\n{README_END}{tail}")


def write_report(results_dir: Path, plots_dir: Path, markdown: Path, history: Path | None = None,
                 readme: Path | None = None) -> str:
    """Rewrite this suite's sections of ``markdown`` (other text in it is kept), its plots, and (when given) the
    generated ``history`` document; returns the markdown's text."""
    results_dir, plots_dir, markdown = Path(results_dir), Path(plots_dir), Path(markdown)
    speed, quality, cold, scaling = (load_results(p, results_dir) for p in ("speed", "quality", "coldstart", "scaling"))
    for part in (quality, cold):
        for run in part.get("runs", []):
            run["label"] = canonical_label(run)
    sp, sc = speed_numbers(speed), scaling_numbers(scaling)
    q = quality_table_rows(split_current(quality.get("runs", []))[0])
    cs = quality_table_rows(split_current(cold.get("runs", []))[0])
    metas = [part.get("meta") or {} for part in (speed, quality, cold, scaling)]
    meta = next((m for m in metas if m.get("cpus")), {})  # a part's meta can hold only its lanes' notes
    md_dir = markdown.parent
    bodies = {
        "intro": section_intro(q, cs),
        "targets": section_targets(sp, q, cs, sc, split_current(quality.get("runs", []))[0]),
        "quality": section_quality(quality, plots_dir, md_dir),
        "coldstart": section_coldstart(cold),
        "speed": section_speed(speed, sp, plots_dir, md_dir),
        "scaling": section_scaling(scaling, sc, plots_dir, md_dir),
        "recommend": section_recommend(results_dir),
        "scale": section_scale(results_dir),
        "transfer": section_transfer(results_dir),
        "method": section_method(meta),
    }
    text = markdown.read_text() if markdown.exists() else ""
    for name in SECTIONS:
        text = replace_section(text, name, bodies[name])
    markdown.write_text(text)
    if readme is not None:
        write_readme_results(Path(readme), q, cs)
    if history is not None:
        parts = [HISTORY_HEAD, quality_history(quality), cold_studies(cold)]
        Path(history).write_text("\n".join(p for p in parts if p))
    summary = {"speed": {k: v for k, v in sp.items() if k != "tags"},
               "scaling": {k: v for k, v in sc.items() if k not in ("rows", "failed")}}
    if results_dir.exists():
        write_json(results_dir / "summary.json", summary)
    return text
