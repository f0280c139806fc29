"""Hugging Face vision models from a local folder: token models and convolutional feature maps."""

from __future__ import annotations

import pytest
import torch
import transformers

from recbole_pmmrec.encoders import HFImageEncoder, ImageEncoder
from recbole_pmmrec.errors import PMMRecConfigError


@pytest.mark.parametrize("kind", ["vit", "clip"])
def test_hf_vision_models_split(tmp_path, kind):
    common = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    if kind == "vit":
        model = transformers.ViTModel(transformers.ViTConfig(**common), add_pooling_layer=False)
    else:
        model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**common))
    model.save_pretrained(str(tmp_path / kind))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expect = model(pixel_values=x).last_hidden_state  # (2, 1 + 16, 32): CLS + 4x4 patches
    for k in (0, 2):
        enc = ImageEncoder(str(tmp_path / kind), train_layers=k, image_size=32).eval()
        assert type(enc) is HFImageEncoder and enc.num_blocks == 3
        torch.testing.assert_close(enc.encode_top(*enc.encode_bottom(x)), expect, atol=1e-4, rtol=0)
        assert all(n.startswith("top.") for n, p in enc.named_parameters() if p.requires_grad)
    pooled = ImageEncoder(str(tmp_path / kind), train_layers=1, image_size=32, grid=2).eval()
    assert pooled(x)[0].shape == (2, 1 + 4, 32)
    with pytest.raises(PMMRecConfigError, match="image_size: 32"):
        ImageEncoder(str(tmp_path / kind), image_size=64)


@pytest.fixture(scope="module")
def convnext(tmp_path_factory):
    """A random 3-stage ConvNext: 32 px -> last_hidden_state a (N, 64, 2, 2) feature map."""
    path = tmp_path_factory.mktemp("convnext")
    config = transformers.ConvNextConfig(num_channels=3, hidden_sizes=[16, 32, 64], depths=[1, 1, 1], num_stages=3,
                                         image_size=32)
    torch.manual_seed(0)
    model = transformers.ConvNextModel(config).eval()
    model.save_pretrained(str(path))
    return path, model


def _map_tokens(fmap, grid=None):
    """(N, C, h, w) -> (N, h*w, C) tokens, or (N, grid*grid, C) after adaptive average pooling."""
    if grid is not None:
        fmap = torch.nn.functional.adaptive_avg_pool2d(fmap, grid)
    return fmap.flatten(2).transpose(1, 2)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("grid", [None, 1])
def test_hf_feature_map_becomes_tokens(convnext, k, grid):
    path, model = convnext
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fmap = model(pixel_values=x).last_hidden_state
    assert fmap.shape == (2, 64, 2, 2)
    enc = ImageEncoder(str(path), train_layers=k, image_size=32, grid=grid).eval()
    assert enc.num_blocks == 3 and enc.out_dim == 64
    tokens, mask = enc(x)
    expect = _map_tokens(fmap, grid)  # (2, 4, 64) or (2, 1, 64): positions are tokens, channels the width
    assert tokens.shape == expect.shape and mask.all()
    torch.testing.assert_close(tokens, expect, atol=1e-4, rtol=0)
    if k == 0:
        assert enc.state_dim == 64 and enc.num_state_tokens == expect.shape[1]
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert all(n.startswith("top.") for n in trainable) and (len(trainable) > 0) == (k > 0)


def test_hf_model_that_cannot_be_split_names_what_to_do(tmp_path):
    """Swin's stages take other arguments: frozen works, a split is refused with advice that works."""
    config = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                                     window_size=2)
    torch.manual_seed(0)
    transformers.SwinModel(config, add_pooling_layer=False).save_pretrained(str(tmp_path / "swin"))
    enc = ImageEncoder(str(tmp_path / "swin"), train_layers=0, image_size=32).eval()
    assert enc(torch.randn(1, 3, 32, 32))[0].shape == (1, 16, 16)
    with pytest.raises(PMMRecConfigError, match=r"image_train_layers: 0.*ViTModel") as err:
        ImageEncoder(str(tmp_path / "swin"), train_layers=1, image_size=32)
    assert "encoder_mode" not in str(err.value) and "end_to_end" not in str(err.value)
    pooled = ImageEncoder(str(tmp_path / "swin"), train_layers=0, image_size=32, grid=2).eval()
    assert pooled.num_prefix_tokens == 0 and pooled(torch.randn(1, 3, 32, 32))[0].shape == (1, 4, 16)
