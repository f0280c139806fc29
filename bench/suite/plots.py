"""The report's plots (PNG, written next to the markdown that links them)."""

from __future__ import annotations

from pathlib import Path

from bench.suite.labels import run_label

GB = 1024**3


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> bool:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_curves(runs: list[dict], path: Path, x: str, title: str) -> bool:
    runs = [r for r in runs if any("score" in p for p in r.get("curve", []))]
    if not runs:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in runs:
        pts = [p for p in r["curve"] if "score" in p]
        xs = [p["epoch"] + 1 for p in pts] if x == "epoch" else [p["wall_s"] for p in pts]
        ax.plot(xs, [p["score"] for p in pts], marker="o", ms=3, label=run_label(r))
    ax.set_xlabel("epoch" if x == "epoch" else "wall seconds since training started (train + validation)")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_speed_bars(sp: dict, path: Path) -> bool:
    names = [("PMMRec", "pmmrec"), ("PMMRec k=1", "pmmrec_k1")]
    metrics = [("time to quality", "ttq"), ("s / epoch", "epoch_ratio"), ("s / evaluation", "eval_ratio")]
    data = [(label, [sp.get(f"{key}_{m}") for _, m in metrics]) for label, key in names
            if any(sp.get(f"{key}_{m}") is not None for _, m in metrics)]
    if not data:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(data)
    for i, (label, vals) in enumerate(data):
        xs = [j + i * width for j in range(len(metrics))]
        ax.bar(xs, [v if v is not None else 0 for v in vals], width=width, label=label)
        for xx, v in zip(xs, vals):
            if v is not None:
                ax.text(xx, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks([j + width * (len(data) - 1) / 2 for j in range(len(metrics))], [m for m, _ in metrics])
    ax.set_ylabel("ratio to SASRec (same run)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("PMMRec cost relative to SASRec (< 1 = faster)")
    return _save(plt, fig, path)


def plot_scaling(sc: dict, path: Path) -> bool:
    rows = [r for r in sc["rows"] if r["epoch_s"]]
    if len(rows) < 2:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, ylabel in ((axes[0], "epoch_s", "seconds per epoch"), (axes[1], "rss", "peak RSS (GiB)")):
        groups: dict = {}
        for r in rows:
            groups.setdefault(r["n_items_target"] or r["n_items"], []).append(r)
        for items, rs in sorted(groups.items()):
            ys = [r[key] / GB if key == "rss" else r[key] for r in rs]
            ax.loglog([r["n_inter"] for r in rs], ys, marker="o", ls="none", label=f"~{items:,} items")
        diag = sorted([r for r in rows if r["n_inter_target"] == 10 * (r["n_items_target"] or 0)],
                      key=lambda r: r["n_inter"])
        if len(diag) > 1:
            ax.loglog([r["n_inter"] for r in diag], [r[key] / GB if key == "rss" else r[key] for r in diag],
                      color="gray", lw=0.8)
        ax.set_xlabel("interactions")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("PMMRec (text, frozen tiny encoder, cached states) on synthetic data")
    return _save(plt, fig, path)
