"""Tiny models built offline for the encoder tests."""

from __future__ import annotations

import pytest
import torch
import transformers

WORDS = "a the of movie cat dog sits on mat hello world story toy comedy drama x".split()


def tiny_bert(path, cls=transformers.BertModel, config_cls=transformers.BertConfig, layers=3):
    """A 32-wide BERT (or DistilBERT) with a real WordPiece tokenizer, saved into ``path``."""
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


tiny_bert.vocab_size = len(WORDS) + 5


@pytest.fixture(scope="module")
def make_tiny_bert():
    return tiny_bert


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("tinybert"))
