"""Synthetic multi-modal sequential data, written as RecBole atomic files (for tests and benchmarks).

Items belong to topics. An item's text names its topic and a few item words; its image is a small
picture whose colour is its topic's. Users move between items of mostly one topic, so the next item is
predictable from content, which lets tests check that training learns something.

Layout (the same as ``dataset_tools`` writes)::

    ROOT/NAME/NAME.inter      user_id:token  item_id:token  timestamp:float
    ROOT/NAME/NAME.item       item_id:token  title:token_seq  description:token_seq
    ROOT/NAME/NAME.images/    <item_token>.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TOPIC_WORDS = ["space", "cooking", "football", "jazz", "gardening", "chess", "sailing", "poetry",
                "robots", "history", "dance", "mountains", "coffee", "cinema", "birds", "math"]
_FILLER = ["the", "a", "great", "new", "old", "story", "guide", "about", "with", "for", "best", "of"]
_PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
                     [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
                     [170, 255, 195]], dtype=np.uint8)


@dataclass
class SyntheticDataset:
    root: Path          # pass as data_path
    name: str           # pass as dataset
    n_users: int
    n_items: int
    n_interactions: int
    item_topic: np.ndarray  # topic of item token i+1 at index i

    @property
    def folder(self) -> Path:
        return self.root / self.name


def make_synthetic_dataset(root, name: str = "synth", n_users: int = 40, n_items: int = 60, n_topics: int = 4,
                           min_len: int = 6, max_len: int = 12, stay_prob: float = 0.9, images: bool = True,
                           image_size: int = 16, missing_image_frac: float = 0.0, seed: int = 0,
                           item_prefix: str = "") -> SyntheticDataset:
    """Write a synthetic dataset under ``root/name`` and describe it.

    Item tokens are ``f"{item_prefix}{i}"`` for ``i`` in ``1..n_items``; user tokens ``u1..``.
    ``missing_image_frac`` of the items get no image file (the text-only fallback).
    """
    rng = np.random.default_rng(seed)
    n_topics = min(n_topics, len(_TOPIC_WORDS))
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    item_topic = np.arange(n_items) % n_topics
    rng.shuffle(item_topic)
    by_topic = [np.flatnonzero(item_topic == t) for t in range(n_topics)]

    lengths = rng.integers(min_len, max_len + 1, size=n_users)
    total = int(lengths.sum())
    users = np.repeat(np.arange(1, n_users + 1), lengths)
    items = np.empty(total, dtype=np.int64)
    pos = 0
    for length in lengths:  # per-user Markov chain over topics; O(total) and cheap at benchmark sizes
        topic = rng.integers(n_topics)
        switches = rng.random(length) > stay_prob
        new_topics = rng.integers(n_topics, size=length)
        for step in range(length):
            if switches[step]:
                topic = new_topics[step]
            items[pos] = rng.choice(by_topic[topic]) + 1
            pos += 1
    timestamps = np.concatenate([np.arange(length) for length in lengths]).astype(np.float64)
    timestamps += 1_000_000.0

    with open(folder / f"{name}.inter", "w", encoding="utf-8") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        fh.writelines(f"u{u}\t{item_prefix}{i}\t{t:.0f}\n" for u, i, t in zip(users, items, timestamps))

    with open(folder / f"{name}.item", "w", encoding="utf-8") as fh:
        fh.write("item_id:token\ttitle:token_seq\tdescription:token_seq\n")
        for i in range(n_items):
            topic = _TOPIC_WORDS[item_topic[i]]
            words = rng.choice(_FILLER, size=3)
            fh.write(f"{item_prefix}{i + 1}\t{topic} item{i + 1}\t{' '.join(words)} {topic}\n")

    if images:
        from PIL import Image

        image_dir = folder / f"{name}.images"
        image_dir.mkdir(exist_ok=True)
        missing = rng.random(n_items) < missing_image_frac
        for i in range(n_items):
            if missing[i]:
                continue
            noise = rng.integers(-20, 21, size=(image_size, image_size, 3))
            pixels = np.clip(_PALETTE[item_topic[i]].astype(np.int64) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(image_dir / f"{item_prefix}{i + 1}.png")

    return SyntheticDataset(Path(root), name, n_users, n_items, total, item_topic)


def make_tiny_text_encoder(folder, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random (seeded) BERT with a WordPiece vocabulary of the synthetic texts, saved as a local Hugging Face
    folder: the text encoder of the tests and of the benchmarks that measure the recommender, not an encoder.

    The same weights in every process (seeded), so cached text states and outcome-based tests are stable.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ";", "item", *_TOPIC_WORDS, *_FILLER]
    words += [f"##{d}" for d in "0123456789"] + list("0123456789abcdefghijklmnopqrstuvwxyz")
    # transformers 5 ignores vocab_file= here (every word becomes [UNK]): pass the vocabulary itself
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(dict.fromkeys(words))}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(folder)
    return folder
