"""Training-split variants, applied after RecBole's leave-one-out split, for every sequential model.

* ``train_window`` (PMMRec): keep one prefix row per L training interactions of a user (L =
  ``MAX_ITEM_LIST_LENGTH``): with every position of ``history + target`` supervised, these windows cover
  each training interaction exactly once, like RecBole's one-row-per-prefix rows, with ~L times fewer
  sequences. A user with at most L+1 training items has a single window (the paper's setting).
  ``train_window_stride`` S < L keeps one window per S interactions instead: the windows overlap, each
  target is supervised about L/S times with more context (data augmentation, L/S times the compute). An S
  above L is read as L (logged).
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


def to_windows(feat: Interaction, dataset) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Rows ``history -> target`` as windows: {list field: (B, L+1) history followed by the target}, and the
    number of items per window (B,)."""
    lengths = feat[dataset.item_list_length_field]
    windows = {}
    for field, list_field in _list_fields(dataset):
        values = feat[list_field]
        padded = torch.cat([values, torch.zeros_like(values[:, :1])], dim=1)
        index = lengths.view(-1, *([1] * (values.dim() - 1))).expand_as(padded[:, :1])
        windows[list_field] = padded.scatter(1, index, feat[field].view_as(padded[:, :1]))
    return windows, lengths + 1


def from_windows(feat: Interaction, dataset, windows: dict, counts: torch.Tensor) -> Interaction:
    """Inverse of :func:`to_windows`: the last item of each window becomes the target."""
    new = dict(feat.interaction)
    rows = torch.arange(len(counts))
    last = counts - 1
    for field, list_field in _list_fields(dataset):
        window = windows[list_field].clone()
        new[field] = window[rows, last].clone()
        window[rows, last] = 0
        new[list_field] = window[:, :-1]
    new[dataset.item_list_length_field] = last
    return Interaction(new)


def drop_items(windows: dict, counts: torch.Tensor, dataset, drop: torch.Tensor):
    """Remove the items with ``drop[item]`` from every window, shifting the rest left."""
    items = windows[dataset.item_id_list_field]
    keep = (~drop[items]) & (torch.arange(items.shape[1])[None, :] < counts[:, None])
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept positions first, in order
    new_counts = keep.sum(dim=1)
    out = {}
    for list_field, values in windows.items():
        idx = order.view(order.shape + (1,) * (values.dim() - 2)).expand_as(values)
        valid = (torch.arange(values.shape[1])[None, :] < new_counts[:, None])
        out[list_field] = torch.gather(values, 1, idx) * valid.view(valid.shape + (1,) * (values.dim() - 2)).to(
            values.dtype)
    return out, new_counts


def chunk_rows(feat: Interaction, dataset, stride: int) -> torch.Tensor:
    """Indices of the training rows whose windows cover every training interaction of a user once
    (``stride`` = L, the default), or overlap (``stride`` < L: one window per ``stride`` targets).

    A user's prefix rows are in time order; the row of the last target covers the last L+1 items, the row L
    (``stride``) targets earlier the L before, and so on. (RecBole's sorts are stable, so equal timestamps keep
    file order.)"""
    uids = feat[dataset.uid_field].numpy()
    order = np.argsort(uids, kind="stable")
    sorted_uids = uids[order]
    starts = np.r_[0, np.flatnonzero(sorted_uids[1:] != sorted_uids[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(uids)])
    rank_from_end = np.concatenate([np.arange(size - 1, -1, -1) for size in sizes]) if len(sizes) else np.array([])
    keep = order[rank_from_end % stride == 0]
    return torch.from_numpy(np.sort(keep))


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
        stride = self.max_item_list_len
        if config["train_window_stride"] is not None:
            stride = int(config["train_window_stride"])
            if stride < 1:
                raise PMMRecConfigError(f"train_window_stride={stride}: must be at least 1 (or ~ for one window per "
                                        f"MAX_ITEM_LIST_LENGTH={self.max_item_list_len} interactions)")
            if stride > self.max_item_list_len:  # e.g. the default 5 with a shorter history: windows cannot skip items
                logger.warning("train_window_stride=%d is above MAX_ITEM_LIST_LENGTH=%d: using %d (windows that do "
                               "not overlap)", stride, self.max_item_list_len, self.max_item_list_len)
                stride = self.max_item_list_len
        feat = train.inter_feat
        if window:  # one window per L (stride) training interactions of a user, every position supervised
            feat = feat[chunk_rows(feat, self, stride)]
        if cold_ratio > 0:
            before = len(feat)
            windows, counts = to_windows(feat, self)
            target_cold = self.cold_items[feat[self.iid_field]]
            windows, counts = drop_items(windows, counts, self, self.cold_items)
            keep = counts >= 2
            if not window:  # a prefix row exists to predict its own target
                keep &= ~target_cold
            keep = torch.nonzero(keep).flatten()
            feat = from_windows(feat[keep], self, {k: v[keep] for k, v in windows.items()}, counts[keep])
            logger.info("cold-start split: %d of %d items held out of training; %d -> %d training rows",
                        int(self.cold_items.sum()), self.item_num - 1, before, len(feat))
        if few_ratio < 1.0:
            users = np.unique(feat[self.uid_field].numpy())
            kept = rng.choice(users, size=max(1, int(round(few_ratio * len(users)))), replace=False)
            feat = feat[torch.nonzero(torch.from_numpy(np.isin(feat[self.uid_field].numpy(), kept))).flatten()]
            logger.info("few-shot split: training rows of %d of %d users kept", len(kept), len(users))
        if feat is not train.inter_feat:
            train = train.copy(feat)
        self.train_item_counts = self._train_item_counts(train.inter_feat, window, stride)
        for split in (train, valid, test):  # the split copies were made before these were set
            split.cold_items, split.train_item_counts = self.cold_items, self.train_item_counts
        return [train, valid, test]

    def _train_item_counts(self, feat: Interaction, window: bool, stride: int) -> torch.Tensor:
        """(item_num,) training interactions per item: every target, plus the history items that are no
        other row's target. Windows: the last ``stride`` - 1 history items of each window, and all of a user's
        earliest window, so overlapping windows count each interaction once; prefix rows: first items."""
        history, lengths = feat[self.item_id_list_field], feat[self.item_list_length_field]
        if window:
            new = torch.arange(history.shape[1])[None, :] >= (lengths - stride + 1)[:, None]
            uids, rows = feat[self.uid_field], torch.arange(len(lengths))
            first = torch.full((int(uids.max()) + 1 if len(uids) else 0,), len(lengths))
            first = first.scatter_reduce(0, uids, rows, reduce="amin")  # each user's first row
            earliest = (rows == first[uids])[:, None]  # a user's earliest window (rows are in time order): all new
            extra = history[(history > 0) & (new | earliest)]
        else:
            extra = history[lengths == 1, 0]
        return torch.bincount(torch.cat([feat[self.iid_field], extra]), minlength=self.item_num)


class PluginSequentialDataset(SplitVariantsMixin, SequentialDataset):
    """RecBole's SequentialDataset with the plugin's split variants (used for the baselines)."""
