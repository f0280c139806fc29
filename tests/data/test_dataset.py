"""PMMRecDataset on bad input: unknown items, empty data, items with no content, caches that must not be reused."""

import logging

import pytest
import torch

from recbole_pmmrec.errors import PMMRecDataError
from recbole_pmmrec.quick_start import load_config
from recbole_pmmrec.synthetic import make_synthetic_dataset
from recbole_pmmrec.utils import create_dataset


def dataset_for(data, pmmrec_config, **overrides):
    return create_dataset(load_config("PMMRec", data.name, config_dict=pmmrec_config(data, **overrides)))


def test_interactions_with_unknown_items_are_dropped_and_counted(tmp_path, pmmrec_config, caplog):
    data = make_synthetic_dataset(tmp_path, "unk", n_users=20, n_items=30, seed=2)
    with open(data.folder / "unk.inter", "a") as fh:
        fh.write("u1\tghost-item\t2000000\nu2\tghost-item\t2000001\n")
    with caplog.at_level(logging.WARNING):
        dataset = dataset_for(data, pmmrec_config)
    assert dataset.dropped_unknown_interactions == 2
    assert "ghost-item" not in list(dataset.field2id_token["item_id"])
    assert any("dropped 2 interactions" in r.getMessage() for r in caplog.records)


def test_empty_dataset_is_a_clear_error(tmp_path, pmmrec_config):
    data = make_synthetic_dataset(tmp_path, "empty", n_users=5, n_items=10, seed=0)
    (data.folder / "empty.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n")
    with pytest.raises(PMMRecDataError, match="no interactions"):
        dataset_for(data, pmmrec_config)


def test_item_with_neither_text_nor_image_is_named(tmp_path, pmmrec_config):
    data = make_synthetic_dataset(tmp_path, "bare", n_users=20, n_items=30, seed=2)
    lines = (data.folder / "bare.item").read_text().splitlines()
    lines[3] = lines[3].split("\t")[0] + "\t\t"  # item 3: empty text ...
    (data.folder / "bare.item").write_text("\n".join(lines) + "\n")
    (data.folder / "bare.images" / "3.png").unlink()  # ... and no image
    with pytest.raises(PMMRecDataError, match=r"neither text nor image.*'3'"):
        dataset_for(data, pmmrec_config)


def test_missing_and_corrupt_images_fall_back_to_text_and_are_counted(tmp_path, pmmrec_config):
    data = make_synthetic_dataset(tmp_path, "img", n_users=20, n_items=30, seed=5)
    images = data.folder / "img.images"
    (images / "4.png").unlink()
    (images / "5.png").write_bytes(b"")
    (images / "6.png").write_bytes((images / "7.png").read_bytes()[:60])  # truncated
    dataset = dataset_for(data, pmmrec_config)
    tokens = list(dataset.field2id_token["item_id"])
    has_image = dataset.item_features.has_image
    for token in ("4", "5", "6"):
        assert not has_image[tokens.index(token)] and dataset.item_features.has_text[tokens.index(token)]
    assert has_image[tokens.index("7")]
    assert sum(v for k, v in dataset.item_features.content.fallbacks.items() if k.startswith("image_")) >= 3


def test_cache_is_reused_and_a_changed_setting_builds_a_new_one(synth, pmmrec_config, tmp_path):
    first = dataset_for(synth, pmmrec_config)
    text_dirs = sorted((tmp_path / "cache").glob("synth-text-*"))
    assert len(text_dirs) == 1
    mtime = (text_dirs[0] / "states.npy").stat().st_mtime_ns
    second = dataset_for(synth, pmmrec_config)
    assert (text_dirs[0] / "states.npy").stat().st_mtime_ns == mtime, "the cache was rewritten"
    ids = torch.arange(first.item_num)
    assert torch.equal(first.item_features.states("text", ids)[0], second.item_features.states("text", ids)[0])
    dataset_for(synth, pmmrec_config, text_max_length=8)  # another encoder setting: another cache
    assert len(sorted((tmp_path / "cache").glob("synth-text-*"))) == 2


def test_changed_item_text_builds_a_new_cache(synth, pmmrec_config, tmp_path):
    dataset_for(synth, pmmrec_config)
    item_file = synth.folder / "synth.item"
    item_file.write_text(item_file.read_text().replace("item1\t", "item1 renamed\t", 1))
    dataset_for(synth, pmmrec_config)
    assert len(sorted((tmp_path / "cache").glob("synth-text-*"))) == 2


def test_a_data_set_without_images_never_touches_the_image_encoder(tmp_path, pmmrec_config, monkeypatch, caplog):
    """modalities ~ on data without any image: text only, one log line says why, and no image encoder is built
    (before: EfficientNet states for every item, 10+ minutes on a 20k-item text set). Asking for images that the
    data does not have is an error that says what to do."""
    import shutil

    from recbole_pmmrec.data import features as features_module

    data = make_synthetic_dataset(tmp_path, "textonly", n_users=20, n_items=30, seed=3)
    shutil.rmtree(data.folder / "textonly.images")
    built = []
    real = features_module.build_encoder
    monkeypatch.setattr(features_module, "build_encoder", lambda modality, **kw: built.append(modality) or
                        real(modality, **kw))
    with caplog.at_level(logging.INFO, logger="recbole_pmmrec.config"):
        dataset = dataset_for(data, pmmrec_config)
    assert built == ["text"] and dataset.item_features.modalities == ("text",)
    assert not list((tmp_path / "cache").glob("textonly-image*"))
    assert any("modalities=['text']" in r.getMessage() and "0 of 30 items have an image" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(PMMRecDataError, match=r"modalities=\['text', 'image'\] but the data has no image"):
        dataset_for(data, pmmrec_config, modalities=["text", "image"])
