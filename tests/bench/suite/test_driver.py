"""bench/suite/driver.py and the user-facing command bench/run.py."""

import argparse
import subprocess
import sys

import pytest

from bench.suite import driver, labels

REPO = driver.REPO


def test_cold_start_takes_two_extra_seeds_and_quality_does_not():
    args = argparse.Namespace(seed_list=[2023, 2024], seeds=1)
    assert driver.run_seeds(args, labels.SEEDS + labels.COLD_EXTRA_SEEDS) == [2023, 2024]
    with pytest.raises(SystemExit, match="2023"):
        driver.run_seeds(args)
    assert driver.run_seeds(argparse.Namespace(seed_list=None, seeds=2)) == [2020, 2021]


def test_the_command_is_bench_run_py_and_it_lists_the_parts():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    for part in ("quality", "coldstart", "speed", "scaling", "salvage", "report"):
        assert part in out.stdout
