"""``PMMRecDataset``: RecBole's ``SequentialDataset`` plus each item's content and cached encoder states.

On top of RecBole's loading, filtering and id remapping it prepares ``item_features``
(:class:`~recbole_pmmrec.data.features.ItemFeatures`, shared by the train/valid/test copies): content,
modalities (decided from the data unless configured), frozen encoders and their cached states, and after
the split ``train_item_counts`` (training interactions per item, for the NIP popularity debias).

``build()`` splits as RecBole does (leave-one-out on the time-ordered prefixes), then applies the split
variants of :mod:`recbole_pmmrec.data.splits` (``train_window``: one window per user with every position
supervised; ``few_shot_ratio``; ``cold_item_ratio``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd
import torch
from recbole.data.dataset import SequentialDataset

from recbole_pmmrec.data.features import ItemFeatures, build_item_features
from recbole_pmmrec.data.sources import token_domains
from recbole_pmmrec.data.splits import SplitVariantsMixin
from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError
from recbole_pmmrec.settings import settings_of

logger = logging.getLogger(__name__)


def repeat_shares(users, items) -> dict[str, float]:
    """Share of leave-one-out targets whose item the same user already had in an earlier row, per part: "train"
    (every row but each user's last two), "valid" (the second last) and "test" (the last). ``users`` and ``items``
    are parallel sequences in time order within each user (users may interleave). A user's first row is no target.
    The one definition behind ``exclude_history: ~`` and the repeats study (bench/studies/repeats.py)."""
    frame = pd.DataFrame({"u": users, "i": items})
    target = frame.groupby("u", sort=False).cumcount() > 0
    from_end = frame.groupby("u", sort=False).cumcount(ascending=False)
    repeat = frame.duplicated(["u", "i"])
    out = {}
    for part, rows in (("train", from_end >= 2), ("valid", from_end == 1), ("test", from_end == 0)):
        rows = rows & target
        out[part] = float(repeat[rows].sum()) / int(rows.sum()) if rows.any() else 0.0
    return out


# exclude_history: ~ removes a user's history items from the ranking unless at least this share of training
# targets repeats an item the user already had. A content model ranks the items a user just read very high: on
# data without repeats removing them is a large gain, and with repeats it forbids every repeated target (on an
# Amazon set with ~5% repeats, removing them cost 40% of test NDCG@10: 0.0436 against 0.0734).
REPEAT_SHARE_LIMIT = 0.01

# train_batch_size: ~ gives a training batch about this many supervised positions (targets): as many windows as
# BATCH_POSITIONS / the mean targets per training window, rounded to a power of two. 64 full windows of L = 20
# hold 1,280, so on long histories (ml100k-posters: 18.2 targets per window) the rule gives 64 windows, the batch
# every setting was tuned with; on short ones (seqrec-toys: 6.3, MicroLens-50K: 4.5) 64 windows held only 400 and
# 290 targets, and 256 windows scored higher on seqrec-toys (each of 3 seeds) and level on MicroLens-50K (2 seeds),
# while 256 on ml100k-posters scored lower (docs/benchmarks-notes.md).
BATCH_POSITIONS = 1280
BATCH_ROWS_RANGE = (16, 1024)


def resolve_exclude_history(config, dataset) -> bool:
    """A model's ``exclude_history``: the config's, or (``~`` on a dataset that ``PMMRecDataset.build`` did not
    resolve) decided from ``dataset``'s repeats as ``build`` decides it, and written back to the config."""
    value = settings_of(config).exclude_history
    if value is not None:
        return bool(value)
    decide = getattr(dataset, "decide_exclude_history", None)
    if decide is None:
        raise PMMRecConfigError(f"exclude_history: ~ is decided from a PMMRecDataset's repeats, and "
                                f"{type(dataset).__name__} is not one: set exclude_history to True or False")
    value, why = decide()
    if hasattr(config, "resolve"):
        config.resolve(why, exclude_history=value)
    return value


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
        fields = settings_of(self.config).text_fields
        if fields:
            return list(fields)
        if not item_file.is_file():
            return []
        header = item_file.open(encoding="utf-8", errors="replace").readline().rstrip("\n").split("\t")
        return [h.split(":")[0] for h in header
                if h.split(":")[0] != self.iid_field and h.split(":")[-1] in ("token_seq", "token")]

    def _build_item_features(self) -> ItemFeatures:
        settings = settings_of(self.config)
        item_tokens = list(self.field2id_token[self.iid_field])
        item_file = Path(self.dataset_path) / f"{self.dataset_name}.item"
        image_dir = Path(settings.image_dir) if settings.image_dir else \
            Path(self.dataset_path) / f"{self.dataset_name}.images"
        text_fields = self._text_fields(item_file)
        features = build_item_features(settings, item_tokens, item_file, text_fields, image_dir, self.iid_field,
                                       self.dataset_name, progress=bool(self.config["show_progress"]))
        modalities, why = features.decision
        if hasattr(self.config, "resolve"):
            self.config.resolve(why, modalities=list(modalities))
        domains = token_domains(self, self.iid_field)
        features.item_domains = None if domains is None else torch.as_tensor(domains)
        return features

    # ------------------------------------------------------------------ splitting
    def build(self):
        datasets = super().build()  # SplitVariantsMixin: train_window, few-shot, cold-start
        self.item_features.train_item_counts = self.train_item_counts
        if settings_of(self.config).exclude_history is None and hasattr(self.config, "resolve"):
            resolve_exclude_history(self.config, self)
        if self.config["train_batch_size"] is None and hasattr(self.config, "resolve"):
            rows, why = self.decide_train_batch_size(datasets[0])
            self.config.resolve(why, train_batch_size=rows)
        return datasets

    def decide_train_batch_size(self, train) -> tuple[int, str]:
        """``train_batch_size: ~`` decided from the training split ``train``: (windows per batch, the one-line
        reason), so that a batch holds about BATCH_POSITIONS supervised positions (see the constant)."""
        if not len(train.inter_feat):
            raise PMMRecDataError(f"dataset '{self.dataset_name}' has no training rows after the split; check "
                                  f"{self.dataset_path} and the split settings (few_shot_ratio, cold_item_ratio)")
        per_row = max(float(train.inter_feat[self.item_list_length_field].float().mean()), 1.0)
        low, high = BATCH_ROWS_RANGE
        rows = int(min(max(2 ** round(math.log2(BATCH_POSITIONS / per_row)), low), high))
        return rows, (f"decided from the data: training windows hold {per_row:.1f} targets on average, so a batch of "
                      f"{rows} windows holds about {rows * per_row:.0f} (aim: {BATCH_POSITIONS}, the window count a "
                      f"power of two); set train_batch_size to override")

    def decide_exclude_history(self) -> tuple[bool, str]:
        """``exclude_history: ~`` decided from the data: (remove history items from the ranking?, the one-line
        reason). They are removed unless at least REPEAT_SHARE_LIMIT of training targets repeat an item."""
        share = self.repeat_share()
        keep = share >= REPEAT_SHARE_LIMIT
        return not keep, (f"decided from the data: {share:.2%} of training targets repeat an item the user already "
                          f"had, so history items are {'kept in' if keep else 'removed from'} the ranking (they are "
                          f"kept from {REPEAT_SHARE_LIMIT:.0%} on); set exclude_history to override")

    def repeat_share(self) -> float:
        """Share of training targets whose item the same user already had earlier (see :func:`repeat_shares`)."""
        frame = pd.DataFrame({"u": self.inter_feat[self.uid_field].numpy(),
                              "i": self.inter_feat[self.iid_field].numpy()})
        if self.time_field in self.inter_feat:
            frame["t"] = self.inter_feat[self.time_field].numpy()
            frame = frame.sort_values(["u", "t"], kind="stable")
        return repeat_shares(frame["u"].to_numpy(), frame["i"].to_numpy())["train"]

    def data_preparation(self):
        """Split and wrap in PMMRec's dataloaders (RecBole's for sampled evaluation)."""
        from recbole.data.utils import create_samplers, get_dataloader

        from recbole_pmmrec.data.dataloader import PMMRecTrainDataLoader

        config = self.config
        built = self.build()
        train_sampler, valid_sampler, test_sampler = create_samplers(config, self, built)
        train = PMMRecTrainDataLoader(config, built[0], train_sampler, shuffle=config["shuffle"])
        loaders = []
        for phase, dataset, sampler in (("valid", built[1], valid_sampler), ("test", built[2], test_sampler)):
            loaders.append(get_dataloader(config, phase)(config, dataset, sampler, shuffle=False))
        return train, loaders[0], loaders[1]
