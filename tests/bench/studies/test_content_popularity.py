"""bench/studies/content_popularity.py: the ridge regression and rank correlation behind the cold-start check."""

import numpy as np
import pytest

from bench.studies import content_popularity as cp


def test_content_popularity_ridge_finds_a_linear_signal_and_not_noise():
    """ held-out predictions of a linear target rank it almost perfectly, of an
    unrelated target near zero; the rank correlation matches its definition on a small case."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20))
    y = x @ rng.normal(size=20) + 0.1 * rng.normal(size=400)
    assert cp.spearman(cp.ridge_cv(x, y, 10.0), y) > 0.95
    noise = rng.normal(size=400)
    # cross-validated predictions of pure noise lean slightly negative (each fold's training mean excludes it)
    assert abs(cp.spearman(cp.ridge_cv(x, noise, 10.0), noise)) < 0.35
    assert cp.spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0])) == pytest.approx(0.5)
