"""Reproducible runs: the same seed and config give the same result twice on CPU, and the run log says
what the run ran on (library versions, config, sha256 of the atomic files, encoder-state cache keys)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from recbole_pmmrec.compat import load_own_checkpoint
from recbole_pmmrec.quick_start import run_recbole_pmmrec



def test_same_seed_and_config_give_identical_runs_and_the_log_records_provenance(synth, pmmrec_config, tmp_path):
    config = pmmrec_config(synth, epochs=2, state="INFO", w_nid=0.3, w_rcl=0.3)  # dropout, NID noise: RNG at work
    runs = [run_recbole_pmmrec("PMMRec", synth.name, config_dict=dict(
        config, checkpoint_dir=str(tmp_path / f"saved{i}"), log_dir=str(tmp_path / f"logs{i}"))) for i in (0, 1)]
    first, second = runs
    assert first["test_result"] == second["test_result"]
    assert first["best_valid_result"] == second["best_valid_result"]
    a = load_own_checkpoint(first["checkpoint"], tmp_path / "saved0")["state_dict"]
    b = load_own_checkpoint(second["checkpoint"], tmp_path / "saved1")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical weights, not only rounded metrics

    # The run log holds one JSON line with the provenance, also written beside it.
    log = Path(first["log_file"]).read_text(encoding="utf-8")
    line = next(line for line in log.splitlines() if "run provenance: " in line)
    info = json.loads(line.split("run provenance: ", 1)[1])
    assert info == json.loads(Path(first["log_file"]).with_suffix(".provenance.json").read_text())
    assert {"python", "torch", "recbole", "numpy", "pandas", "transformers", "timm"} <= set(info["versions"])
    assert info["versions"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    for suffix in ("inter", "item"):
        path = synth.folder / f"{synth.name}.{suffix}"
        assert info["data_files"][path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["config"]["seed"] == first["config"]["seed"] and info["config"]["model"] == "PMMRec"
    cache_root = Path(config["cache_dir"]).resolve()
    assert set(info["cache_dirs"]) == {"text", "image"}
    for folder in info["cache_dirs"].values():  # <name>-<key hash>: the cache key of what was encoded
        assert Path(folder).parent == cache_root and (Path(folder) / "meta.json").is_file()
    second_info = second["provenance"]
    assert second_info["cache_dirs"] == info["cache_dirs"] and second_info["data_files"] == info["data_files"]
    assert second_info["config_sha256"] != info["config_sha256"]  # the runs differ in their output folders only
