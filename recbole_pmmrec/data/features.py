"""Item features: what the model reads about every item, indexed by internal item id.

:class:`ItemFeatures` is built once per dataset (its train / valid / test copies share it) and owns:

* the item content (:class:`~recbole_pmmrec.data.content.ItemContent`: token ids, image paths, masks);
* for each modality in use, the encoder whose frozen bottom made the cached states (from
  :mod:`recbole_pmmrec.encoders`), and those states, read from the encoder-state cache;
* ``has_text`` / ``has_image`` (n_items,), ``item_domains`` (each item's source in a merged data set, else None)
  and, after the split, ``train_item_counts``.

The item tower asks it for :meth:`states` (cached frozen-bottom output) or, in ``end_to_end`` mode,
:meth:`bottom` (the frozen bottom run on raw :meth:`inputs`); it takes a copy of each encoder's trainable
top with :meth:`top`. So the model never builds an encoder or reads a file.

``modalities: ~`` is decided here from the data (:func:`resolve_modalities`): text when the .item file has
text fields, image when any item has an image file; an explicit choice that the data cannot serve is an
error. No image state is ever computed for a data set without images.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from recbole_pmmrec.data.cache import image_state_cache, text_state_cache
from recbole_pmmrec.data.content import ItemContent
from recbole_pmmrec.data.images import index_image_dir, load_image
from recbole_pmmrec.data.pooling import masked_mean, pool_token_groups
from recbole_pmmrec.encoders import build_encoder
from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError

logger = logging.getLogger(__name__)

MODALITIES = ("text", "image")
IN_RAM_BYTES = 2 * 1024**3  # cached states up to this size are read into RAM once; larger stay memory-mapped
_POOL_CHUNK = 4096  # items per pass when pooling the whole catalogue's states


def _nbytes(states) -> int:
    return int(np.prod(states.shape)) * torch.empty(0, dtype=states.dtype).element_size()


def images_present(image_dir: Path | None, item_tokens: Sequence[str]) -> int:
    """How many items have a file named after them in ``image_dir`` (0 when the folder does not exist)."""
    if image_dir is None or not Path(image_dir).is_dir():
        return 0
    index = index_image_dir(image_dir)
    return sum(1 for token in item_tokens[1:] if token in index)


def resolve_modalities(requested: Sequence[str] | None, text_fields: Sequence[str], image_dir: Path | None,
                       item_tokens: Sequence[str], name: str) -> tuple[tuple[str, ...], str]:
    """The modalities a run uses, and why: ``requested`` (None = decide from the data) checked against it."""
    n_images = images_present(image_dir, item_tokens)
    available = {"text": bool(text_fields), "image": n_images > 0}
    where = {"text": "text fields in the .item file (set text_fields)",
             "image": f"image files named <item_id>.<ext> in {image_dir} (set image_dir)"}
    if requested is None:
        chosen = tuple(m for m in MODALITIES if available[m])
        if not chosen:
            raise PMMRecDataError(f"{name}: the data has no item content PMMRec can use: no {where['text']} and no "
                                  f"{where['image']}")
        why = (f"decided from the data: {n_images} of {len(item_tokens) - 1} items have an image"
               + (", text fields " + ", ".join(text_fields) if text_fields else ", no text field"))
        return chosen, why
    chosen = tuple(m for m in MODALITIES if m in requested)
    missing = [m for m in chosen if not available[m]]
    if missing:
        raise PMMRecDataError(f"{name}: modalities={list(chosen)} but the data has no {missing[0]}: found no "
                              f"{where[missing[0]]}. Use modalities: {[m for m in MODALITIES if available[m]] or '?'}"
                              f", or leave modalities unset (~) to decide from the data")
    return chosen, "as configured"


class _StateSummaries:
    """``states``, ``pooled`` and ``grouped_text`` for any holder of frozen-bottom states (``_source``,
    ``n_items``): the catalogue's :class:`ItemFeatures` and :class:`NewItemStates` alike."""

    n_items: int

    def _source(self, modality: str):  # pragma: no cover - abstract
        """(every item's states (n, L, D), tensor or memory map; their mask (n, L))."""
        raise NotImplementedError

    def states(self, modality: str, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Cached frozen-bottom states and mask of ``ids`` (N,): float32 (N, L, D), bool (N, L), on the ids'
        device. Text columns that no item of ``ids`` uses are dropped."""
        index = ids.cpu()
        source, masks = self._source(modality)
        mask = masks[index].bool()
        states = source[index]
        if modality == "text":
            width = max(int(mask.sum(dim=1).max()), 1)
            mask, states = mask[:, :width], states[:, :width]
        return states.to(ids.device, torch.float32), mask.to(ids.device)

    def token_counts(self, modality: str, ids: Tensor) -> Tensor:
        """(N,) how many of the state columns of each item of ``ids`` are real tokens (text: its tokenised length)."""
        return self._source(modality)[1][ids.cpu()].sum(dim=1)

    def pooled(self, modality: str) -> Tensor:
        """Masked mean of every item's cached states (n_items, D): a frozen modality's item summary."""
        chunks = []
        for start in range(0, self.n_items, _POOL_CHUNK):
            states, mask = self.states(modality, torch.arange(start, min(start + _POOL_CHUNK, self.n_items)))
            chunks.append(masked_mean(states, mask if modality == "text" else None))
        return torch.cat(chunks)

    def grouped_text(self, groups: int) -> tuple[Tensor, Tensor, Tensor]:
        """Every item's cached text states averaged in at most ``groups`` runs of tokens: (tokens (n, G, D),
        mask (n, G), sizes (n, G)), for a frozen text encoder whose groups never change."""
        g = min(groups, self._source("text")[1].shape[1])
        tokens = mask = sizes = None
        for start in range(0, self.n_items, _POOL_CHUNK):
            ids = torch.arange(start, min(start + _POOL_CHUNK, self.n_items))
            t, m, c = pool_token_groups(*self.states("text", ids), groups)
            if tokens is None:  # a chunk of short texts may have fewer than g columns: the rest stay padding
                tokens = t.new_zeros(self.n_items, g, t.shape[2])
                mask, sizes = m.new_zeros(self.n_items, g), c.new_zeros(self.n_items, g)
            width = t.shape[1]
            tokens[ids, :width], mask[ids, :width], sizes[ids, :width] = t, m, c
        return tokens, mask, sizes


class ItemFeatures(_StateSummaries):
    """Content, frozen encoders and their cached states of every item (see the module docstring)."""

    def __init__(self, content: ItemContent, encoders: dict, states: dict, masks: dict, encoder_batch_size: int,
                 decision: tuple | None = None, build_s: float = 0.0):
        self.content = content
        self.modalities = tuple(m for m in MODALITIES if m in encoders)
        # (modalities, why): the modalities in use and the one-line reason, logged by the dataset
        self.decision = decision if decision is not None else (self.modalities, "given")
        self.build_s = float(build_s)  # seconds to read the content and load or build the caches
        self._encoders = encoders
        self.cache_dirs = {m: str(Path(s.path).resolve().parent) for m, s in states.items() if hasattr(s, "path")}
        self._states = dict(states)  # memory-mapped; to_ram() reads those a model reads per batch into RAM
        self._masks = masks
        self.encoder_batch_size = int(encoder_batch_size)
        self.n_items = content.n_items
        self.train_item_counts: Tensor | None = None
        # (n_items,) source index of each item of a merged data set (-1: the padding item), else None
        self.item_domains: Tensor | None = None
        self._images: Tensor | None = None

    @property
    def has_text(self) -> Tensor:
        return self.content.has_text

    @property
    def has_image(self) -> Tensor:
        return self.content.has_image  # images that failed to decode were turned off by the cache build

    # ------------------------------------------------------------------ encoders
    def encoder(self, modality: str):
        """The encoder (frozen bottom + top) whose bottom made ``modality``'s states."""
        self._check(modality)
        return self._encoders[modality]

    def top(self, modality: str):
        """A copy of ``modality``'s encoder without its frozen bottom: the trainable top a model owns (the copy
        keeps the encoder's identity, so a checkpoint can say which bottom its top was trained on)."""
        encoder = self.encoder(modality)
        encoder.identity()  # computed while the bottom is there
        bottom, encoder.bottom = encoder.bottom, None
        try:
            return copy.deepcopy(encoder)
        finally:
            encoder.bottom = bottom

    # ------------------------------------------------------------------ what the item tower reads
    def _source(self, modality: str):
        self._check(modality)
        return self._states[modality], self._masks[modality]

    def inputs(self, modality: str, ids: Tensor):
        """Raw encoder inputs of ``ids``: (token ids, mask) for text, uint8 images (N, 3, H, W) for image."""
        self._check(modality)
        if modality == "text":
            input_ids, mask = self.content.text_batch(ids.cpu())
            return input_ids.to(ids.device), mask.to(ids.device)
        if self._images is None and self.n_items * 3 * self.content.image_size ** 2 <= IN_RAM_BYTES:
            every = torch.arange(self.n_items)
            self._images = torch.cat([self.content.image_batch(chunk)[0] for chunk in every.split(256)])
        images = self._images[ids.cpu()] if self._images is not None else self.content.image_batch(ids.cpu())[0]
        return images.to(ids.device)

    def bottom(self, modality: str, ids: Tensor) -> tuple[Tensor, Tensor]:
        """``end_to_end``: the frozen bottom (eval mode, no grad) on the raw inputs of ``ids``, in chunks of
        ``encoder_batch_size`` items (one pass over ~1,000 posters held ~14 GB of activations)."""
        encoder = self.encoder(modality)
        if encoder.bottom is None:
            raise PMMRecConfigError(f"the {modality} encoder's frozen bottom was dropped; end_to_end needs it")
        encoder.to(ids.device)
        parts = []
        for chunk in ids.split(self.encoder_batch_size):
            parts.append(encoder.encode_bottom(self.inputs(modality, chunk)))
        states, mask = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]).bool()
        if modality == "image":  # as cached: an item without a usable image has zero states
            keep = self.content.has_image[ids.cpu()].to(ids.device)
            states, mask = states * keep[:, None, None], mask & keep[:, None]
        return states, mask

    # ------------------------------------------------------------------ items outside the catalogue
    def encode_new(self, texts: Sequence[str] | None, image_paths: Sequence[Path | None] | None,
                   cached_dtype: torch.dtype | None) -> dict:
        """Frozen-bottom states of items outside the catalogue, through the same encoders as the cache.

        ``texts``: the joined item texts (:func:`~recbole_pmmrec.data.content.join_item_text`; '' = no text);
        ``image_paths``: None = no image (an image that does not decode is logged and left out). ``cached_dtype``:
        the cache's dtype (states are rounded to it as cached states are), None for ``end_to_end`` (float32).
        Returns ``{"has_text", "has_image", "<modality>.states", "<modality>.mask"}`` for this object's
        modalities: what :class:`NewItemStates` reads, and what a caller may store."""
        n = len(texts if texts is not None else image_paths)
        out = {"has_text": torch.zeros(n, dtype=torch.bool), "has_image": torch.zeros(n, dtype=torch.bool)}
        for modality in self.modalities:
            encoder = self.encoder(modality)
            encoder.eval()
            states, masks = [], []
            with torch.inference_mode():
                for start in range(0, n, self.encoder_batch_size):
                    stop = min(start + self.encoder_batch_size, n)
                    if modality == "text":
                        chunk = list(texts[start:stop])
                        ids, mask = encoder.tokenize(chunk)
                        ids = torch.as_tensor(ids).to(torch.int32).long()  # as ItemContent stores them
                        s, m = encoder.encode_bottom((ids, torch.as_tensor(mask).bool()))
                        out["has_text"][start:stop] = torch.tensor([bool(t) for t in chunk])
                    else:
                        images, ok = self._new_images(image_paths[start:stop])
                        s, m = encoder.encode_bottom(images)
                        s, m = s * ok[:, None, None], m & ok[:, None]  # no image: zero states, as cached
                        out["has_image"][start:stop] = ok
                    s = s.detach().float().cpu()
                    states.append(s if cached_dtype is None else s.to(cached_dtype))
                    masks.append(m.detach().cpu().bool())
            out[f"{modality}.states"], out[f"{modality}.mask"] = torch.cat(states), torch.cat(masks)
        return out

    def _new_images(self, paths: Sequence[Path | None]) -> tuple[Tensor, Tensor]:
        size = self.content.image_size
        images = torch.zeros(len(paths), 3, size, size, dtype=torch.uint8)
        ok = torch.zeros(len(paths), dtype=torch.bool)
        for row, path in enumerate(paths):
            if path is not None:
                img, reason = load_image(path, size)
                if img is None:
                    logger.warning("new item image %s unusable (%s): the item falls back to text", path, reason)
                else:
                    images[row], ok[row] = img, True
        return images, ok

    def to_ram(self, modality: str) -> bool:
        """Read ``modality``'s cached states into RAM once (when they fit in IN_RAM_BYTES), for a model that reads
        them per batch; a model that only needs ``pooled`` / ``grouped_text`` never asks, and the states stay on
        disk (41k items x 32 tokens x 384 would be 1 GB more). Returns whether they are in RAM."""
        states = self._states[modality]
        if hasattr(states, "to_tensor") and _nbytes(states) <= IN_RAM_BYTES:
            self._states[modality] = states = states.to_tensor()
        return isinstance(states, Tensor)

    def _check(self, modality: str) -> None:
        if modality not in self._encoders:
            raise PMMRecConfigError(f"modality {modality!r} was not prepared for this dataset (it has "
                                    f"{list(self.modalities)}); build the dataset with the same modalities")

    def report(self) -> dict:
        """What provenance logs: modalities, cache folders, content fallbacks."""
        return {"modalities": list(self.modalities), "content": self.content.report(),
                "caches": dict(self.cache_dirs)}


class NewItemStates(_StateSummaries):
    """What the item tower reads (``states``, ``bottom``, ``pooled``, ``grouped_text``, ``has_text``,
    ``has_image``) for items outside the catalogue, from :meth:`ItemFeatures.encode_new`'s output."""

    def __init__(self, encoded: dict, modalities: Sequence[str]):
        self._encoded = encoded
        self.modalities = tuple(modalities)
        self.has_text = encoded["has_text"].bool()
        self.has_image = encoded["has_image"].bool()
        self.n_items = int(self.has_text.shape[0])
        self.item_domains = None  # items outside the catalogue have no source domain

    def _source(self, modality: str):
        return self._encoded[f"{modality}.states"], self._encoded[f"{modality}.mask"]

    bottom = _StateSummaries.states  # end_to_end: the states were computed in float32 from the raw inputs


def modality_encoder(settings, modality: str):
    """The encoder the settings name for ``modality`` (``text`` or ``image``), with its frozen bottom."""
    if modality == "text":
        return build_encoder("text", name=settings.text_encoder, train_layers=settings.text_train_layers,
                             max_length=settings.text_max_length)
    return build_encoder("image", name=settings.image_encoder, train_layers=settings.image_train_layers,
                         image_size=settings.image_size, grid=settings.image_grid, checkpoint=settings.image_checkpoint)


def build_item_features(settings, item_tokens: Sequence[str], item_file: Path, text_fields: Sequence[str],
                        image_dir: Path | None, item_field: str, name: str, progress: bool) -> ItemFeatures:
    """Decide the modalities, read the content, build the encoders and load (or build) their state caches.
    ``features.build_s`` is how long that took (seconds)."""
    start = time.perf_counter()
    modalities, why = resolve_modalities(settings.modalities, text_fields, image_dir, item_tokens, name)
    encoders = {modality: modality_encoder(settings, modality) for modality in modalities}
    content = ItemContent.from_item_file(
        item_tokens, item_file if "text" in modalities else None, text_fields if "text" in modalities else [],
        encoders["text"].tokenize if "text" in encoders else None, item_field=item_field,
        lowercase=settings.text_lowercase, image_dir=image_dir if "image" in modalities else None,
        image_size=settings.image_size, name=name, contentless=settings.contentless_items)
    states, masks = {}, {}
    for modality, encoder in encoders.items():
        encoder.eval()
        build = text_state_cache if modality == "text" else image_state_cache
        states[modality], masks[modality] = build(encoder, content, settings.cache_dir, name=f"{name}-{modality}",
                                                  dtype=settings.cache_dtype, batch_size=settings.encoder_batch_size,
                                                  progress=progress)
    return ItemFeatures(content, encoders, states, masks, settings.encoder_batch_size, decision=(modalities, why),
                        build_s=time.perf_counter() - start)
