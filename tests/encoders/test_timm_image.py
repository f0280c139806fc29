"""timm image encoders: the split reproduces the unsplit models; each family is its own class."""

from __future__ import annotations

import copy
import json

import pytest
import timm
import torch

from recbole_pmmrec.encoders import EfficientNetEncoder, ImageEncoder, TimmViTEncoder
from recbole_pmmrec.errors import PMMRecConfigError


def _ref_tokens(ref, x, grid=None, prefix=0):
    with torch.no_grad():
        f = ref.forward_features(x)
    if f.dim() == 4:  # (N, C, h, w)
        if grid:
            f = torch.nn.functional.adaptive_avg_pool2d(f, grid)
        return f.flatten(2).transpose(1, 2)
    if grid:  # ViT: pool the patch tokens, keep CLS
        patches = f[:, prefix:]
        side = int(patches.shape[1] ** 0.5)
        fmap = patches.transpose(1, 2).reshape(f.shape[0], -1, side, side)
        pooled = torch.nn.functional.adaptive_avg_pool2d(fmap, grid).flatten(2).transpose(1, 2)
        return torch.cat([f[:, :prefix], pooled], 1)
    return f


@pytest.mark.parametrize(
    "arch,size,kwargs,n_tokens",
    [("efficientnet_lite0", 64, {}, 4), ("vit_tiny_patch16_224", 32, {"img_size": 32}, 5)],
)
@pytest.mark.parametrize("k", [0, 1, 2])
def test_image_split_equals_full_model(arch, size, kwargs, n_tokens, k):
    torch.manual_seed(0)
    ref = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs).eval()
    x = torch.randn(2, 3, size, size)
    for grid in (None, 1):
        enc = ImageEncoder(f"timm:{arch}", train_layers=k, image_size=size, grid=grid, model=copy.deepcopy(ref)).eval()
        states, mask = enc.encode_bottom(x)
        assert mask.all() and mask.shape == states.shape[:2]
        out = enc.encode_top(states, mask)
        prefix = 1 if "vit" in arch else 0
        expect = _ref_tokens(ref, x, grid, prefix)
        assert out.shape == expect.shape
        assert out.shape[1] == (n_tokens if grid is None else prefix + 1)
        torch.testing.assert_close(out, expect, atol=1e-4, rtol=0)
        torch.testing.assert_close(enc(x)[0], expect, atol=1e-4, rtol=0)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert all(n.startswith("top.") for n in trainable)
    assert (len(trainable) > 0) == (k > 0)


def test_image_encoder_picks_the_family_class():
    assert type(ImageEncoder("timm:efficientnet_lite0", image_size=32)) is EfficientNetEncoder
    assert type(ImageEncoder("timm:vit_tiny_patch16_224", image_size=32)) is TimmViTEncoder
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    assert type(ImageEncoder("timm:my_vit", image_size=32, model=vit)) is TimmViTEncoder
    enc = TimmViTEncoder("timm:vit_tiny_patch16_224", image_size=32)  # a family class built directly
    assert isinstance(enc, ImageEncoder) and copy.deepcopy(enc).identity() == enc.identity()
    with pytest.raises(PMMRecConfigError, match="not a timm EfficientNet-like model"):
        EfficientNetEncoder("timm:vit_tiny_patch16_224", image_size=32, model=vit)
    with pytest.raises(PMMRecConfigError, match="not an EfficientNet-like or ViT-like.*Hugging Face"):
        ImageEncoder("timm:resnet18", image_size=32)


def test_image_batchnorm_stays_frozen_while_top_trains():
    enc = ImageEncoder("timm:efficientnet_lite0", train_layers=2, image_size=64)
    enc.train()
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
    before = {n: b.clone() for n, b in enc.top.named_buffers()}
    states, mask = enc.encode_bottom(torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8))
    enc.encode_top(states, mask).mean().backward()
    assert all(torch.equal(b, before[n]) for n, b in enc.top.named_buffers())  # running stats unchanged
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.top.parameters())


def test_image_uint8_input_is_normalised():
    enc = ImageEncoder("timm:efficientnet_lite0", image_size=64).eval()
    img = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    mean = torch.tensor(enc.preprocess["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(enc.preprocess["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(enc(img)[0], enc((img / 255.0 - mean) / std)[0])


def test_image_identity_and_errors():
    a = ImageEncoder("timm:efficientnet_lite0", train_layers=1, image_size=64, grid=2)
    ida = a.identity()
    json.dumps(ida)
    assert ida["boundary_block"] == 7 and ida["image_size"] == 64 and ida["state_dim"] == 320
    assert ida["grid"] is None  # with k > 0 pooling happens in the top: not part of the bottom
    assert ImageEncoder("timm:efficientnet_lite0", image_size=64, grid=2).identity()["grid"] == 2
    with pytest.raises(PMMRecConfigError, match="between 0 and 8"):
        ImageEncoder("timm:efficientnet_lite0", train_layers=9, image_size=64)
    with pytest.raises(PMMRecConfigError, match="timm architecture"):
        ImageEncoder("no_such_net")
