"""``domain_batches``: on a data set merged from several sources, each training batch holds one domain."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_tools.convert import run
from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.quick_start import load_config
from recbole_pmmrec.synthetic import make_synthetic_dataset
from recbole_pmmrec.utils import create_dataset, data_preparation


@pytest.fixture
def merged(tmp_path):
    a = make_synthetic_dataset(tmp_path / "src", name="dom-a", n_users=30, n_items=20, seed=1, images=False)
    b = make_synthetic_dataset(tmp_path / "src", name="dom-b", n_users=20, n_items=15, seed=2, images=False)
    run(["merge", "--inputs", str(a.folder), str(b.folder), "--output", str(tmp_path / "data"), "--name", "mix",
         "--quiet"])
    return tmp_path / "data"


def _train(data, pmmrec_config, synth_like, **overrides):
    config = load_config("PMMRec", "mix", config_dict=pmmrec_config(synth_like, data_path=str(data),
                                                                   modalities=["text"], **overrides))
    return data_preparation(config, create_dataset(config))[0]


def test_every_batch_is_one_domain_and_every_row_is_seen_once(merged, synth, pmmrec_config):
    train = _train(merged, pmmrec_config, synth, domain_batches=True, train_batch_size=8)
    users = train._dataset.field2id_token[train._dataset.uid_field]
    seen, batches = [], 0
    for batch in train:
        domains = {str(users[u]).split("_")[0] for u in batch["user_id"].tolist()}
        assert len(domains) == 1, domains
        seen += batch["user_id"].tolist()
        batches += 1
    assert batches == len(train) and len(seen) == len(train._dataset)
    assert sorted(seen) == sorted(train._dataset.inter_feat["user_id"].tolist())
    first = [b["user_id"].tolist() for b in train]
    assert first != [b["user_id"].tolist() for b in train]  # reshuffled each epoch (the loader's generator)


def test_domain_batches_need_a_merged_data_set(synth, pmmrec_config):
    config = load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth, domain_batches=True))
    with pytest.raises(PMMRecConfigError, match="merged from several sources"):
        data_preparation(config, create_dataset(config))


def test_training_runs_on_domain_batches(merged, synth, pmmrec_config):
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    result = run_recbole_pmmrec("PMMRec", "mix", config_dict=pmmrec_config(
        synth, data_path=str(merged), modalities=["text"], domain_batches=True, train_batch_size=8))
    assert np.isfinite(result["test_result"]["ndcg@10"])


def test_whiten_on_a_merged_data_set_uses_each_sources_own_statistics(merged, synth, pmmrec_config):
    """``whiten`` on a merged data set: every source's items are whitened with that source's statistics (as a
    target data set is with its own), so each source's pooled states are centred on their own mean; a data set
    that is not merged has no item domains; items added after training (no domain) are refused by name."""
    import torch

    from recbole_pmmrec.model.pmmrec import PMMRec
    from recbole_pmmrec.model.similarity import whitening

    config = load_config("PMMRec", "mix", config_dict=pmmrec_config(synth, data_path=str(merged),
                                                                    modalities=["text"], whiten="zca"))
    train = data_preparation(config, create_dataset(config))[0]
    features = train._dataset.item_features
    tokens = train._dataset.field2id_token[train._dataset.iid_field]
    assert features.item_domains[0] == -1
    assert [str(tokens[i]).split("_")[0] for i in (1, len(tokens) - 1)] == \
        [["dom-a", "dom-b"][int(features.item_domains[i])] for i in (1, len(tokens) - 1)]
    model = PMMRec(config, train._dataset)
    states, has = model.item_tower.pooled_states.double(), features.has_text.bool()
    raw = features.pooled("text").float()
    for d in (0, 1):
        rows = has & (features.item_domains == d)
        assert int(rows.sum()) > 2
        assert float(states[rows].mean(dim=0).abs().max()) < 1e-4  # centred on its own source's mean
        mean, matrix = whitening(raw, "zca", rows)
        torch.testing.assert_close(states[rows].float(), (raw[rows] - mean) @ matrix, rtol=1e-4, atol=1e-4)
    shared_mean, shared = whitening(raw, "zca", has)
    assert not torch.allclose(states[has].float(), (raw[has] - shared_mean) @ shared, atol=1e-3)
    with pytest.raises(PMMRecConfigError, match="no source domain"):
        model.item_tower._whitened(_NoDomains(), "text", raw[:2], torch.arange(2))
    config = load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth, modalities=["text"]))
    assert data_preparation(config, create_dataset(config))[0]._dataset.item_features.item_domains is None


class _NoDomains:
    item_domains = None
