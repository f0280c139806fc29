"""Training-split variants, applied after RecBole's leave-one-out split, for every sequential model.

* ``train_window`` (PMMRec): one training row per user, built from the user's validation row: its history
  is exactly the user's training interactions, so the window ``history[:-1] -> history[-1]`` with every
  position supervised covers all of them (RecBole's one-row-per-prefix rows cover the same interactions
  with ~L times more sequences).
* ``few_shot_ratio``: keep the training rows of a random fraction of users; validation and test users
  stay the same (for learning curves over the target's data size).
* ``cold_item_ratio``: hold out a random fraction of items from training: their interactions leave
  the training histories and targets, and they stay ranking candidates. Validation and test rows are
  untouched, so a test target can be an item no model saw in training.

The random choices use ``split_seed`` (default: ``seed``), so the baselines and PMMRec see the same
split when run with the same config.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction

from recbole_pmmrec.errors import PMMRecConfigError

logger = logging.getLogger(__name__)


def _ratio(config, key: str) -> float:
    value = config[key]
    if value is None:
        return 0.0 if key == "cold_item_ratio" else 1.0
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise PMMRecConfigError(f"{key}={value}: must be a fraction in [0, 1]")
    return value


def _list_fields(dataset) -> list[tuple[str, str]]:
    """(field, its list field) pairs of the augmented interactions, the item id first."""
    suffix = dataset.config["LIST_SUFFIX"]
    pairs = [(f, f + suffix) for f in dataset.inter_feat.interaction if f + suffix in dataset.inter_feat.interaction]
    return sorted(pairs, key=lambda p: p[0] != dataset.iid_field)


def compact_rows(feat: Interaction, dataset, keep: torch.Tensor) -> Interaction:
    """Remove history positions where ``keep`` (B, L) is False, shifting the rest left."""
    lengths = keep.sum(dim=1)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept positions first, in order
    new = dict(feat.interaction)
    for _, list_field in _list_fields(dataset):
        values = feat[list_field]
        gathered = torch.gather(values, 1, order.view(order.shape + (1,) * (values.dim() - 2)).expand_as(values))
        valid = torch.arange(values.shape[1])[None, :] < lengths[:, None]
        new[list_field] = gathered * valid.view(valid.shape + (1,) * (values.dim() - 2)).to(values.dtype)
    new[dataset.item_list_length_field] = lengths
    return Interaction(new)


def windows_from_history(feat: Interaction, dataset) -> Interaction:
    """Rows ``history -> target`` into ``history[:-1] -> history[-1]`` (rows with < 2 items are dropped)."""
    lengths = feat[dataset.item_list_length_field]
    feat = feat[torch.nonzero(lengths >= 2).flatten()]
    last = feat[dataset.item_list_length_field] - 1
    new = dict(feat.interaction)
    for field, list_field in _list_fields(dataset):
        values = feat[list_field].clone()
        rows = torch.arange(values.shape[0])
        new[field] = values[rows, last].clone()
        values[rows, last] = 0
        new[list_field] = values
    new[dataset.item_list_length_field] = last
    return Interaction(new)


class SplitVariantsMixin:
    """Adds ``few_shot_ratio``, ``cold_item_ratio`` and ``train_window`` to a SequentialDataset's build()."""

    def build(self):
        datasets = super().build()
        if len(datasets) != 3:
            return datasets
        train, valid, test = datasets
        config = self.config
        rng = np.random.default_rng(config["split_seed"] if config["split_seed"] is not None else config["seed"])
        self.cold_items = torch.zeros(self.item_num, dtype=torch.bool)
        cold_ratio, few_ratio = _ratio(config, "cold_item_ratio"), _ratio(config, "few_shot_ratio")
        if cold_ratio > 0:
            n_cold = int(round(cold_ratio * (self.item_num - 1)))
            self.cold_items[1 + rng.choice(self.item_num - 1, size=n_cold, replace=False)] = True
        window = bool(config["train_window"])
        feat = valid.inter_feat if window else train.inter_feat  # a validation history = the training items
        if cold_ratio > 0:
            before = len(feat)
            feat = compact_rows(feat, self, ~self.cold_items[feat[self.item_id_list_field]])
            keep = feat[self.item_list_length_field] > 0
            if not window:
                keep &= ~self.cold_items[feat[self.iid_field]]
            feat = feat[torch.nonzero(keep).flatten()]
            logger.info("cold-start split: %d of %d items held out of training; %d -> %d training rows",
                        int(self.cold_items.sum()), self.item_num - 1, before, len(feat))
        if window:
            feat = windows_from_history(feat, self)
        if few_ratio < 1.0:
            users = np.unique(feat[self.uid_field].numpy())
            kept = rng.choice(users, size=max(1, int(round(few_ratio * len(users)))), replace=False)
            feat = feat[torch.nonzero(torch.from_numpy(np.isin(feat[self.uid_field].numpy(), kept))).flatten()]
            logger.info("few-shot split: training rows of %d of %d users kept", len(kept), len(users))
        if feat is not train.inter_feat:
            train = train.copy(feat)
        self.train_item_counts = self._train_item_counts(train.inter_feat, window)
        for split in (train, valid, test):  # the split copies were made before these were set
            split.cold_items, split.train_item_counts = self.cold_items, self.train_item_counts
        return [train, valid, test]

    def _train_item_counts(self, feat: Interaction, window: bool) -> torch.Tensor:
        """(item_num,) training interactions per item: window items, or prefix targets + first items."""
        history, lengths = feat[self.item_id_list_field], feat[self.item_list_length_field]
        extra = history[history > 0] if window else history[lengths == 1, 0]
        return torch.bincount(torch.cat([feat[self.iid_field], extra]), minlength=self.item_num)


class PluginSequentialDataset(SplitVariantsMixin, SequentialDataset):
    """RecBole's SequentialDataset with the plugin's split variants (used for the baselines)."""
