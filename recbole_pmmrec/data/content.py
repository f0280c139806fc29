"""Item content: raw text fields tokenised once, image files found once, modality masks.

Everything here is indexed by RecBole's internal item id: row 0 is the padding item ``[PAD]``
(empty text, no image), rows 1..n_items-1 are real items in ``dataset.field2id_token['item_id']``
order.

* Text of an item: its non-empty ``text_fields`` joined with ``' ; '`` (lower-cased if asked),
  tokenised once for the whole catalogue into ``text_ids`` / ``text_mask`` (n_items, L).
  Items without any text (and the padding row) hold the tokenisation of the empty string (e.g.
  ``[CLS] [SEP]``), so an encoder never sees an all-padding row; ``has_text`` says which are real.
* Image of an item: ``<image_dir>/<token>.<ext>``, checked from the file header at load time
  (missing, empty, corrupt, oversized). ``image_batch`` decodes on demand; a file that fails to
  decode then is counted and its ``has_image`` flag turned off.
* An item with neither text nor image is an error (PMMRecDataError naming the items), or with
  ``contentless="zero"`` a counted fallback (``no_content_zero_vector``): a zero item vector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recbole_pmmrec.data.images import index_image_dir, load_image, probe_image, resolve_image_path
from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError

logger = logging.getLogger(__name__)

PAD_TOKEN = "[PAD]"
TEXT_SEPARATOR = " ; "
TOKENIZE_CHUNK = 8192
MAX_TEXT_CHARS = 20_000  # far beyond any encoder's max length; longer item texts are cut (counted)

Tokenize = Callable[[Sequence[str]], "tuple[Tensor, Tensor]"]


# --------------------------------------------------------------------------------------------
# reading a RecBole .item file
# --------------------------------------------------------------------------------------------


def _decode_lines(raw: bytes) -> tuple[list[str], int]:
    """bytes -> lines; a line that is not UTF-8 is read as latin-1 (counted)."""
    try:
        return raw.decode("utf-8").splitlines(), 0
    except UnicodeDecodeError:
        pass
    lines, fallback = [], 0
    for line in raw.splitlines():
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("latin-1"))
            fallback += 1
    return lines, fallback


def read_item_text(
    item_file_path: str | os.PathLike,
    text_fields: Sequence[str],
    item_field: str = "item_id",
    field_separator: str = "\t",
) -> pd.DataFrame:
    """Raw text columns of a RecBole ``.item`` file.

    Returns a DataFrame indexed by item token (str) with one str column per text field ('' when
    empty). Header names are ``name:type``; ``token_seq`` fields stay the raw space-joined string.
    Non-UTF-8 lines are read as latin-1, duplicate item rows keep the first, rows with the wrong
    number of fields are skipped (too many) or padded (too few); each is counted in
    ``df.attrs['fallbacks']`` and logged.
    """
    path = Path(item_file_path)
    text_fields = list(text_fields)
    if not path.is_file():
        raise PMMRecDataError(f"item file {path} does not exist; give the dataset's .item file")
    lines, latin1 = _decode_lines(path.read_bytes())
    if not lines:
        raise PMMRecDataError(f"item file {path} is empty; it needs a header line 'item_id:token ...'")
    header = [h.split(":", 1)[0].strip().lstrip("\ufeff") for h in lines[0].split(field_separator)]
    available = ", ".join(header)
    if item_field not in header:
        raise PMMRecDataError(f"item file {path} has no column {item_field!r}; its columns are: {available}")
    missing = [f for f in text_fields if f not in header]
    if missing:
        raise PMMRecDataError(
            f"text field(s) {missing} not found in {path}; its columns are: {available}. "
            "Set text_fields to some of them"
        )
    cols = [header.index(item_field)] + [header.index(f) for f in text_fields]
    width = len(header)
    rows, malformed, short = [], 0, 0
    for line in lines[1:]:
        if not line.strip():
            continue
        parts = line.split(field_separator)
        if len(parts) > width:  # a separator inside a value: the columns cannot be trusted
            malformed += 1
            continue
        if len(parts) < width:  # trailing empty fields dropped by an editor
            short += 1
            parts += [""] * (width - len(parts))
        rows.append([parts[c] for c in cols])
    df = pd.DataFrame(rows, columns=[item_field] + text_fields, dtype=object)
    dup = df[item_field].duplicated(keep="first")
    n_dup = int(dup.sum())
    df = df[~dup].set_index(item_field)
    df.index = df.index.astype(str)
    fallbacks = {"latin1_lines": latin1, "duplicate_items": n_dup, "malformed_rows": malformed,
                 "short_rows": short}
    df.attrs["fallbacks"] = fallbacks
    if latin1 or n_dup or malformed or short:
        logger.warning(
            "%s: %d non-UTF-8 lines read as latin-1, %d duplicate item rows (first kept), "
            "%d rows with too many fields skipped, %d short rows padded with empty fields",
            path, latin1, n_dup, malformed, short,
        )
    return df


# --------------------------------------------------------------------------------------------
# item content
# --------------------------------------------------------------------------------------------


def _as_text(value, counts: Counter) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8").strip()
        except UnicodeDecodeError:
            counts["non_utf8_text"] += 1
            return bytes(value).decode("utf-8", errors="replace").strip()
    if isinstance(value, float) and np.isnan(value):
        return ""
    return str(value).strip()


def join_item_text(values: Sequence, lowercase: bool, counts: Counter | None = None,
                   separator: str = TEXT_SEPARATOR) -> str:
    """One item's text from its field values: non-empty values joined by ``separator``, cut at MAX_TEXT_CHARS
    (counted in ``counts``), lower-cased when the encoder is uncased. The one rule for catalogue and new items."""
    counts = Counter() if counts is None else counts
    text = separator.join(s for s in (_as_text(v, counts) for v in values) if s)
    if len(text) > MAX_TEXT_CHARS:  # tokenisers keep <= 512 tokens; do not make them read megabytes
        text = text[:MAX_TEXT_CHARS]
        counts["long_text_truncated"] += 1
    return text.lower() if lowercase else text


def _text_table(texts, text_fields: Sequence[str]) -> tuple[dict[str, list], list[str]]:
    """DataFrame / {token: {field: value}} / {token: str} -> ({field: values}, tokens)."""
    if isinstance(texts, pd.DataFrame):
        text_fields = list(text_fields) or [str(c) for c in texts.columns]
        missing = [f for f in text_fields if f not in texts.columns]
        if missing:
            raise PMMRecDataError(
                f"text field(s) {missing} not in the item texts; available: {', '.join(map(str, texts.columns))}"
            )
        return {f: texts[f].tolist() for f in text_fields}, [str(t) for t in texts.index]
    if isinstance(texts, Mapping):
        tokens = [str(t) for t in texts]
        values = list(texts.values())
        if all(not isinstance(v, Mapping) for v in values):
            return {"text": values}, tokens
        present = {f for v in values if isinstance(v, Mapping) for f in v}
        if not text_fields:  # every field, in order of first appearance
            text_fields = list(dict.fromkeys(f for v in values if isinstance(v, Mapping) for f in v))
        missing = sorted(set(text_fields) - present)
        if missing:
            raise PMMRecDataError(f"text field(s) {missing} appear in no item of the given texts")
        return {f: [v.get(f) if isinstance(v, Mapping) else None for v in values] for f in text_fields}, tokens
    raise PMMRecConfigError(f"item texts must be a DataFrame or a dict, got {type(texts).__name__}")


class ItemContent:
    """Per-item text tokens, image paths and modality masks in internal-id order.

    Attributes (n = n_items incl. padding row 0):
        text_ids   (n, L) int32    token ids (None when text is off)
        text_mask  (n, L) bool     attention mask
        has_text   (n,) bool
        has_image  (n,) bool
        image_paths list[Path | None]
        texts      list[str]       the joined text that was tokenised
        fallbacks  Counter         empty_text, missing_text_row, non_utf8_text, image_<reason>
    """

    def __init__(
        self,
        item_tokens: Sequence[str],
        texts: pd.DataFrame | Mapping | None = None,
        text_fields: Sequence[str] = (),
        tokenize: Tokenize | None = None,
        lowercase: bool = True,
        image_dir: str | os.PathLike | None = None,
        image_size: int = 224,
        check_images: bool = True,
        separator: str = TEXT_SEPARATOR,
        name: str = "",
        contentless: str = "error",
    ) -> None:
        self.item_tokens = [str(t) for t in item_tokens]
        self.n_items = n = len(self.item_tokens)
        if n < 2:
            raise PMMRecDataError(f"{name or 'dataset'}: no items besides the padding row")
        self.name, self.lowercase, self.image_size = name, bool(lowercase), int(image_size)
        self.text_fields = list(text_fields)
        self.fallbacks: Counter = Counter()
        if texts is not None and tokenize is None:
            raise PMMRecConfigError(f"{name or 'dataset'}: item texts were given without a tokenize function")
        self.use_text = texts is not None
        self.use_image = image_dir is not None
        if not (self.use_text or self.use_image):
            raise PMMRecConfigError(
                f"{name or 'dataset'}: neither item texts (+ tokenizer) nor an image_dir were given; "
                "PMMRec needs at least one modality"
            )
        self.texts: list[str] = [""] * n
        self.has_text = torch.zeros(n, dtype=torch.bool)
        self.text_ids: Tensor | None = None
        self.text_mask: Tensor | None = None
        if self.use_text:
            self._build_text(texts, tokenize, separator)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.image_paths: list[Path | None] = [None] * n
        self.has_image = torch.zeros(n, dtype=torch.bool)
        self._image_stats: list = []
        if self.use_image:
            self._find_images(check_images)
        self._check_coverage(contentless)
        self._log_fallbacks()

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_item_file(
        cls, item_tokens: Sequence[str], item_file: str | os.PathLike | None, text_fields: Sequence[str],
        tokenize: Tokenize | None, item_field: str = "item_id", **kwargs,
    ) -> "ItemContent":
        texts = read_item_text(item_file, text_fields, item_field) if item_file and text_fields else None
        content = cls(item_tokens, texts, text_fields, tokenize, **kwargs)
        if texts is not None:
            content.fallbacks.update({k: v for k, v in texts.attrs.get("fallbacks", {}).items() if v})
        return content

    def _build_text(self, texts, tokenize: Tokenize, separator: str) -> None:
        columns, tokens = _text_table(texts, self.text_fields)
        row_of: dict[str, int] = {}
        for i, t in enumerate(tokens):
            row_of.setdefault(t, i)  # the first row wins on duplicates
        counts = self.fallbacks
        fields = list(columns.values())
        for iid in range(1, self.n_items):
            r = row_of.get(self.item_tokens[iid])
            if r is None:
                counts["missing_text_row"] += 1
                continue
            text = join_item_text([col[r] for col in fields], self.lowercase, counts, separator)
            if not text:
                counts["empty_text"] += 1
            self.texts[iid] = text
        self.has_text = torch.tensor([bool(t) for t in self.texts], dtype=torch.bool)
        self.has_text[0] = False
        ids_chunks, mask_chunks = [], []
        for start in range(0, self.n_items, TOKENIZE_CHUNK):
            ids, mask = tokenize(self.texts[start:start + TOKENIZE_CHUNK])
            ids_chunks.append(torch.as_tensor(ids).to(torch.int32))
            mask_chunks.append(torch.as_tensor(mask).bool())
        self.text_ids = torch.cat(ids_chunks)  # (n_items, L)
        self.text_mask = torch.cat(mask_chunks)  # (n_items, L)

    def _find_images(self, check_images: bool) -> None:
        if not self.image_dir.is_dir():
            raise PMMRecDataError(
                f"image_dir {self.image_dir} is not a directory; give the folder holding <item_token>.jpg files"
            )
        index = index_image_dir(self.image_dir)
        has = np.zeros(self.n_items, dtype=bool)
        for iid in range(1, self.n_items):
            token = self.item_tokens[iid]
            path, reason = resolve_image_path(self.image_dir, token, index)
            if path is not None and check_images:
                reason = probe_image(path)
            if reason != "ok":
                self.fallbacks[f"image_{reason}"] += 1
                if reason == "unsafe":
                    logger.warning("item %r: refused as an image name (it would leave %s)", token, self.image_dir)
                continue
            st = path.stat()
            self.image_paths[iid] = path
            self._image_stats.append((iid, path.name, st.st_size, st.st_mtime_ns))
            has[iid] = True
        self.has_image = torch.from_numpy(has)

    def _check_coverage(self, contentless: str = "error") -> None:
        """An item with none of the modalities in use is an error, or with ``contentless="zero"`` a counted,
        logged fallback: the item tower gives it a zero vector (it scores 0 for every user)."""
        if contentless not in ("error", "zero"):
            raise PMMRecConfigError(f"contentless_items={contentless!r}: use 'error' or 'zero'")
        lacking = ~(self.has_text | self.has_image)
        lacking[0] = False
        if not bool(lacking.any()):
            return
        bad = [self.item_tokens[i] for i in torch.nonzero(lacking).flatten()[:10].tolist()]
        have = " or ".join(m for m, on in (("text", self.use_text), ("an image", self.use_image)) if on)
        if contentless == "zero":
            self.fallbacks["no_content_zero_vector"] += int(lacking.sum())
            logger.warning("%d item(s) of %s have neither text nor image (they need %s), e.g. %s; "
                           "contentless_items=zero: they get a zero item vector", int(lacking.sum()),
                           self.name or "the dataset", have, bad)
            return
        raise PMMRecDataError(
            f"{int(lacking.sum())} item(s) of {self.name or 'the dataset'} have neither text nor image "
            f"(they need {have}), e.g. {bad}; add their text/image, filter them out of the atomic files, "
            f"or set contentless_items: zero to give them a zero item vector"
        )

    def _log_fallbacks(self) -> None:
        if self.fallbacks:
            summary = ", ".join(f"{k}={v}" for k, v in sorted(self.fallbacks.items()))
            logger.warning("%s item content fallbacks (of %d items): %s", self.name or "dataset", self.n_items - 1,
                           summary)

    # -- access ----------------------------------------------------------------------------------
    def text_batch(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """ids (N,) -> (input_ids (N, L) int64, attention_mask (N, L) bool)."""
        if self.text_ids is None:
            raise PMMRecConfigError("text is switched off for this content (no texts or tokenizer given)")
        ids = torch.as_tensor(ids, dtype=torch.long)
        return self.text_ids[ids].long(), self.text_mask[ids]

    def image_batch(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """ids (N,) -> (uint8 images (N, 3, S, S), ok (N,) bool); a failed image is all zeros.

        Decode failures are counted in ``fallbacks``, logged once per reason, and switch the
        item's ``has_image`` off.
        """
        ids_list = torch.as_tensor(ids, dtype=torch.long).tolist()
        s = self.image_size
        out = torch.zeros(len(ids_list), 3, s, s, dtype=torch.uint8)
        ok = torch.zeros(len(ids_list), dtype=torch.bool)
        for row, iid in enumerate(ids_list):
            if not bool(self.has_image[iid]):
                continue
            img, reason = load_image(self.image_paths[iid], s)
            if img is None:
                key = f"image_{reason}_on_decode"
                if not self.fallbacks[key]:
                    logger.warning("image of item %r (%s) unusable: %s; the item falls back to text",
                                   self.item_tokens[iid], self.image_paths[iid], reason)
                self.fallbacks[key] += 1
                self.has_image[iid] = False
                continue
            out[row] = img
            ok[row] = True
        return out, ok

    # -- cache keys ------------------------------------------------------------------------------
    def text_sha256(self) -> str:
        """Hash of everything the text cache depends on from the content side."""
        h = hashlib.sha256(b"text-v1")
        if self.text_ids is not None:
            h.update(str(tuple(self.text_ids.shape)).encode())
            h.update(self.text_ids.numpy().tobytes())
            h.update(self.text_mask.numpy().tobytes())
        return h.hexdigest()

    def image_sha256(self) -> str:
        """Hash of the image files' (item id, name, size, mtime) list and the image size."""
        h = hashlib.sha256(b"image-v1")
        h.update(json.dumps([self.n_items, self.image_size, self._image_stats]).encode())
        return h.hexdigest()

    def report(self) -> dict:
        return {
            "n_items": self.n_items - 1,
            "with_text": int(self.has_text.sum()),
            "with_image": int(self.has_image.sum()),
            "fallbacks": dict(self.fallbacks),
        }


__all__ = ["ItemContent", "read_item_text", "join_item_text", "PAD_TOKEN", "TEXT_SEPARATOR"]
