"""Peak memory of building the text encoder-state cache for a large synthetic catalogue.

    .venv/bin/python bench/studies/cache_memory.py              # 100,000 items, random 2-layer BERT
    .venv/bin/python bench/studies/cache_memory.py --encoder minilm # the real all-MiniLM-L6-v2 (~9 min)

The point is bounded memory: states are streamed to disk batch by batch, so the process never
holds the (n_items, L, D) array. The default encoder is a random-weight BERT with MiniLM's width
(hidden 384, so the cache has the real size) but 2 layers instead of 6, because the real MiniLM
encodes ~190 sentences/s on 2 cores. Prints peak RSS (getrusage) and its ratio to a 2 GB budget,
the RSS growth while building, cache size on disk, build speed and random-batch read speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

from recbole_pmmrec.data.cache import text_state_cache  # noqa: E402
from recbole_pmmrec.data.content import ItemContent  # noqa: E402
from recbole_pmmrec.encoders import TextEncoder  # noqa: E402

BUDGET_BYTES = 2 * 1024**3


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def tiny_bert(folder: Path, n_words: int, layers: int) -> list[str]:
    import transformers

    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = sorted({"".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(n_words)})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    transformers.BertTokenizer(vocab=vocab).save_pretrained(str(folder))
    config = transformers.BertConfig(hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                                     intermediate_size=1536, vocab_size=len(vocab), max_position_embeddings=512)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(str(folder))
    return words


def synthetic_texts(n_items: int, words: list[str], seed: int = 0) -> dict[str, dict[str, str]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 30, n_items)
    picks = rng.integers(0, len(words), lengths.sum())
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return {f"item{i}": {"title": " ".join(words[j] for j in picks[bounds[i]:bounds[i + 1]])}
            for i in range(n_items)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-items", type=int, default=100_000)
    ap.add_argument("--encoder", choices=["tiny", "minilm"], default="tiny")
    ap.add_argument("--layers", type=int, default=2, help="layers of the tiny random BERT")
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--work-dir", default=None, help="where the cache goes (default: a temp dir, removed)")
    ap.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()

    proc = psutil.Process()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="pmmrec-cache-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.encoder == "tiny":
        words = tiny_bert(work / "bert", 5000, args.layers)
        encoder = TextEncoder(str(work / "bert"), train_layers=0, max_length=args.max_length)
        label = f"random BERT, hidden 384, {args.layers} layers (MiniLM width; NOT the real MiniLM)"
    else:
        encoder = TextEncoder("minilm", train_layers=0, max_length=args.max_length)
        words = [w for w in encoder.tokenizer.get_vocab() if w.isalpha() and len(w) > 2][:20000]
        label = "all-MiniLM-L6-v2 (real weights), 6 layers"
    encoder.eval()
    texts = synthetic_texts(args.n_items, words)
    tokens = ["[PAD]", *texts.keys()]
    t1 = time.perf_counter()
    content = ItemContent(tokens, texts, ["title"], encoder.tokenize, lowercase=True, name="synthetic")
    t_tok = time.perf_counter() - t1
    del texts
    rss_before = proc.memory_info().rss

    rss_max, calls = [rss_before], [0]
    inner = encoder.encode_bottom

    def sampled(inputs):  # sample RSS while building
        calls[0] += 1
        out = inner(inputs)
        rss_max[0] = max(rss_max[0], proc.memory_info().rss)
        return out

    encoder.encode_bottom = sampled
    t2 = time.perf_counter()
    states, mask = text_state_cache(encoder, content, work / "cache", dtype=args.dtype,
                                    batch_size=args.batch_size, progress=sys.stderr.isatty())
    t_build = time.perf_counter() - t2
    cache_loaded = calls[0] == 0
    encoder.encode_bottom = inner
    disk = sum(f.stat().st_size for f in (work / "cache").rglob("*.npy"))

    peak_build = peak_rss_bytes()
    # reads: one full pass in random batches of 1,000 items, as an epoch of the item tower would
    order = torch.from_numpy(np.random.default_rng(1).permutation(content.n_items))
    t3 = time.perf_counter()
    for batch_ids in order.split(1000):
        batch = states[batch_ids]
    t_read = (time.perf_counter() - t3) / len(order.split(1000))
    peak = peak_rss_bytes()
    result = {
        "encoder": label,
        "n_items": args.n_items,
        "max_length": args.max_length,
        "cache_shape": list(states.shape),
        "cache_dtype": args.dtype,
        "cache_on_disk_MB": round(disk / 1e6, 1),
        "full_states_in_RAM_would_be_MB": round(states.shape[0] * states.shape[1] * states.shape[2]
                                                * batch.element_size() / 1e6, 1),
        "tokenise_s": round(t_tok, 2),
        "build_s": round(t_build, 1),
        "build_items_per_s": round(args.n_items / t_build, 1),
        "rss_before_build_MB": round(rss_before / 1e6, 1),
        "rss_growth_during_build_MB": round((rss_max[0] - rss_before) / 1e6, 1),
        "peak_rss_after_build_MB": round(peak_build / 1e6, 1),
        "peak_rss_MB": round(peak / 1e6, 1),
        "peak_rss_over_2GB": round(peak / BUDGET_BYTES, 3),
        "read_1000_random_items_ms": round(t_read * 1e3, 2),
        "cache_loaded_not_built": cache_loaded,
        "total_s": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(),
    }
    for k, v in result.items():
        print(f"{k:32s} {v}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
