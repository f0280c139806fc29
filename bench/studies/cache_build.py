"""Encoder-state cache build on a real data set: wall time and peak RSS of one process that builds it.

    python bench/studies/cache_build.py --data-dir /tmp/pmmrec_data --dataset seqrec-food [--threads 1]

Runs the package's own data preparation (``load_config`` -> ``create_dataset``) for PMMRec with its defaults
(modalities decided from the data) into an empty cache folder, in this process, and appends one record to
``bench/results/cache_build.json``: items, modalities, seconds of the item-feature stage (``ItemFeatures.build_s``)
and of the whole dataset build, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "results" / "cache_build.json"


def measure(data_dir: str, dataset: str, threads: int | None, work: Path) -> dict:
    from recbole_pmmrec.quick_start import load_config
    from recbole_pmmrec.utils import create_dataset

    config = load_config("PMMRec", dataset, config_dict={
        "data_path": data_dir, "cache_dir": str(work / "cache"), "show_progress": False, "state": "WARNING",
        "use_gpu": False, "threads": threads, "log_dir": str(work / "log"), "checkpoint_dir": str(work / "saved")})
    start = time.perf_counter()
    built = create_dataset(config)
    total = time.perf_counter() - start
    features = built.item_features
    return {"dataset": dataset, "items": int(features.n_items - 1), "modalities": list(features.modalities),
            "threads": threads, "item_features_s": round(features.build_s, 1), "dataset_s": round(total, 1),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpus": os.cpu_count(),
            "loadavg_at_end": list(os.getloadavg())}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    work = Path(tempfile.mkdtemp(prefix="pmmrec_cache_build_"))
    os.chdir(work)
    record = measure(args.data_dir, args.dataset, args.threads, work)
    out = Path(args.out)
    runs = json.loads(out.read_text())["runs"] if out.is_file() else []
    out.write_text(json.dumps({"part": "cache_build", "runs": runs + [record]}, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
