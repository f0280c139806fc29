"""``PMMRecDataset``: RecBole's ``SequentialDataset`` plus each item's content and cached encoder states.

On top of RecBole's loading, filtering and id remapping it prepares ``item_features`` (a dict shared
by the train/valid/test copies), indexed by internal item id:

* ``content``: :class:`~recbole_pmmrec.data.content.ItemContent` (token ids, image paths, masks);
* ``encoders``: {modality: the encoder whose frozen bottom made the cached states} (models copy it);
* ``has_text`` / ``has_image``: (n_items,) bool;
* ``{text,image}_states`` / ``{text,image}_mask``: the frozen encoder bottom's output for every item,
  read from the encoder-state cache (built once, memory-mapped, keyed by what made it);
* ``train_item_counts``: (n_items,) training interactions per item (for the NIP popularity debias).

``build()`` splits as RecBole does (leave-one-out on the time-ordered prefixes), then applies the split
variants of :mod:`recbole_pmmrec.data.splits` (``train_window``: one window per user with every position
supervised; ``few_shot_ratio``; ``cold_item_ratio``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset

from recbole_pmmrec.data.cache import image_state_cache, text_state_cache
from recbole_pmmrec.data.content import ItemContent
from recbole_pmmrec.data.splits import SplitVariantsMixin
from recbole_pmmrec.errors import PMMRecDataError

logger = logging.getLogger(__name__)


class PMMRecDataset(SplitVariantsMixin, SequentialDataset):
    """A sequential dataset whose items carry text and image content."""

    def __init__(self, config):
        super().__init__(config)
        if self.inter_num == 0:
            raise PMMRecDataError(f"dataset '{self.dataset_name}' has no interactions left after loading and "
                                  f"filtering; check {self.dataset_path} and the filter settings")
        self.item_features = self._build_item_features()

    # ------------------------------------------------------------------ loading
    def _filter_inter_by_user_or_item(self):
        """RecBole silently drops interactions whose item is missing from the .item file: count and say so."""
        before = len(self.inter_feat)
        super()._filter_inter_by_user_or_item()
        dropped = before - len(self.inter_feat)
        if dropped:
            logger.warning("%s: dropped %d interactions whose user or item has no row in the .user/.item file",
                           self.dataset_name, dropped)
        self.dropped_unknown_interactions = dropped

    def _text_fields(self, item_file: Path) -> list[str]:
        fields = self.config["text_fields"]
        if fields:
            return [fields] if isinstance(fields, str) else list(fields)
        if not item_file.is_file():
            return []
        header = item_file.open(encoding="utf-8", errors="replace").readline().rstrip("\n").split("\t")
        return [h.split(":")[0] for h in header
                if h.split(":")[0] != self.iid_field and h.split(":")[-1] in ("token_seq", "token")]

    def _build_item_features(self) -> dict:
        from recbole_pmmrec.model.item_tower import build_encoder, parse_modalities

        config = self.config
        modalities = parse_modalities(config["modalities"])
        item_tokens = list(self.field2id_token[self.iid_field])
        item_file = Path(self.dataset_path) / f"{self.dataset_name}.item"
        encoders = {m: build_encoder(config, m) for m in modalities}

        image_dir = None
        if "image" in modalities:
            image_dir = config["image_dir"] or Path(self.dataset_path) / f"{self.dataset_name}.images"
        text_fields = self._text_fields(item_file) if "text" in modalities else []
        if "text" in modalities and not text_fields:
            raise PMMRecDataError(f"{item_file}: no text fields found for the text modality; set text_fields "
                                  f"to columns of the .item file, or use modalities: [image]")
        content = ItemContent.from_item_file(
            item_tokens, item_file if text_fields else None, text_fields,
            encoders["text"].tokenize if "text" in encoders else None,
            item_field=self.iid_field, lowercase=bool(config["text_lowercase"]),
            image_dir=image_dir, image_size=int(config["image_size"] or 224), name=self.dataset_name,
            contentless=str(config["contentless_items"] or "error"))

        features = {"content": content, "encoders": encoders, "has_text": content.has_text,
                    "has_image": content.has_image}
        cache_root = config["cache_dir"] or "cache"
        cache_args = {"dtype": str(config["cache_dtype"] or "float16"),
                      "batch_size": int(config["cache_batch_size"] or 64), "progress": bool(config["show_progress"])}
        for modality, encoder in encoders.items():
            encoder.eval()
            build = text_state_cache if modality == "text" else image_state_cache
            states, mask = build(encoder, content, cache_root, name=f"{self.dataset_name}-{modality}", **cache_args)
            features[f"{modality}_states"], features[f"{modality}_mask"] = states, mask
        # image_state_cache turns has_image off for images that failed to decode
        features["has_image"] = content.has_image
        return features

    # ------------------------------------------------------------------ splitting
    def build(self):
        datasets = super().build()  # SplitVariantsMixin: train_window, few-shot, cold-start
        self.item_features["train_item_counts"] = self.train_item_counts
        return datasets

    def data_preparation(self):
        """Split and wrap in PMMRec's dataloaders (RecBole's for sampled evaluation)."""
        from recbole.data.utils import create_samplers, get_dataloader

        from recbole_pmmrec.data.dataloader import PMMRecFullSortEvalDataLoader, PMMRecTrainDataLoader

        config = self.config
        built = self.build()
        train_sampler, valid_sampler, test_sampler = create_samplers(config, self, built)
        train = PMMRecTrainDataLoader(config, built[0], train_sampler, shuffle=config["shuffle"])
        loaders = []
        for phase, dataset, sampler in (("valid", built[1], valid_sampler), ("test", built[2], test_sampler)):
            cls = get_dataloader(config, phase)
            if cls.__name__ == "FullSortEvalDataLoader":
                cls = PMMRecFullSortEvalDataLoader
            loaders.append(cls(config, dataset, sampler, shuffle=False))
        return train, loaders[0], loaders[1]
