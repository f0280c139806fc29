"""Hostile and broken input: each case ends in a clean result or a clear PMMRec*Error, and nothing is read
or written outside the paths the user gave (checked with a Python audit hook on every ``open``)."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import struct
import sys
import zlib
from pathlib import Path

import pytest
import torch
import yaml

from recbole_pmmrec.cli import main
from recbole_pmmrec.compat import is_inside
from recbole_pmmrec.data.images import load_image
from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecDataError
from recbole_pmmrec.encoders import load_weights_file
from recbole_pmmrec.provenance import check_atomic_files
from recbole_pmmrec.quick_start import load_config, run_recbole_pmmrec
from recbole_pmmrec.utils import create_dataset


# ------------------------------------------------------------------------------------------ helpers

_OPENED: list | None = None


def _audit(event, args):
    if _OPENED is not None and event == "open":
        _OPENED.append(args)


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only inside recording_opens()


@contextlib.contextmanager
def recording_opens():
    """Every file opened inside the block: [(path, is_write)]."""
    global _OPENED
    _OPENED, opened = [], []
    try:
        yield opened
    finally:
        events, _OPENED = _OPENED, None
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        for path, mode, flags in events:
            if isinstance(path, int):
                continue
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & write_flags)
            opened.append((Path(os.path.abspath(os.fsdecode(path))), writes))


def png_claiming(width: int, height: int) -> bytes:
    """A valid ~100-byte PNG whose header claims ``width x height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def _add_items(synth, rows: dict[str, str]) -> None:
    """Append items (token -> title) and a user who interacted with all of them."""
    with open(synth.folder / f"{synth.name}.item", "a", encoding="utf-8") as fh:
        fh.writelines(f"{token}\t{title}\tabout {title}\n" for token, title in rows.items())
    with open(synth.folder / f"{synth.name}.inter", "a", encoding="utf-8") as fh:
        fh.writelines(f"u_hostile\t{token}\t{2_000_000 + t}\n" for t, token in enumerate([*rows, "1", "2", "3"]))


def _yaml(tmp_path, config: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ------------------------------------------------------------------------------------------ data


def test_item_tokens_with_path_traversal_never_become_paths_outside_the_image_folder(synth, pmmrec_config, tmp_path):
    hostile = ["../../secret", "../../etc/passwd", "/etc/passwd", "..", "a/../../../secret"]
    _add_items(synth, {token: "jazz night" for token in hostile})
    image_dir = synth.folder / f"{synth.name}.images"
    canary = (image_dir / "../../secret.png").resolve()  # where "../../secret" would point: a real image
    canary.write_bytes((image_dir / "1.png").read_bytes())
    config = load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth))

    with recording_opens() as opened:
        check_atomic_files(config)
        dataset = create_dataset(config)
    content = dataset.item_features.content
    for token in hostile:
        iid = dataset.token2id(dataset.iid_field, token)
        assert content.image_paths[iid] is None and not content.has_image[iid] and content.has_text[iid], token
    assert content.fallbacks["image_unsafe"] == len(hostile)
    assert canary not in {path.resolve() for path, _ in opened}
    assert not [path for path, _ in opened if "passwd" in str(path)]
    written = [path for path, writes in opened if writes]
    assert written and all(is_inside(path, tmp_path) for path in written), written  # the cache, inside tmp
    roots = [tmp_path, Path(sys.prefix), Path(sys.base_prefix), Path(config["text_encoder"]).parent, Path("/proc"),
             Path("/sys"), Path("/dev")]
    outside = sorted({str(p) for p, _ in opened if not any(is_inside(p, root) for root in roots)})
    assert not outside, outside


def test_a_million_columns_is_refused_with_advice_and_load_col_reads_the_file(synth, quick_config):
    item_file = synth.folder / f"{synth.name}.item"
    lines = item_file.read_text(encoding="utf-8").split("\n", 1)
    extra = "\t".join(f"c{j}:float" for j in range(1_000_000 - 3))  # ~10 MB header; rows stay short
    item_file.write_text(f"{lines[0]}\t{extra}\n{lines[1]}", encoding="utf-8")
    with pytest.raises(PMMRecDataError, match=r"synth\.item has 1000000 columns.*load_col"):
        run_recbole_pmmrec("SASRec", synth.name, config_dict=quick_config(synth))
    # following the advice: RecBole reads the named columns only
    load_col = {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}
    config = load_config("SASRec", synth.name, config_dict=quick_config(synth, load_col=load_col))
    assert check_atomic_files(config)[item_file.name]["columns"] == 1_000_000
    dataset = create_dataset(config)
    assert set(dataset.item_feat.columns) == {"item_id", "title"} and dataset.item_num == synth.n_items + 1


def test_a_2_mb_text_cell_is_read_and_truncated_by_the_tokenizer(synth, pmmrec_config):
    """16x RecBole's CSV field limit. (10 MB works as well, but the tokenizer then spends ~17 s on the whole cell.)"""
    default_limit = csv.field_size_limit()
    csv.field_size_limit(131072)  # pandas' (and RecBole's) default, whatever an earlier test raised it to
    try:
        item_file = synth.folder / f"{synth.name}.item"
        header, first, rest = item_file.read_text(encoding="utf-8").split("\n", 2)
        token, title, _ = first.split("\t")
        item_file.write_text(f"{header}\n{token}\t{title}\t{'jazz ' * 400_000}\n{rest}", encoding="utf-8")
        config = load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth))
        assert check_atomic_files(config)[item_file.name]["max_line_bytes"] > 2_000_000
        dataset = create_dataset(config)
    finally:
        csv.field_size_limit(max(default_limit, csv.field_size_limit()))
    content = dataset.item_features.content
    iid = dataset.token2id(dataset.iid_field, token)
    from recbole_pmmrec.data.content import MAX_TEXT_CHARS

    # the 2 MB cell is read whole, then cut to MAX_TEXT_CHARS before tokenising (counted as a fallback)
    assert content.has_text[iid] and len(content.texts[iid]) == MAX_TEXT_CHARS
    assert content.fallbacks["long_text_truncated"] == 1
    assert int(content.text_mask[iid].sum()) == config["text_max_length"]  # truncated to the encoder's length


def test_an_image_that_claims_100k_by_100k_pixels_is_refused_from_its_header(synth, pmmrec_config):
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 200
    target = synth.folder / f"{synth.name}.images" / "1.png"
    target.write_bytes(bomb)
    assert load_image(target, 32) == (None, "too_large")
    dataset = create_dataset(load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth)))
    content = dataset.item_features.content
    iid = dataset.token2id(dataset.iid_field, "1")
    assert not content.has_image[iid] and content.has_text[iid]  # the item falls back to its text
    assert content.fallbacks["image_too_large"] == 1


# ------------------------------------------------------------------------------------------ config


def test_unknown_config_keys_are_warned_with_the_nearest_known_key(synth, pmmrec_config, tmp_path, caplog,
                                                                    monkeypatch):
    config_file = _yaml(tmp_path, {"lerning_rate": 0.01, "w_nicll": 0.3, "stoping_step": 2, "zzqx": 1})
    monkeypatch.setattr(sys, "argv", ["run", "--epoch=3"])
    caplog.set_level(logging.WARNING, logger="recbole_pmmrec.config")
    config = load_config("PMMRec", synth.name, [str(config_file)], pmmrec_config(synth))
    assert config.unknown_keys == {"lerning_rate": "learning_rate", "w_nicll": "w_nicl", "stoping_step": "stopping_step",
                                   "zzqx": None, "epoch": "epochs"}
    text = caplog.text
    assert "unknown config key 'lerning_rate' (from the config files)" in text and "did you mean 'learning_rate'?" in text
    assert "'epoch' (from the command line)" in text and "did you mean 'epochs'?" in text
    assert "'w_nicll'" in text and "did you mean 'w_nicl'?" in text
    caplog.clear()
    monkeypatch.setattr(sys, "argv", ["run"])
    assert load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth, w_nicl=0.2)).unknown_keys == {}
    assert "unknown config key" not in caplog.text


# ------------------------------------------------------------------------------------------ checkpoints


def test_checkpoints_of_another_model_or_truncated_weights_are_clear_errors(synth, quick_config, pmmrec_config,
                                                                            tmp_path, capsys):
    sasrec = run_recbole_pmmrec("SASRec", synth.name, config_dict=quick_config(synth))
    argv = ["--model=PMMRec", f"--dataset={synth.name}", f"--config_files={_yaml(tmp_path, pmmrec_config(synth))}"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, f"--resume={sasrec['checkpoint']}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "was written by model SASRec, not PMMRec" in err and "--model=SASRec" in err

    # a truncated safetensors file: as --pretrained folder, and as an image encoder checkpoint
    from safetensors.torch import save_file

    folder = tmp_path / "pretrained"
    folder.mkdir()
    save_file({"user_encoder.position_embedding.weight": torch.randn(64, 32)}, str(folder / "model.safetensors"))
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "pmmrec.json").write_text('{"format": "recbole-pmmrec component checkpoint", "format_version": 1, '
                                        '"model": "PMMRec", "modalities": ["text", "image"], "components": {}}')
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, f"--pretrained={folder}", "--epochs=0"])
    assert exit_info.value.code == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    with pytest.raises(PMMRecCheckpointError, match="cannot read weights from .*model.safetensors"):
        load_weights_file(folder / "model.safetensors")
