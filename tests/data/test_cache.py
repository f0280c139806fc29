"""Encoder-state cache: keyed, resumable after a crash, corruption detected, memory-mapped reads."""

from __future__ import annotations

import errno
import json
import logging
import os
import warnings

import numpy as np
import pytest
import torch
import transformers

from recbole_pmmrec.data import cache as cache_module
from recbole_pmmrec.data.cache import EncoderStateCache, file_checksums, image_state_cache, text_state_cache
from recbole_pmmrec.data.content import ItemContent
from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError

N, L, D = 53, 5, 6


def states_of(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic stand-in encoder: (B, L, D) states and a (B, L) mask that depend on the id."""
    ids = ids.double()
    grid = torch.arange(L * D, dtype=torch.float64).view(1, L, D)
    states = torch.sin(ids.view(-1, 1, 1) * 0.37 + grid * 0.11)
    lengths = (ids.long() % L) + 1
    mask = torch.arange(L).view(1, L) < lengths.view(-1, 1)
    return states.float(), mask


class Recorder:
    def __init__(self, fail_after_rows: int | None = None):
        self.seen: list[int] = []
        self.fail_after_rows = fail_after_rows

    def __call__(self, ids):
        if self.fail_after_rows is not None and len(self.seen) >= self.fail_after_rows:
            raise KeyboardInterrupt("simulated crash")
        self.seen.extend(ids.tolist())
        return states_of(ids)


def _expected(dtype=np.float16):
    s, m = states_of(torch.arange(N))
    return s.numpy().astype(dtype), m.numpy()


def test_build_then_load_without_recomputing(tmp_path):
    cache = EncoderStateCache(tmp_path, "text", {"encoder": {"name": "toy"}, "content": "abc"})
    rec = Recorder()
    states, mask = cache.load_or_build(N, rec, batch_size=8)
    assert sorted(rec.seen) == list(range(N)) and cache.built_rows == N
    exp_s, exp_m = _expected()
    assert states.shape == (N, L, D) and states.dtype == torch.float16
    np.testing.assert_array_equal(states.numpy(), exp_s)
    assert mask.dtype == torch.bool and torch.equal(mask, torch.from_numpy(exp_m))
    meta = json.loads((cache.dir / "meta.json").read_text())
    assert meta["complete"] and meta["rows_done"] == N and meta["shape"] == [N, L, D]
    assert meta["key"]["encoder"] == {"name": "toy"} and meta["key"]["n_items"] == N
    assert cache.dir.name.startswith("text-") and len(cache.dir.name) == len("text-") + 16

    rec2 = Recorder()
    again = EncoderStateCache(tmp_path, "text", {"content": "abc", "encoder": {"name": "toy"}})  # key order
    states2, mask2 = again.load_or_build(N, rec2, batch_size=8)
    assert rec2.seen == [] and again.built_rows == 0 and again.dir == cache.dir
    assert isinstance(states2.numpy(), np.memmap) and len(states2) == N
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable array" warning from torch
        rows = states2[torch.tensor([5, 0, 52, 5])]
    assert rows.dtype == torch.float16 and rows.shape == (4, L, D)
    np.testing.assert_array_equal(rows.numpy(), exp_s[[5, 0, 52, 5]])
    rows[0] += 1  # a private copy: the cache is untouched
    np.testing.assert_array_equal(states2[5].numpy(), exp_s[5])
    np.testing.assert_array_equal(states2.to_tensor().numpy(), exp_s)


def test_interrupted_build_resumes_from_rows_done(tmp_path):
    key = {"encoder": "toy"}
    crash = Recorder(fail_after_rows=24)  # dies during the 4th batch of 8
    with pytest.raises(KeyboardInterrupt):
        EncoderStateCache(tmp_path, "t", key, flush_every_s=0).load_or_build(N, crash, batch_size=8)
    cache = EncoderStateCache(tmp_path, "t", key)
    meta = json.loads((cache.directory(N) / "meta.json").read_text())
    assert meta["rows_done"] == 24 and not meta["complete"]

    rest = Recorder()
    states, mask = cache.load_or_build(N, rest, batch_size=8)
    assert rest.seen == list(range(24, N)) and cache.built_rows == N - 24  # only the remaining rows

    clean = EncoderStateCache(tmp_path / "clean", "t", key).load_or_build(N, Recorder(), batch_size=8)
    np.testing.assert_array_equal(states.numpy(), clean[0].numpy())
    assert torch.equal(mask, clean[1])


def test_hard_kill_resumes_from_last_checkpoint(tmp_path):
    """A crash that skips the final checkpoint (kill -9) leaves meta at the last periodic flush."""
    key = {"encoder": "toy"}
    cache = EncoderStateCache(tmp_path, "t", key, flush_every_s=0)
    d = cache.directory(N)
    cache.load_or_build(N, Recorder(), batch_size=8)
    meta = json.loads((d / "meta.json").read_text())
    meta.update(rows_done=16, complete=False)  # as if killed after the 2nd batch's flush
    (d / "meta.json").write_text(json.dumps(meta))
    with open(d / "states.npy", "r+b") as fh:  # rows after 16 hold garbage from the dead process
        fh.seek(-100, 2)
        fh.write(b"\xff" * 100)
    rest = Recorder()
    states, _ = EncoderStateCache(tmp_path, "t", key).load_or_build(N, rest, batch_size=8)
    assert rest.seen == list(range(16, N))
    np.testing.assert_array_equal(states.numpy(), _expected()[0])


def test_changed_key_builds_a_separate_cache(tmp_path):
    base = {"encoder": {"name": "toy", "boundary_layer": 4}, "content": "abc"}
    a = EncoderStateCache(tmp_path, "text", base)
    a.load_or_build(N, Recorder(), batch_size=16)
    for changed in (
        {**base, "content": "abd"},  # content changed
        {**base, "encoder": {"name": "toy", "boundary_layer": 3}},  # encoder setting changed
    ):
        rec = Recorder()
        b = EncoderStateCache(tmp_path, "text", changed)
        b.load_or_build(N, rec, batch_size=16)
        assert b.dir != a.dir and len(rec.seen) == N
    rec = Recorder()
    c = EncoderStateCache(tmp_path, "text", base, dtype="float32")
    states, _ = c.load_or_build(N, rec, batch_size=16)
    assert c.dir != a.dir and len(rec.seen) == N and states.dtype == torch.float32
    np.testing.assert_array_equal(states.numpy(), _expected(np.float32)[0])
    rec = Recorder()
    EncoderStateCache(tmp_path, "text", base).load_or_build(N + 1, rec, batch_size=16)  # n_items changed
    assert len(rec.seen) == N + 1


@pytest.mark.parametrize("damage", ["meta_garbage", "meta_missing", "states_missing", "states_truncated",
                                    "mask_wrong_shape", "meta_other_key", "states_changed_in_place",
                                    "mask_changed_in_place"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, caplog, damage):
    key = {"encoder": "toy"}
    cache = EncoderStateCache(tmp_path, "t", key)
    cache.load_or_build(N, Recorder(), batch_size=16)
    d = cache.dir
    if damage == "meta_garbage":
        (d / "meta.json").write_text("{not json")
    elif damage == "meta_missing":
        (d / "meta.json").unlink()
    elif damage == "states_missing":
        (d / "states.npy").unlink()
    elif damage == "states_truncated":
        raw = (d / "states.npy").read_bytes()
        (d / "states.npy").write_bytes(raw[: len(raw) // 2])
    elif damage == "mask_wrong_shape":
        np.save(d / "mask.npy", np.ones((N, L + 1), dtype=bool))
    elif damage.endswith("changed_in_place"):  # same size, same header, other bytes: only the checksums see it
        target = d / ("states.npy" if damage.startswith("states") else "mask.npy")
        size = target.stat().st_size
        with open(target, "r+b") as fh:
            fh.seek(size - 7)
            fh.write(bytes(b ^ 0x01 for b in fh.read(1)))  # one bit of the last row
        assert target.stat().st_size == size
    else:
        meta = json.loads((d / "meta.json").read_text())
        meta["key"]["encoder"] = "other"
        (d / "meta.json").write_text(json.dumps(meta))
    rec = Recorder()
    with caplog.at_level(logging.WARNING):
        states, mask = EncoderStateCache(tmp_path, "t", key).load_or_build(N, rec, batch_size=16)
    assert len(rec.seen) == N
    assert "rebuilding" in caplog.text and str(d) in caplog.text
    if damage.endswith("changed_in_place"):
        assert "changed since it was built" in caplog.text and "1 of 1 blocks" in caplog.text
    exp_s, exp_m = _expected()
    np.testing.assert_array_equal(states.numpy(), exp_s)
    assert torch.equal(mask, torch.from_numpy(exp_m))


def test_every_load_checks_the_content_and_an_old_cache_gets_its_checksums_once(tmp_path, caplog):
    key = {"encoder": "toy"}
    cache = EncoderStateCache(tmp_path, "t", key)
    cache.load_or_build(N, Recorder(), batch_size=16)
    meta_file = cache.dir / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert meta["checksums"]["algorithm"] == "crc32" and meta["checksums"]["states.npy"] == \
        file_checksums(cache.dir / "states.npy")
    # a cache written before checksums were kept: loaded as is (same folder, nothing recomputed), checksums stored
    built_with = meta.pop("checksums")
    meta_file.write_text(json.dumps(meta))
    with caplog.at_level(logging.INFO, logger="recbole_pmmrec.data.cache"):
        rec = Recorder()
        old = EncoderStateCache(tmp_path, "t", key)
        old.load_or_build(N, rec, batch_size=16)
    assert rec.seen == [] and old.dir == cache.dir and "stored them now" in caplog.text
    assert json.loads(meta_file.read_text())["checksums"] == built_with
    # every later load reads the files: a changed byte is seen although size and time stamps are restored
    stat = (cache.dir / "states.npy").stat()
    with open(cache.dir / "states.npy", "r+b") as fh:
        fh.seek(stat.st_size // 2)
        fh.write(b"\x7f\x7f")
    os.utime(cache.dir / "states.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rec = Recorder()
    states, _ = EncoderStateCache(tmp_path, "t", key).load_or_build(N, rec, batch_size=16)
    assert len(rec.seen) == N  # rebuilt
    np.testing.assert_array_equal(states.numpy(), _expected()[0])


def test_a_full_disk_while_building_names_the_file_and_keeps_the_rows_built(tmp_path, monkeypatch):
    real_pwrite, calls = os.pwrite, []

    def pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) > 4:  # the 3rd batch
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(cache_module.os, "pwrite", pwrite)
    cache = EncoderStateCache(tmp_path, "t", {"encoder": "toy"}, flush_every_s=0)
    with pytest.raises(PMMRecDataError, match=r"cannot write the encoder-state cache .*states\.npy.*disk is full.*"
                                              r"free space.*resumes"):
        cache.load_or_build(N, Recorder(), batch_size=8)
    assert not list(cache.dir.glob("*.tmp"))
    monkeypatch.setattr(cache_module.os, "pwrite", real_pwrite)
    rec = Recorder()
    states, _ = EncoderStateCache(tmp_path, "t", {"encoder": "toy"}).load_or_build(N, rec, batch_size=8)
    assert rec.seen == list(range(16, N))  # the two batches written before the disk filled are kept
    np.testing.assert_array_equal(states.numpy(), _expected()[0])


def test_a_cache_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PMMRecConfigError, match=r"cache_dir: .*afile.* is a file"):
        EncoderStateCache(tmp_path / "afile", "t", {}).load_or_build(N, Recorder(), batch_size=8)


def test_bad_compute_output_and_fp16_overflow(tmp_path):
    with pytest.raises(PMMRecDataError, match="expected"):
        EncoderStateCache(tmp_path, "a", {}).load_or_build(
            N, lambda ids: (torch.zeros(len(ids), L + (ids[0] > 0).int(), D), torch.ones(len(ids), L)), 16)
    with pytest.raises(PMMRecDataError, match="float32"):
        EncoderStateCache(tmp_path, "b", {}).load_or_build(
            N, lambda ids: (torch.full((len(ids), L, D), 1e6), torch.ones(len(ids), L)), 16)


def _tiny_text_encoder(tmp_path):
    from recbole_pmmrec.encoders import TextEncoder

    tmp_path.mkdir(parents=True, exist_ok=True)
    words = "toy story heat golden eye".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    transformers.BertTokenizer(vocab=vocab).save_pretrained(str(tmp_path / "bert"))
    config = transformers.BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, vocab_size=len(vocab), max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(str(tmp_path / "bert"))
    return TextEncoder(str(tmp_path / "bert"), train_layers=1, max_length=6)


def test_text_state_cache_matches_encoder(tmp_path):
    enc = _tiny_text_encoder(tmp_path).eval()
    content = ItemContent(["[PAD]", "a", "b", "c"], {"a": "toy story", "b": "heat", "c": "golden eye"}, (),
                          enc.tokenize)
    states, mask = text_state_cache(enc, content, tmp_path / "cache", dtype="float32", batch_size=2,
                                    progress=False)
    ids = torch.arange(4)
    exp_states, exp_mask = enc.encode_bottom(content.text_batch(ids))
    torch.testing.assert_close(states[ids], exp_states, atol=1e-6, rtol=0)
    assert torch.equal(mask, exp_mask)
    full, _ = enc(content.text_batch(ids))
    torch.testing.assert_close(enc.encode_top(states[ids], mask), full, atol=1e-5, rtol=0)  # exact top-k training
    # the bottom can go once cached; an encoder rebuilt from the same folder has the same identity
    # (so the same cache key), one with other weights does not
    ident = enc.identity()
    enc.drop_bottom()
    assert enc.identity() == ident
    from recbole_pmmrec.encoders import TextEncoder

    assert TextEncoder(str(tmp_path / "bert"), train_layers=1, max_length=6).identity() == ident
    assert _tiny_text_encoder(tmp_path / "other").identity()["bottom_sha256"] != ident["bottom_sha256"]


def test_image_state_cache_marks_failed_images(tmp_path):
    from PIL import Image

    from recbole_pmmrec.encoders import ImageEncoder

    img_dir = tmp_path / "img"
    img_dir.mkdir()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(img_dir / "a.jpg")
    Image.new("RGB", (20, 20), (10, 10, 200)).save(img_dir / "c.png")
    Image.new("RGB", (300, 300), (0, 255, 0)).save(img_dir / "b.jpg")
    raw = (img_dir / "b.jpg").read_bytes()
    (img_dir / "b.jpg").write_bytes(raw[: len(raw) // 2])  # decodes badly: found out at build time
    enc = ImageEncoder("timm:efficientnet_lite0", image_size=32, grid=1).eval()
    content = ItemContent(["[PAD]", "a", "b", "c"], {"b": "text"}, (), lambda t: (torch.zeros(len(t), 4),
                          torch.ones(len(t), 4, dtype=torch.bool)), image_dir=img_dir, image_size=32)
    assert content.has_image.tolist() == [False, True, True, True]
    states, mask = image_state_cache(enc, content, tmp_path / "cache", dtype="float32", batch_size=2,
                                     progress=False)
    assert states.shape == (4, 1, 1280)
    assert mask[:, 0].tolist() == [False, True, False, True]
    assert content.has_image.tolist() == [False, True, False, True]
    images, _ = content.image_batch(torch.tensor([1, 3]))
    torch.testing.assert_close(states[torch.tensor([1, 3])], enc.encode_bottom(images)[0], atol=1e-5, rtol=0)
    # an item without a usable image is not run through the encoder: its row is zeros
    assert states[torch.tensor([0, 2])].abs().sum() == 0
    # a fresh content object (has_image from headers only) learns the failure from the loaded cache
    content2 = ItemContent(["[PAD]", "a", "b", "c"], {"b": "text"}, (), content_tokenize,
                           image_dir=img_dir, image_size=32)
    image_state_cache(enc, content2, tmp_path / "cache", dtype="float32", batch_size=2, progress=False)
    assert content2.has_image.tolist() == [False, True, False, True]


def test_image_state_cache_runs_the_encoder_on_images_only(tmp_path):
    """A catalogue where few items have an image (a merged corpus) encodes only those: a batch without an image
    makes no encoder pass once the states' shape is known."""
    from PIL import Image

    from recbole_pmmrec.encoders import ImageEncoder

    img_dir = tmp_path / "img"
    img_dir.mkdir()
    tokens = ["[PAD]"] + [f"i{n}" for n in range(12)]
    for name in ("i0", "i11"):
        Image.new("RGB", (20, 20), (200, 10, 10)).save(img_dir / f"{name}.jpg")
    enc = ImageEncoder("timm:efficientnet_lite0", image_size=32, grid=1).eval()
    seen = []
    real = enc.encode_bottom
    enc.encode_bottom = lambda images: seen.append(len(images)) or real(images)
    content = ItemContent(tokens, {t: "text" for t in tokens[1:]}, (), content_tokenize, image_dir=img_dir,
                          image_size=32)
    states, mask = image_state_cache(enc, content, tmp_path / "cache", dtype="float32", batch_size=4,
                                     progress=False)
    assert seen == [1, 1]  # rows 0-3 (i0), 4-7 (none: no pass), 8-11 (none), 12 (i11)
    assert mask[:, 0].nonzero().flatten().tolist() == [1, 12] and states[2:12].abs().sum() == 0


def content_tokenize(texts):
    return torch.zeros(len(texts), 4, dtype=torch.long), torch.ones(len(texts), 4, dtype=torch.bool)


def test_cached_states_indexing_matches_numpy(tmp_path):
    import pickle

    cache = EncoderStateCache(tmp_path, "t", {"encoder": "toy"}, dtype="float32")
    states, _ = cache.load_or_build(N, Recorder(), batch_size=8)
    ref = np.load(cache.dir / "states.npy")
    rng = np.random.default_rng(0)
    for index in (
        torch.tensor([7, 3, 3, 52, 0, 8, 9, 10]),  # unsorted, duplicates, runs
        torch.arange(10, 30),  # one contiguous run: one read
        rng.integers(0, N, (4, 6)),  # 2-D ids (B, L)
        [-1, -N],  # negative like numpy
        slice(5, 50, 3),
        17,
        torch.tensor([], dtype=torch.long),
    ):
        got = states[index]
        expect = ref[index.numpy() if isinstance(index, torch.Tensor) else index]
        assert got.shape == expect.shape and got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), expect)
    with pytest.raises(IndexError):
        states[torch.tensor([N])]
    clone = pickle.loads(pickle.dumps(states))  # DataLoader workers
    np.testing.assert_array_equal(clone[[1, 2]].numpy(), ref[[1, 2]])
