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
