"""Encoder-state cache reuse: the first data preparation encodes every item, the second reads the cache.

    .venv/bin/python bench/studies/cache_reuse.py --data-dir /tmp/pmmrec_data [--dataset ml100k-posters]

Runs PMMRec's data preparation (dataset loading + item content + encoder-state caches + split) twice with the
offline default encoders (MiniLM text, EfficientNet-Lite0 image) on an empty cache folder, then once more with
a changed encoder setting (``text_max_length``), and prints the wall times and the ratio first/second, for the
whole preparation and for the item-feature stage alone. Writes ``bench/results/cache_reuse.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def prepare(dataset: str, data_dir: str, cache_dir: str, **overrides) -> dict:
    """One data preparation; returns wall times (whole, item-feature stage) and what the caches did."""
    from recbole_pmmrec.quick_start import load_config
    from recbole_pmmrec.utils import create_dataset, data_preparation

    config = load_config("PMMRec", dataset, config_dict={
        "data_path": data_dir, "cache_dir": cache_dir, "show_progress": False, "state": "WARNING",
        "use_gpu": False, **overrides})
    start = time.perf_counter()
    built = create_dataset(config)
    data_preparation(config, built)
    total = time.perf_counter() - start
    stage = {"item_features_s": built.item_features.build_s}  # the package times its own item-feature stage
    folders = sorted(p.name for p in Path(cache_dir).iterdir())
    return {"total_s": round(total, 2), "item_features_s": round(stage["item_features_s"], 2), "cache_dirs": folders}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding the converted dataset")
    parser.add_argument("--dataset", default="ml100k-posters")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "cache_reuse.json"))
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    work = Path(tempfile.mkdtemp(prefix="pmmrec_cache_reuse_"))
    os.chdir(work)
    cache = str(work / "cache")
    try:
        first = prepare(args.dataset, args.data_dir, cache)
        second = prepare(args.dataset, args.data_dir, cache)
        changed = prepare(args.dataset, args.data_dir, cache, text_max_length=24)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "dataset": args.dataset,
        "first": first,
        "second": second,
        "changed_text_max_length": changed,
        "ratio_total_first_over_second": round(first["total_s"] / second["total_s"], 2),
        "ratio_item_features_first_over_second": round(first["item_features_s"] / second["item_features_s"], 2),
        "changed_setting_built_new_cache": len(changed["cache_dirs"]) > len(second["cache_dirs"]),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "load_average_at_end": os.getloadavg()[0],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
