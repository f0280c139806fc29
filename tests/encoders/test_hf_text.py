"""Text encoder: the frozen-bottom / trainable-top split reproduces the unsplit Hugging Face model."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from recbole_pmmrec.encoders import TextEncoder
from recbole_pmmrec.errors import PMMRecConfigError, PMMRecError

SENTENCES = ["hello world the cat", "dog", "the movie of a cat dog hello world x toy story comedy drama"]


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


def test_text_bottom_output_is_the_same_in_train_mode(bert_dir):
    """The bottom runs in eval mode even when the encoder trains: cached states are exact."""
    enc = TextEncoder(str(bert_dir), train_layers=1, max_length=8)
    dropouts = [m for m in enc.bottom.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts
    for m in dropouts:
        m.p = 0.5
    inputs = enc.tokenize(SENTENCES)
    enc.eval()
    expected, _ = enc.encode_bottom(inputs)
    enc.train()
    assert not any(m.training for m in enc.bottom.modules())
    torch.testing.assert_close(enc.encode_bottom(inputs)[0], expected, atol=0, rtol=0)


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


def test_text_unsplittable_family_is_a_clear_error(tmp_path, make_tiny_bert):
    path = make_tiny_bert(tmp_path / "distil", transformers.DistilBertModel, transformers.DistilBertConfig, layers=2)
    enc = TextEncoder(str(path), train_layers=0, max_length=8)  # frozen works for any AutoModel
    tokens, _ = enc(enc.tokenize(SENTENCES))
    assert tokens.shape == (3, 8, 32)
    with pytest.raises(PMMRecConfigError, match=r"distilbert.*text_train_layers: 0.*BERT-like") as err:
        TextEncoder(str(path), train_layers=1, max_length=8)
    # the split happens in every encoder_mode: switching the mode is no way out
    assert "encoder_mode" not in str(err.value) and "end_to_end" not in str(err.value)


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


def test_roberta_family_splits(tmp_path, make_tiny_bert):
    path = tmp_path / "roberta"
    make_tiny_bert(path)  # for the tokenizer; the model below replaces the BERT weights
    config = transformers.RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, vocab_size=make_tiny_bert.vocab_size, pad_token_id=0,
                                        max_position_embeddings=40)
    transformers.RobertaModel(config, add_pooling_layer=False).save_pretrained(str(path))
    ref = transformers.AutoModel.from_pretrained(str(path)).eval()
    enc = TextEncoder(str(path), train_layers=1, max_length=10).eval()
    ids, mask = enc.tokenize(SENTENCES)
    with torch.no_grad():
        expect = ref(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(enc.encode_top(*enc.encode_bottom((ids, mask))), expect, atol=1e-4, rtol=0)
