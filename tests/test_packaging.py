"""The wheel carries the yaml defaults, and the package runs from it outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), str(REPO)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"pip wheel failed: {done.stderr[-2000:]}")
    wheels = list(out.glob("recbole_pmmrec-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_carries_every_yaml_default(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"recbole_pmmrec/properties/" + str(p.relative_to(REPO / "properties"))
                for p in (REPO / "properties").rglob("*.yaml")}
    assert "recbole_pmmrec/properties/model/PMMRec.yaml" in expected
    assert expected <= names, sorted(expected - names)


def test_the_installed_package_finds_its_defaults_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import recbole_pmmrec.config as c, recbole_pmmrec.quick_start as q; "
            "print(c.properties_dir()); "
            "cfg = q.load_config('PMMRec', 'ml-100k', config_dict={'use_gpu': False}); "
            "print(cfg['fusion_heads'], cfg['text_encoder'])")
    env = dict(os.environ, PYTHONPATH=str(site))
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    where, values = done.stdout.strip().splitlines()[-2:]
    assert Path(where) == site / "recbole_pmmrec" / "properties"
    assert values == "2 minilm"  # model/PMMRec.yaml and content.yaml
