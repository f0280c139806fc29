"""ContentKNN: the cosine between frozen content vectors and the recency-weighted recent history."""

import pytest
import torch
import torch.nn.functional as F

from recbole_pmmrec.quick_start import load_config, run_recbole_pmmrec
from recbole_pmmrec.utils import create_dataset, data_preparation, get_model


def _model(synth, pmmrec_config, **overrides):
    config = load_config("ContentKNN", synth.name, config_dict=pmmrec_config(synth, **overrides))
    dataset = create_dataset(config)
    _, _, test = data_preparation(config, dataset)
    return get_model("ContentKNN")(config, test._dataset), test


def _batch(loader):
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, tuple) else batch


@pytest.mark.parametrize("modalities", [["text"], ["text", "image"]])
def test_scores_equal_a_loop_reference(synth, pmmrec_config, modalities):
    model, test = _model(synth, pmmrec_config, modalities=modalities, knn_decay=0.5, knn_history=3,
                         exclude_history=False)
    features = test._dataset.item_features
    pooled = [F.normalize(features.pooled(m).float(), dim=-1) for m in modalities]
    batch = _batch(test)
    seqs, lengths = batch["item_id_list"], batch["item_length"]
    scores = model.full_sort_predict(batch)
    for row in range(min(5, len(seqs))):
        n = int(lengths[row])
        user = torch.zeros(sum(p.shape[1] for p in pooled))
        for j in range(max(0, n - 3), n):  # the last 3 items, weight 0.5 ** age
            item = int(seqs[row, j])
            user += 0.5 ** (n - 1 - j) * torch.cat([p[item] for p in pooled]) / len(pooled) ** 0.5
        items = torch.cat(pooled, dim=1) / len(pooled) ** 0.5
        expected = items @ (user / user.norm())
        torch.testing.assert_close(scores[row, 1:], expected[1:], atol=1e-5, rtol=1e-4)


def test_decay_zero_is_the_last_item_alone_and_history_is_excluded(synth, pmmrec_config):
    model, test = _model(synth, pmmrec_config, modalities=["text"], knn_decay=0.0, exclude_history=True)
    batch = _batch(test)
    seqs, lengths = batch["item_id_list"], batch["item_length"]
    scores = model.full_sort_predict(batch)
    last = seqs[torch.arange(len(seqs)), lengths - 1]
    expected = model.item_vecs @ F.normalize(model.item_vecs[last], dim=-1).t()
    seen = torch.zeros_like(scores, dtype=torch.bool).scatter(1, seqs, True)
    torch.testing.assert_close(scores[~seen], expected.t()[~seen], atol=1e-5, rtol=1e-4)
    assert torch.isinf(scores[seen & (torch.arange(scores.shape[1]) > 0)]).all()


def test_runs_from_the_same_command_without_training(synth, pmmrec_config):
    config = pmmrec_config(synth)
    config.pop("epochs")  # ContentKNN.yaml: epochs 0
    result = run_recbole_pmmrec("ContentKNN", synth.name, config_dict=config)
    assert result["config"]["epochs"] == 0 and result["checkpoint"] is None
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0


def test_knn_whiten_zca_scores_with_the_catalogues_decorrelated_unit_vectors(synth, pmmrec_config):
    """``knn_whiten: zca``: each item's content vector is whitened with the catalogue's statistics (the shrunk ZCA
    of ``similarity.whitening``) and set to length 1 again; the scores are the cosines with those vectors, and
    differ from the raw floor's."""
    from recbole_pmmrec.model.similarity import whitening

    raw, test = _model(synth, pmmrec_config, modalities=["text"], exclude_history=False)
    zca, _ = _model(synth, pmmrec_config, modalities=["text"], exclude_history=False, knn_whiten="zca")
    has = raw.item_vecs.abs().sum(dim=1) > 0
    mean, matrix = whitening(raw.item_vecs, "zca", has)
    expected = F.normalize((raw.item_vecs[has] - mean) @ matrix, dim=-1)
    torch.testing.assert_close(zca.item_vecs[has], expected)
    assert (zca.item_vecs[~has] == 0).all() and torch.allclose(zca.item_vecs[has].norm(dim=-1), torch.ones(1))
    batch = _batch(test)
    scores = zca.full_sort_predict(batch)
    user = F.normalize(zca.user_vectors(batch["item_id_list"], batch["item_length"]), dim=-1)
    torch.testing.assert_close(scores, user @ zca.item_vecs.t())
    assert not torch.allclose(scores, raw.full_sort_predict(batch), atol=1e-3)


def test_knn_whiten_zca_whitens_each_modality_on_its_own(synth, pmmrec_config):
    """With text and image, zca whitens each modality's block with the statistics of the items that have it and
    sets it to length 1 again (then 1/sqrt(2) after concatenation): the text block is the text model's alone, over
    sqrt(2), and each block of an item has length 1/sqrt(2). Whitened jointly, the wider image block would outweigh
    the text one."""
    zca = {"exclude_history": False, "knn_whiten": "zca"}
    both, _ = _model(synth, pmmrec_config, modalities=["text", "image"], **zca)
    text, _ = _model(synth, pmmrec_config, modalities=["text"], **zca)
    width = text.item_vecs.shape[1]
    assert both.item_vecs.shape[1] > width
    torch.testing.assert_close(both.item_vecs[:, :width], text.item_vecs / 2 ** 0.5)
    for block in (both.item_vecs[1:, :width], both.item_vecs[1:, width:]):
        norms = block.norm(dim=-1)
        torch.testing.assert_close(norms, torch.full_like(norms, 2 ** -0.5))
