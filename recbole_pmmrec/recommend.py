"""From a trained model to recommendations: top-k for users or histories, new items without retraining.

```
model file --Recommender.load--> config + PMMRecDataset (catalogue, content, cached states) + PMMRec weights
  -> every item vector once (model.item_vectors(), eval mode)  + new items' vectors (add_items)
recommend: histories (B, L) --user encoder--> states (B, d) @ vectors.T -> masks -> top-k (ties: lower item id)
```

**Which model files load, and how** (a model file is code-free data or it is refused):

* a *pretrained folder* written by :func:`recbole_pmmrec.transfer.save_pretrained` (``model.safetensors`` +
  ``pmmrec.json``): safe, loaded with safetensors only. Its header gives the architecture, the modalities and
  each encoder's identity; ``data_path`` must be given, ``dataset`` defaults to the header's first source.
* a RecBole checkpoint ``NAME.pth`` (what training writes into ``checkpoint_dir``): a pickle, which can run
  code when loaded, so it is read only with ``trust_pickle=True`` (``--trust_pickle``) or when it lies inside a
  ``checkpoint_dir`` the caller names (:func:`recbole_pmmrec.compat.load_own_checkpoint`); otherwise a
  :class:`~recbole_pmmrec.errors.PMMRecCheckpointError` says how to convert it.

The model's weights never depend on item ids (items are their content), so any catalogue can be ranked; but a
model file is checked against the data it is used with: another data set than the one it was trained on is
an error unless ``allow_other_dataset=True`` (zero-shot use), and an encoder whose identity (frozen bottom,
boundary layer, state size) differs from the header's is always an error naming the modality.

**Ranking** equals RecBole's ``full_sort_topk`` on the same model: the user's state after the last ``L``
(``MAX_ITEM_LIST_LENGTH``) items of the history, dot product with every item vector, the padding item and (with
``exclude_history``, the model's setting unless given) the items of that input window removed, top ``k``; equal
scores are ordered by item id (the lower internal id first; new items come after the data set's). Items whose
score is ``-inf`` (excluded) are never returned. ``split="test"`` ranks from the history RecBole's leave-one-out
test uses (all but the last interaction), ``"valid"`` all but the last two; ``"all"`` (default) every
interaction.

**New items** (:meth:`Recommender.add_items`): their text (the data set's text fields, joined, lower-cased and
tokenised exactly as :class:`~recbole_pmmrec.data.content.ItemContent` does) and image (decoded as the cache
build does) go through the data set's frozen encoder bottoms; in ``cached`` mode the states are rounded to the
cache dtype as cached states are; then the model's own item tower (trained tops, projections, fusion) makes
their vectors, so a new item gets the vector it would have had in the data set from the start. They are
stored next to the model in ``<model>.new_items/`` (``items.tsv``, ``images/``, ``states.safetensors``,
``meta.json``; no pickle) and come back with every later :meth:`Recommender.load`; stored states whose encoder
identities differ from the current encoders are recomputed from the tsv and images.

Command line (``error: ...`` and exit status 2 for a :class:`~recbole_pmmrec.errors.PMMRecError`)::

    python -m recbole_pmmrec.recommend --model_file=saved/PMMRec-synth-pretrained --data_path=data \\
        --users=u1,u2 --k=10 [--format=tsv|json|html] [--output=FILE] [--new_items=DIR] [--strict]
    python -m recbole_pmmrec.recommend --model_file=F --data_path=D --history="i1 i2 i3"
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from recbole_pmmrec import compat
from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError, PMMRecDataError, PMMRecError

logger = logging.getLogger(__name__)

NEW_ITEMS_FORMAT = "recbole-pmmrec new items"
NEW_ITEMS_VERSION = 1
NEW_ITEMS_SUFFIX = ".new_items"
SPLITS = {"all": 0, "test": 1, "valid": 2}  # interactions left out at the end of each user's history
FORMATS = ("tsv", "json", "html")
# Settings that make the encoders and the item text: they come from the model file. A path may differ (the
# model moved to another machine); the encoder identities are compared after loading in either case.
_FROM_MODEL_PATHS = ("text_encoder", "image_encoder", "image_checkpoint")
_BATCH = 256  # users per scoring pass


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


@dataclass
class Recommendation:
    """The top-k of one user or history."""

    user: str                        # the user token, or ``history-<n>`` for a given history
    history: list[str]               # the items the user state was computed from (last L), oldest first
    items: list[str]                 # item tokens, best first
    scores: list[float]
    new: list[bool] = field(default_factory=list)  # which of ``items`` were added with add_items
    skipped: list[str] = field(default_factory=list)  # unknown history items that were left out

    def as_dict(self, titles: Mapping[str, str] | None = None) -> dict:
        titles = titles or {}
        return {"user": self.user, "history": self.history, "skipped_unknown": len(self.skipped),
                "items": [{"rank": r + 1, "item": item, "score": score, "title": titles.get(item, ""), "new": is_new}
                          for r, (item, score, is_new) in enumerate(zip(self.items, self.scores, self.new))]}


# --------------------------------------------------------------------------------------------
# top-k with ties broken by item id
# --------------------------------------------------------------------------------------------


def topk_by_id(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``torch.topk`` whose order is exact for ties: higher score first, equal scores by lower column index,
    and the k-th place filled from the lowest indices among the items tied with it. -> (values, indices)."""
    k = min(k, scores.shape[1])
    values, index = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1)  # one more: is the k-th place tied?
    if values.shape[1] > k:
        spill = values[:, k] == values[:, k - 1]
        values, index = values[:, :k].clone(), index[:, :k].clone()
        # rows with an item tied at the k-th score left out: fill the tied places with the lowest ids
        for row in torch.nonzero(spill).flatten().tolist():
            s, kth = scores[row], values[row, -1]
            above = torch.nonzero(s > kth).flatten()
            tied = torch.nonzero(s == kth).flatten()[: k - len(above)]
            index[row] = torch.cat([above, tied])
            values[row] = s[index[row]]
    # order inside the top k: by score descending, ties by index ascending (two stable sorts)
    by_id = torch.argsort(index, dim=1, stable=True)
    index, values = index.gather(1, by_id), values.gather(1, by_id)
    by_score = torch.argsort(values, dim=1, descending=True, stable=True)
    return values.gather(1, by_score), index.gather(1, by_score)


# --------------------------------------------------------------------------------------------
# new items: their states through the data set's encoders (what ItemFeatures would hold for them)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# reading tables of items
# --------------------------------------------------------------------------------------------


def _read_table(table, item_field: str):
    """A path to a tsv (RecBole .item header ``name:type`` or plain names) / DataFrame / list of dicts /
    {token: {field: value}} -> DataFrame indexed by item token (str), one column per field."""
    import pandas as pd

    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        if path.is_dir():
            found = sorted(path.glob("*.item")) + sorted(path.glob("*.tsv"))
            if not found:
                raise PMMRecDataError(f"new items folder {path} holds no .item or .tsv table of items")
            path = found[0]
        if not path.is_file():
            raise PMMRecDataError(f"new items table {path} does not exist")
        with path.open(encoding="utf-8", errors="replace") as fh:
            header = [h.split(":", 1)[0].strip().lstrip("\ufeff") for h in fh.readline().rstrip("\n").split("\t")]
        from recbole_pmmrec.data.content import read_item_text

        id_column = item_field if item_field in header else header[0]
        frame = read_item_text(path, [h for h in header if h != id_column], id_column)
        frame.index.name = item_field
        return frame
    if isinstance(table, pd.DataFrame):
        frame = table.copy()
        if item_field in frame.columns:
            frame = frame.set_index(item_field)
    elif isinstance(table, Mapping):
        frame = pd.DataFrame.from_dict({str(k): dict(v) for k, v in table.items()}, orient="index")
    else:
        rows = list(table)
        if rows and not all(isinstance(r, Mapping) and item_field in r for r in rows):
            raise PMMRecDataError(f"new items: every row needs an '{item_field}' field")
        frame = pd.DataFrame(rows).set_index(item_field) if rows else pd.DataFrame()
    frame.index = frame.index.astype(str)
    frame.index.name = item_field
    return frame


def _clean_cell(value) -> str:
    return " ".join(str(value).split()) if value is not None and not (isinstance(value, float) and math.isnan(value)) \
        else ""


def _check_token(token: str) -> None:
    from recbole_pmmrec.data.images import _unsafe_token

    if not token.strip() or any(c in token for c in "\t\n\r/\\") or _unsafe_token(token):
        raise PMMRecDataError(f"new item id {token!r} cannot be used: an item id must be non-empty and hold no "
                              "tab, newline or path separator (it names the item's image file)")


# --------------------------------------------------------------------------------------------
# loading a model file
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _no_argv():
    """RecBole's Config reads ``sys.argv``: the caller's command line is not a config here."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def _is_pickle(path: Path) -> bool:
    from recbole_pmmrec.transfer import PICKLE_SUFFIXES

    return path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES


def _new_items_dir(model_file: Path) -> Path:
    return model_file.parent / ((model_file.stem if model_file.is_file() else model_file.name) + NEW_ITEMS_SUFFIX)


def _config_from_pickle(ckpt_config) -> tuple[dict, str, str | None]:
    """config_dict rebuilt from a RecBole checkpoint's pickled Config: the plugin's settings and the data
    set's loading keys (so the catalogue is filtered as in training). -> (config_dict, dataset, data_path)."""
    from recbole_pmmrec.settings import KEY

    values = dict(getattr(ckpt_config, "final_config_dict", {}) or {})
    dataset_keys = set(getattr(ckpt_config, "parameters", {}).get("Dataset", []))
    skip = {"data_path", "pretrained", "save_pretrained", "resume_checkpoint", "nproc", "world_size", "offset",
            "port", "ip", "local_rank", "checkpoint_dir", "log_dir", "tensorboard_dir", "benchmark_filename"}
    config = {k: v for k, v in values.items() if (k in KEY or k in dataset_keys) and k not in skip and v is not None}
    data_path = values.get("data_path")
    dataset = str(values.get("dataset"))
    if data_path:  # RecBole's Config appends the dataset name to data_path
        data_path = str(Path(data_path).parent) if Path(data_path).name == dataset else str(data_path)
    return config, dataset, data_path


def sorted_histories(dataset) -> dict:
    """Every user's interactions ordered as RecBole orders them (by user, then time; stable), from the loaded
    data set's ``inter_feat`` (before ``build()``): {"items", "starts", "counts"} indexed by internal user id."""
    inter = dataset.inter_feat
    column = (lambda f: np.asarray(inter[f].numpy() if hasattr(inter[f], "numpy") else inter[f]))
    users = column(dataset.uid_field).astype(np.int64)
    items = column(dataset.iid_field).astype(np.int64)
    time_field = dataset.time_field
    keys = (column(time_field), users) if time_field and time_field in inter else (users,)
    order = np.lexsort(keys)  # stable: time within user, file order for equal times
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=len(dataset.field2id_token[dataset.uid_field]))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return {"items": items, "starts": starts, "counts": counts}


class Recommender:
    """A loaded model, its catalogue and its new items (see the module docstring). Build with :meth:`load`."""

    def __init__(self, model, dataset, config, model_file: Path, header: dict | None = None,
                 histories: dict | None = None):
        self.model = model.eval()
        self.dataset = dataset
        self.config = config
        self.model_file = Path(model_file)
        self.header = header or {}
        self.features = dataset.item_features
        self.item_field, self.user_field = dataset.iid_field, dataset.uid_field
        self.item_tokens: list[str] = [str(t) for t in dataset.field2id_token[self.item_field]]
        self.n_dataset_items = len(self.item_tokens)
        self.item_index = {t: i for i, t in enumerate(self.item_tokens)}
        self.user_tokens = [str(t) for t in dataset.field2id_token[self.user_field]]
        self.user_index = {t: i for i, t in enumerate(self.user_tokens)}
        self.max_len = int(model.max_seq_length)
        with torch.inference_mode():
            self._vectors = model.item_vectors().detach().float().clone()
            self._scoring = model.scoring_vectors(self._vectors)  # the item side of every score, kept with _vectors
        self._image_paths: list[Path | None] = list(self.features.content.image_paths) \
            if self.features.content.use_image else [None] * self.n_dataset_items
        self._titles = self._read_titles()
        self._new: dict = {"tokens": [], "texts": {}, "fields": {}, "images": {}, "encoded": None}
        self._histories = histories if histories is not None else sorted_histories(dataset)
        self._windows: dict[int, tuple[Tensor, Tensor]] = {}
        self.new_items_dir = _new_items_dir(self.model_file)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model_file, data_path=None, dataset: str | None = None, *, trust_pickle: bool = False,
             checkpoint_dir=None, allow_other_dataset: bool = False, new_items: bool = True,
             **overrides) -> "Recommender":
        """Load a pretrained folder (safetensors) or a RecBole ``.pth`` (only with ``trust_pickle=True`` or
        inside the named ``checkpoint_dir``), build the data set's catalogue and the model.

        ``data_path``/``dataset``: where the data set lies (defaults: the model file's own); ``overrides``:
        config keys (``cache_dir``, ``exclude_history``, ``eval_item_dtype``, ...); keys that decide the
        architecture or the item text come from the model file and cannot be changed. ``new_items``: also
        load the items added earlier (``<model>.new_items/``)."""
        compat.apply()
        from recbole_pmmrec.config import Config
        from recbole_pmmrec.model.pmmrec import PMMRec
        from recbole_pmmrec.settings import ARCH_KEYS
        from recbole_pmmrec.transfer import header_architecture, read_header, with_older_keys

        path = Path(os.path.expanduser(str(model_file)))
        if not path.exists():
            raise PMMRecCheckpointError(f"model file '{path}' does not exist; give a folder written by "
                                        f"save_pretrained (--save_pretrained) or a RecBole checkpoint NAME.pth")
        header, state = None, None
        if path.is_dir() or path.name in ("model.safetensors", "pmmrec.json"):
            header = read_header(path)
            path = path if path.is_dir() else path.parent
            if header.get("model") != "PMMRec":
                raise PMMRecCheckpointError(f"'{path}' holds a {header.get('model')} model; recommend serves PMMRec")
            trained_on = (header.get("source_datasets") or [None])[0]
            base = {k: v for k, v in header_architecture(path, header).items() if k in ARCH_KEYS}
            if data_path is None:
                raise PMMRecConfigError(f"'{path}' is a pretrained folder, which does not say where its data set "
                                        f"lies: pass data_path=DIR (--data_path=DIR) and dataset=NAME")
        elif _is_pickle(path):
            if checkpoint_dir is None and not trust_pickle:
                raise PMMRecCheckpointError(
                    f"refusing to unpickle '{path}': a RecBole checkpoint is a pickle, and loading one can run "
                    f"arbitrary code. Pass trust_pickle=True (--trust_pickle) if you trust this file, or "
                    f"checkpoint_dir=DIR (--checkpoint_dir=DIR) naming the folder your own training wrote it to; "
                    f"or load a folder written by save_pretrained (safetensors, never unpickled)")
            ckpt = compat.load_own_checkpoint(path, checkpoint_dir if checkpoint_dir is not None else path.parent,
                                              map_location="cpu")
            if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
                raise PMMRecCheckpointError(f"'{path}' is not a RecBole checkpoint (no config/state_dict in it)")
            base, trained_on, saved_path = _config_from_pickle(ckpt["config"])
            if str(getattr(ckpt["config"], "final_config_dict", {}).get("model")) != "PMMRec":
                raise PMMRecCheckpointError(f"'{path}' holds a {ckpt['config']['model']} model; recommend "
                                            f"serves PMMRec")
            base = with_older_keys(base, ckpt["state_dict"].keys())
            data_path = data_path if data_path is not None else saved_path
            state = ckpt["state_dict"]
        else:
            raise PMMRecCheckpointError(f"'{path}' is neither a pretrained folder (model.safetensors + pmmrec.json) "
                                        f"nor a RecBole checkpoint (.pth)")

        dataset = dataset or trained_on
        if dataset is None:
            raise PMMRecConfigError(f"'{path}' does not name its data set: pass dataset=NAME (--dataset=NAME)")
        if trained_on and dataset != trained_on and not allow_other_dataset:
            raise PMMRecCheckpointError(
                f"model file '{path}' was trained on data set '{trained_on}', not '{dataset}': its users and "
                f"history semantics belong to '{trained_on}'. Pass dataset='{trained_on}', or "
                f"allow_other_dataset=True (--allow_other_dataset) to rank '{dataset}' zero-shot")
        # A folder's header records the encoders' identities (compared below), so their paths may differ; a .pth
        # has no such record: there the encoder settings cannot change either.
        movable = _FROM_MODEL_PATHS if header is not None else ()
        fixed = {k: v for k, v in overrides.items() if k in base and k not in movable and v != base[k]}
        if fixed:
            detail = ", ".join(f"{k}={v!r} (the model file has {base[k]!r})" for k, v in fixed.items())
            raise PMMRecConfigError(f"cannot change {detail}: these settings decide the model's architecture or "
                                    f"its item text and come from the model file '{path}'")
        config_dict = {"show_progress": False, "state": "WARNING", **base, **overrides, "data_path": str(data_path)}
        with _no_argv():
            config = Config(model=PMMRec, dataset=dataset, config_dict=config_dict)
        if config["threads"] is not None:
            torch.set_num_threads(config["threads"])
        if header is not None:
            _check_encoders(config, header, path)
        data = cls._build_dataset(config)
        histories = sorted_histories(data)  # before build(), which replaces inter_feat with training rows
        from recbole_pmmrec.settings import settings_of

        if settings_of(config).exclude_history is None and hasattr(data, "repeat_share"):
            data.build()  # exclude_history: ~ is decided from the data's repeats when it is split, as in training
        model = PMMRec(config, data).to(config["device"])
        if header is not None:
            from recbole_pmmrec.transfer import load_pretrained

            load_pretrained(model, path, None, strict=True, config=config)
        else:
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise PMMRecCheckpointError(
                    f"the weights in '{path}' do not fit the model built from its config: "
                    f"{str(exc).splitlines()[0]} ({len(str(exc))} chars of detail); was it trained with another "
                    f"encoder or recbole-pmmrec version?") from None
        recommender = cls(model, data, config, path, header, histories)
        if new_items:
            recommender._load_new_items()
        return recommender

    @staticmethod
    def _build_dataset(config):
        from recbole_pmmrec.data import PMMRecDataset

        inter = Path(config["data_path"]) / f"{config['dataset']}.inter"
        if not inter.is_file():
            raise PMMRecDataError(f"data set '{config['dataset']}' not found: {inter} does not exist; pass the "
                                  f"data_path (--data_path) that holds it")
        return PMMRecDataset(config)

    # ------------------------------------------------------------------ catalogue
    @property
    def n_items(self) -> int:
        """Rankable items: the data set's (without the padding item) and the new ones."""
        return len(self.item_tokens) - 1

    @property
    def new_items(self) -> list[str]:
        return list(self._new["tokens"])

    def is_new(self, item: str) -> bool:
        return self.item_index.get(item, 0) >= self.n_dataset_items

    def title(self, item: str) -> str:
        return self._titles.get(item, "")

    def image_path(self, item: str) -> Path | None:
        i = self.item_index.get(item)
        return self._image_paths[i] if i is not None else None

    def _read_titles(self) -> dict[str, str]:
        """Display titles: the .item file's ``title`` column, else its first text field (raw, not lower-cased)."""
        from recbole_pmmrec.data.content import read_item_text

        content = self.features.content
        item_file = Path(self.config["data_path"]) / f"{self.config['dataset']}.item"
        fields = ["title"] if "title" in content.text_fields else list(content.text_fields[:1])
        if not fields and item_file.is_file():
            header = item_file.open(encoding="utf-8", errors="replace").readline().rstrip("\n").split("\t")
            names = [h.split(":")[0] for h in header]
            fields = ["title"] if "title" in names else []
        titles = {}
        if fields and item_file.is_file():
            try:
                frame = read_item_text(item_file, fields, self.item_field)
                titles = {str(k): _clean_cell(v) for k, v in frame[fields[0]].items()}
            except PMMRecError:
                titles = {}
        return titles

    def item_vectors(self) -> tuple[list[str], Tensor]:
        """(item tokens, vectors (n, d) float32) of every rankable item, the new ones last."""
        return self.item_tokens[1:], self._vectors[1:].clone()

    def export_item_vectors(self, path) -> Path:
        """Write every item vector to ``path`` (safetensors: ``item_vectors`` (n, d) float32, ``is_new`` (n,);
        the item tokens, in row order, are the metadata ``items`` (a JSON list))."""
        from safetensors.torch import save_file

        tokens, vectors = self.item_vectors()
        is_new = torch.tensor([self.is_new(t) for t in tokens], dtype=torch.bool)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"item_vectors": vectors.contiguous(), "is_new": is_new}, str(path),
                  metadata={"items": json.dumps(tokens), "dataset": str(self.config["dataset"]),
                            "model_file": str(self.model_file)})
        return path

    # ------------------------------------------------------------------ histories
    def _window(self, drop: int) -> tuple[Tensor, Tensor]:
        """(item_seq (n_users, L) left-aligned as RecBole's item_id_list, lengths (n_users,)) of every user's
        last L interactions before the last ``drop`` ones."""
        if drop not in self._windows:
            h = self._histories
            ends = h["starts"] + np.maximum(h["counts"] - drop, 0)
            begins = np.maximum(h["starts"], ends - self.max_len)
            index = begins[:, None] + np.arange(self.max_len)[None, :]
            valid = index < ends[:, None]
            seq = np.where(valid, h["items"][np.minimum(index, max(len(h["items"]) - 1, 0))], 0)
            self._windows[drop] = torch.from_numpy(seq.astype(np.int64)), torch.from_numpy(ends - begins)
        return self._windows[drop]

    def history(self, user: str, split: str = "all") -> list[str]:
        """The item tokens the user's state is computed from (the last L), oldest first."""
        seq, lengths = self._user_rows([user], split)
        return [self.item_tokens[i] for i in seq[0, : int(lengths[0])].tolist()]

    def _user_rows(self, users: Sequence[str], split: str) -> tuple[Tensor, Tensor]:
        if split not in SPLITS:
            raise PMMRecConfigError(f"split={split!r}: use one of {list(SPLITS)}")
        unknown = [u for u in users if u not in self.user_index or self.user_index[u] == 0]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise PMMRecDataError(
                f"unknown user {shown}: not in data set '{self.config['dataset']}' ({len(self.user_tokens) - 1} "
                f"users). Pass their history instead: histories=[[item, ...]] (--history=\"ITEM ITEM ...\")")
        ids = torch.tensor([self.user_index[u] for u in users], dtype=torch.long)
        seq, lengths = self._window(SPLITS[split])
        seq, lengths = seq[ids], lengths[ids]
        short = [u for u, n in zip(users, lengths.tolist()) if n < 1]
        if short:
            raise PMMRecDataError(f"user {short[0]!r} has no interaction before the {split} split's held-out "
                                  f"ones; use split='all'")
        return seq, lengths

    def _history_rows(self, histories: Sequence[Sequence[str]], strict: bool
                      ) -> tuple[Tensor, Tensor, list[list[str]]]:
        rows, skipped_all = [], []
        for n, history in enumerate(histories, 1):
            if isinstance(history, str):
                history = history.split()
            tokens = [str(t) for t in history]
            known = [t for t in tokens if self.item_index.get(t, 0) > 0]
            skipped = [t for t in tokens if self.item_index.get(t, 0) == 0]
            if skipped:
                message = (f"history {n}: {len(skipped)} of {len(tokens)} items are not in the catalogue "
                           f"(e.g. {skipped[:3]})")
                if strict:
                    raise PMMRecDataError(message + "; remove them, or add them first with add_items (--new_items)")
                logger.warning("%s; they were skipped", message)
            if not known:
                raise PMMRecDataError(f"history {n} has no item of the catalogue ({len(tokens)} given, "
                                      f"{len(skipped)} unknown): nothing to compute a user state from")
            rows.append([self.item_index[t] for t in known][-self.max_len:])
            skipped_all.append(skipped)
        seq = torch.zeros(len(rows), self.max_len, dtype=torch.long)
        for r, ids in enumerate(rows):
            seq[r, : len(ids)] = torch.tensor(ids)
        return seq, torch.tensor([len(r) for r in rows]), skipped_all

    # ------------------------------------------------------------------ ranking
    def recommend(self, users: Sequence[str] | None = None, histories: Sequence[Sequence[str]] | None = None,
                  k: int = 10, exclude_history: bool | None = None, candidates: Iterable[str] | None = None,
                  split: str = "all", strict: bool = False, batch_size: int = _BATCH) -> list[Recommendation]:
        """Top-``k`` items per user (tokens of the data set) or per history (lists of item tokens, oldest
        first; unknown items are counted and skipped, an error with ``strict``). ``exclude_history``: None =
        the model's setting. ``candidates``: rank only these items. ``split``: see the module docstring."""
        if (users is None) == (histories is None):
            raise PMMRecConfigError("recommend: give either users=[...] or histories=[[...], ...]")
        if isinstance(users, str):
            users = [users]
        if isinstance(histories, str):  # one history, space-separated
            histories = [histories]
        if users is not None:
            users = [str(u) for u in users]
            seq, lengths = self._user_rows(users, split)
            names, skipped = users, [[] for _ in users]
        else:
            seq, lengths, skipped = self._history_rows(histories, strict)
            names = [f"history-{n}" for n in range(1, len(histories) + 1)]
        exclude = self.model.exclude_history if exclude_history is None else bool(exclude_history)
        allowed = None
        if candidates is not None:
            candidates = [str(c) for c in candidates]
            unknown = [c for c in candidates if self.item_index.get(c, 0) == 0]
            if unknown:
                message = f"{len(unknown)} candidate items are not in the catalogue (e.g. {unknown[:3]})"
                if strict:
                    raise PMMRecDataError(message)
                logger.warning("%s; they were skipped", message)
            allowed = torch.zeros(len(self.item_tokens), dtype=torch.bool)
            allowed[[self.item_index[c] for c in candidates if self.item_index.get(c, 0) > 0]] = True
            if not bool(allowed.any()):
                raise PMMRecDataError("none of the candidate items is in the catalogue")
        pool = int(allowed.sum()) if allowed is not None else self.n_items
        if k < 1:
            raise PMMRecConfigError(f"k={k}: ask for at least one item")
        if k > pool:
            logger.warning("k=%d is more than the %d items that can be ranked: returning at most %d", k, pool, pool)
            k = pool
        # Batches in the order given, every history as wide as RecBole's (L): the same batches give bit-identical
        # scores. (Dropping the padding columns of short histories is ~2x faster on short histories and exact in
        # arithmetic, but moves scores by an ulp, which swaps near-ties: measured, not adopted.)
        out: list[Recommendation | None] = [None] * len(names)
        tokens, first_new = self.item_tokens, self.n_dataset_items
        for start in range(0, len(names), batch_size):
            rows = list(range(start, min(start + batch_size, len(names))))
            values, index = self._rank(seq[rows], lengths[rows], k, exclude, allowed)
            for r, vals, ids, history, n in zip(rows, values.tolist(), index.tolist(), seq[rows].tolist(),
                                                lengths[rows].tolist()):
                keep = [j for j, v in enumerate(vals) if v != float("-inf")]  # excluded items are not returned
                out[r] = Recommendation(names[r], [tokens[i] for i in history[:n]], [tokens[ids[j]] for j in keep],
                                        [vals[j] for j in keep], [ids[j] >= first_new for j in keep], skipped[r])
        return out

    def scores(self, item_seq: Tensor, lengths: Tensor, exclude_history: bool | None = None) -> Tensor:
        """Scores (B, n_items incl. padding) for item-id histories, masked as :meth:`recommend` masks them."""
        exclude = self.model.exclude_history if exclude_history is None else bool(exclude_history)
        with torch.inference_mode():
            return self._scores(item_seq, lengths, exclude, None)

    def _scores(self, seq: Tensor, lengths: Tensor, exclude: bool, allowed: Tensor | None) -> Tensor:
        device = self._vectors.device
        seq, lengths = seq.to(device), lengths.to(device)
        users = self.model.user_states(seq, lengths, self._vectors)  # (B, d)
        scores = users @ self._scoring.t()  # (B, n_items + new)
        if exclude:
            scores.scatter_(1, seq, float("-inf"))
        scores[:, 0] = float("-inf")
        if allowed is not None:
            scores.masked_fill_(~allowed.to(device)[None, :], float("-inf"))
        return scores

    def _rank(self, seq, lengths, k, exclude, allowed) -> tuple[Tensor, Tensor]:
        with torch.inference_mode():
            values, index = topk_by_id(self._scores(seq, lengths, exclude, allowed), k)
        return values.cpu(), index.cpu()

    def similar_items(self, item: str, k: int = 10) -> Recommendation:
        """The ``k`` items whose vectors are closest to ``item``'s (cosine), itself left out."""
        i = self.item_index.get(str(item), 0)
        if i == 0:
            raise PMMRecDataError(f"unknown item {item!r}: not in the catalogue of '{self.config['dataset']}' nor "
                                  f"among the new items")
        if k > self.n_items - 1:
            logger.warning("k=%d is more than the %d other items: returning %d", k, self.n_items - 1,
                           self.n_items - 1)
            k = self.n_items - 1
        with torch.inference_mode():
            unit = torch.nn.functional.normalize(self._vectors, dim=1)
            sims = (unit @ unit[i])[None, :].clone()
            sims[0, 0] = sims[0, i] = float("-inf")
            values, index = topk_by_id(sims, k)
        items = [self.item_tokens[j] for j in index[0].tolist()]
        return Recommendation(str(item), [str(item)], items, values[0].tolist(), [self.is_new(t) for t in items])

    # ------------------------------------------------------------------ new items
    def _cached_dtype(self) -> torch.dtype | None:
        from recbole_pmmrec.settings import settings_of

        s = settings_of(self.config)
        if s.encoder_mode == "end_to_end":
            return None
        return torch.float16 if s.cache_dtype == "float16" else torch.float32

    def _identities(self) -> dict:
        return {m: self.features.encoder(m).identity() for m in self.features.modalities}

    def add_items(self, table, image_dir=None, persist: bool = True) -> list[str]:
        """Encode new items and add them to the catalogue at once (no retraining); returns their tokens.

        ``table``: a tsv file (RecBole ``.item`` format: ``item_id:token`` and the data set's text fields) or a
        folder holding one, a DataFrame, a list of dicts or ``{item: {field: value}}``. ``image_dir``: a folder
        of ``<item>.<ext>`` images (default: ``images/`` next to the table, or the table's folder). An id that
        exists in the data set is an error; one added before with the same content is skipped; an item with
        neither text nor an image (of the modalities the model uses) is an error naming it. ``persist``: store
        them in ``<model>.new_items/`` so that a later :meth:`load` has them."""
        from recbole_pmmrec.data.content import join_item_text
        from recbole_pmmrec.data.images import index_image_dir, resolve_image_path

        frame = _read_table(table, self.item_field)
        if image_dir is None and isinstance(table, (str, os.PathLike)):
            base = Path(table) if Path(table).is_dir() else Path(table).parent
            image_dir = base / "images" if (base / "images").is_dir() else base
        image_dir = Path(image_dir) if image_dir is not None else None
        if image_dir is not None and not image_dir.is_dir():
            raise PMMRecDataError(f"new items image folder {image_dir} does not exist")
        index = index_image_dir(image_dir) if image_dir is not None else {}
        content = self.features.content
        fields = list(content.text_fields)
        dup = frame.index[frame.index.duplicated()].tolist()
        if dup:
            raise PMMRecDataError(f"new items: item id(s) {dup[:5]} appear more than once in the table")
        tokens, texts, images, raw = [], [], [], {}
        for token in frame.index:
            _check_token(token)
            row = frame.loc[token]
            values = [row[f] if f in frame.columns else "" for f in fields]
            text = join_item_text(values, content.lowercase) if "text" in self.features.modalities else ""
            path = None
            if "image" in self.features.modalities and image_dir is not None:
                path, _ = resolve_image_path(image_dir, token, index)
            if token in self.item_index and not self.is_new(token):
                raise PMMRecDataError(f"new item {token!r} already exists in data set '{self.config['dataset']}': "
                                      f"give new items ids of their own")
            if self.is_new(token):
                if self._new["texts"].get(token) == text and (self._new["images"].get(token) is None) == (path is None):
                    logger.info("new item %r was added before with the same content: skipped", token)
                    continue
                raise PMMRecDataError(f"new item {token!r} was already added with other content; new items are "
                                      f"not replaced (delete {self.new_items_dir} to start over)")
            if not text and path is None:
                need = " or ".join({"text": f"text in {fields}", "image": "an image <item>.<ext> in the image "
                                    "folder"}[m] for m in self.features.modalities)
                raise PMMRecDataError(f"new item {token!r} has neither text nor image: it needs {need}")
            tokens.append(token)
            texts.append(text)
            images.append(path)
            raw[token] = {f: _clean_cell(row[f]) if f in frame.columns else "" for f in
                          dict.fromkeys(fields + (["title"] if "title" in frame.columns else []))}
        if not tokens:
            return []
        encoded = self.features.encode_new(texts, images, self._cached_dtype())
        missing = [t for t, ht, hi in zip(tokens, encoded["has_text"].tolist(), encoded["has_image"].tolist())
                   if not (ht or hi)]
        if missing:
            raise PMMRecDataError(f"new item {missing[0]!r} has neither text nor a usable image (its image did "
                                  f"not decode)")
        self._append(tokens, encoded, texts, raw, images)
        if persist:
            self._persist()
        logger.info("added %d new items (%d with an image)", len(tokens), int(encoded["has_image"].sum()))
        return tokens

    def _append(self, tokens, encoded, texts, raw, images) -> None:
        from recbole_pmmrec.data.features import NewItemStates

        vectors = self.model.vectors_of(NewItemStates(encoded, self.features.modalities)).to(self._vectors.device)
        self._vectors = torch.cat([self._vectors, vectors])
        self._scoring = self.model.scoring_vectors(self._vectors)
        for token, text, path in zip(tokens, texts, images):
            self.item_index[token] = len(self.item_tokens)
            self.item_tokens.append(token)
            self._image_paths.append(path)
            self._new["texts"][token] = text
            self._new["images"][token] = path
            fields = raw[token]
            self._new["fields"][token] = fields
            self._titles[token] = fields.get("title") or next((v for v in fields.values() if v), token)
        self._new["tokens"].extend(tokens)
        old = self._new["encoded"]
        if old is None:
            self._new["encoded"] = encoded
        else:
            merged = {}
            for key, value in encoded.items():
                if key.endswith(".states") or key.endswith(".mask"):
                    a, b = old[key], value
                    width = max(a.shape[1], b.shape[1])  # text states are max_length wide either way
                    merged[key] = torch.cat([a, b]) if a.shape[1:] == b.shape[1:] else torch.cat(
                        [torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[1]) if x.dim() == 3 else
                                                 (0, width - x.shape[1])) for x in (a, b)])
                else:
                    merged[key] = torch.cat([old[key], value])
            self._new["encoded"] = merged

    def _persist(self) -> None:
        """Write ``<model>.new_items/`` afresh (temp folder, then rename): items.tsv, images/,
        states.safetensors, meta.json."""
        from safetensors.torch import save_file

        target = self.new_items_dir
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            fields = list(dict.fromkeys(f for t in self._new["tokens"] for f in self._new["fields"][t]))
            with open(tmp / "items.tsv", "w", encoding="utf-8") as fh:
                fh.write("\t".join([f"{self.item_field}:token"] + [f"{f}:token_seq" for f in fields]) + "\n")
                for token in self._new["tokens"]:
                    row = self._new["fields"][token]
                    fh.write("\t".join([token] + [row.get(f, "") for f in fields]) + "\n")
            (tmp / "images").mkdir()
            for token in self._new["tokens"]:
                src = self._new["images"][token]
                if src is not None:
                    dst = tmp / "images" / f"{token}{Path(src).suffix.lower()}"
                    shutil.copyfile(src, dst)
            encoded = {k: v.contiguous() for k, v in self._new["encoded"].items()}
            save_file(encoded, str(tmp / "states.safetensors"))
            meta = {"format": NEW_ITEMS_FORMAT, "format_version": NEW_ITEMS_VERSION,
                    "dataset": str(self.config["dataset"]), "items": self._new["tokens"],
                    "encoders": self._identities(), "modalities": list(self.features.modalities),
                    "text_fields": list(self.features.content.text_fields),
                    "text_lowercase": bool(self.features.content.lowercase),
                    "image_size": int(self.features.content.image_size),
                    "states_dtype": str(self._cached_dtype() or torch.float32).replace("torch.", "")}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8")
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _load_new_items(self) -> None:
        folder = self.new_items_dir
        if not (folder / "meta.json").is_file():
            return
        from safetensors.torch import load_file

        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PMMRecDataError(f"{folder}/meta.json is unreadable ({exc}); delete {folder} and add the items "
                                  f"again") from None
        if meta.get("format") != NEW_ITEMS_FORMAT:
            raise PMMRecDataError(f"{folder} is not a new-items folder (meta.json format {meta.get('format')!r})")
        frame = _read_table(folder / "items.tsv", self.item_field)
        tokens = [str(t) for t in meta.get("items", [])]
        clash = [t for t in tokens if t in self.item_index]
        if clash:
            logger.warning("%d stored new items are now in data set '%s' (e.g. %s): the data set's rows are used",
                           len(clash), self.config["dataset"], clash[:3])
        keep = [t for t in tokens if t not in self.item_index]
        if not keep:
            return
        images_dir = folder / "images"
        from recbole_pmmrec.data.content import join_item_text
        from recbole_pmmrec.data.images import index_image_dir, resolve_image_path

        index = index_image_dir(images_dir) if images_dir.is_dir() else {}
        images = [resolve_image_path(images_dir, t, index)[0] if "image" in self.features.modalities and index
                  else None for t in keep]
        fields = list(self.features.content.text_fields)
        texts = [join_item_text([frame.loc[t][f] if f in frame.columns else "" for f in fields],
                           self.features.content.lowercase) if "text" in self.features.modalities else ""
                 for t in keep]
        same = (meta.get("encoders") == json.loads(json.dumps(self._identities(), default=str))
                and meta.get("modalities") == list(self.features.modalities)
                and meta.get("text_fields") == fields
                and meta.get("text_lowercase") == bool(self.features.content.lowercase)
                and meta.get("image_size") == int(self.features.content.image_size)
                and meta.get("states_dtype") == str(self._cached_dtype() or torch.float32).replace("torch.", ""))
        if same and (folder / "states.safetensors").is_file():
            stored = load_file(str(folder / "states.safetensors"))
            rows = torch.tensor([tokens.index(t) for t in keep])
            encoded = {k: v[rows] for k, v in stored.items()}
        else:
            logger.warning("%s was made with other encoders or settings: recomputing its %d items' states",
                           folder, len(keep))
            encoded = self.features.encode_new(texts, images, self._cached_dtype())
        raw = {t: {c: _clean_cell(frame.loc[t][c]) for c in frame.columns} for t in keep}
        self._append(keep, encoded, texts, raw, images)
        logger.info("loaded %d new items from %s", len(keep), folder)

    # ------------------------------------------------------------------ output
    def titles(self, items: Iterable[str]) -> dict[str, str]:
        return {t: self._titles.get(t, "") for t in items}

    def write(self, recommendations: Sequence[Recommendation], fmt: str = "tsv", output=None) -> str:
        """Render as ``tsv`` (``user rank item score title``), ``json`` (one object per line and user) or
        ``html`` (a self-contained page); written to ``output`` when given; returns the text."""
        if fmt not in FORMATS:
            raise PMMRecConfigError(f"format={fmt!r}: use one of {list(FORMATS)}")
        if fmt == "tsv":
            lines = ["user\trank\titem\tscore\ttitle"]
            for rec in recommendations:
                lines += [f"{rec.user}\t{r}\t{item}\t{score:.6g}\t{self.title(item)}"
                          for r, (item, score) in enumerate(zip(rec.items, rec.scores), 1)]
            text = "\n".join(lines) + "\n"
        elif fmt == "json":
            text = "".join(json.dumps(rec.as_dict(self.titles(rec.items)), ensure_ascii=False) + "\n"
                           for rec in recommendations)
        else:
            text = render_html(self, recommendations)
        if output is not None:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            Path(output).write_text(text, encoding="utf-8")
        return text


def _check_encoders(config, header: dict, path: Path) -> None:
    """Before any cache is built: the configured encoders must be the ones the model file was trained on."""
    from recbole_pmmrec.data.features import modality_encoder
    from recbole_pmmrec.settings import settings_of
    from recbole_pmmrec.transfer import identity_differences

    s = settings_of(config)
    for modality, saved in (header.get("encoders") or {}).items():
        encoder = modality_encoder(s, modality)
        own = encoder.identity()
        del encoder
        detail = identity_differences(saved, own, "model file", "now")
        if detail:
            raise PMMRecCheckpointError(
                f"the {modality} encoder configured now ({own.get('encoder')}) is not the one model file '{path}' "
                f"was trained with ({saved.get('encoder')}): {detail}. Use the same {modality}_encoder (and "
                f"weights) as the model file's pmmrec.json says")


# --------------------------------------------------------------------------------------------
# html page
# --------------------------------------------------------------------------------------------


def thumbnail_data_uri(path: Path | None, size: int = 96) -> str | None:
    """A small base64 JPEG of an image file (None when it cannot be read)."""
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except Exception:  # an unreadable poster: the card shows no image
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.05em;margin:1.2em 0 .4em}
.row{display:flex;flex-wrap:wrap;gap:.6em}.card{width:120px;border:1px solid #ddd;border-radius:6px;padding:.4em;
font-size:.8em;position:relative}.card img{width:96px;height:96px;object-fit:cover;display:block;margin:auto}
.noimg{width:96px;height:96px;background:#eee;margin:auto}.new{position:absolute;top:2px;right:2px;background:#d33;
color:#fff;border-radius:3px;padding:0 4px;font-size:.75em}.label{color:#777;font-size:.8em;margin:.3em 0}
.score{color:#777}.history .card{opacity:.8}"""


def render_html(recommender: Recommender, recommendations: Sequence[Recommendation], history_items: int = 5) -> str:
    """One static page: per user the last items of the history and the top-k, each with a thumbnail (embedded
    JPEG) where there is one, its title, and a mark on new items."""
    cache: dict[str, str | None] = {}

    def card(item: str, extra: str = "") -> str:
        if item not in cache:
            cache[item] = thumbnail_data_uri(recommender.image_path(item))
        title = recommender.title(item) or item
        image = (f'<img src="{cache[item]}" alt="{html.escape(title)}">' if cache[item]
                 else '<div class="noimg"></div>')
        badge = '<span class="new">new</span>' if recommender.is_new(item) else ""
        return (f'<div class="card" data-item="{html.escape(item)}">{badge}{image}'
                f'<div class="title">{html.escape(title)}</div>{extra}</div>')

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Recommendations</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Recommendations: {html.escape(str(recommender.config['dataset']))}</h1>"]
    for rec in recommendations:
        parts.append(f'<section class="user" data-user="{html.escape(rec.user)}"><h2>{html.escape(rec.user)}</h2>')
        parts.append(f'<div class="label">last {min(history_items, len(rec.history))} of history</div>'
                     f'<div class="row history">' + "".join(card(t) for t in rec.history[-history_items:]) + "</div>")
        parts.append('<div class="label">recommended</div><div class="row top">' + "".join(
            card(item, f'<div class="score">#{r} &middot; {score:.3f}</div>')
            for r, (item, score) in enumerate(zip(rec.items, rec.scores), 1)) + "</div></section>")
    parts.append("</body></html>\n")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, dict]:
    p = argparse.ArgumentParser(prog="python -m recbole_pmmrec.recommend",
                                description="Top-k recommendations from a trained PMMRec (any other --key=value is "
                                            "a config override, e.g. --cache_dir=DIR or --exclude_history=False)")
    p.add_argument("--model_file", required=True, help="a save_pretrained folder, or a RecBole NAME.pth")
    p.add_argument("--data_path", help="folder that holds the data set's folder")
    p.add_argument("--dataset", help="data set name (default: the model file's)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", help="comma-separated user ids of the data set")
    who.add_argument("--history", action="append", help="space-separated item ids, oldest first (repeatable)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--candidates", help="comma-separated item ids: rank only these")
    p.add_argument("--split", choices=list(SPLITS), default="all")
    p.add_argument("--new_items", help="folder with a table of new items (.item/.tsv) and their images")
    p.add_argument("--format", choices=FORMATS, default="tsv")
    p.add_argument("--output", help="write here instead of stdout")
    p.add_argument("--strict", action="store_true", help="unknown items in a history are an error")
    p.add_argument("--trust_pickle", action="store_true", help="allow unpickling a .pth you trust")
    p.add_argument("--checkpoint_dir", help="your own training's checkpoint folder (its .pth files are trusted)")
    p.add_argument("--allow_other_dataset", action="store_true", help="rank another data set than the model's")
    args, rest = p.parse_known_args(argv)
    overrides = {}
    for item in rest:
        if not item.startswith("--") or "=" not in item:
            p.error(f"unrecognised argument {item!r} (config overrides are --key=value)")
        key, value = item[2:].split("=", 1)
        overrides[key] = _parse_value(value)
    return args, overrides


def main(argv: Sequence[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    try:
        recommender = Recommender.load(args.model_file, data_path=args.data_path, dataset=args.dataset,
                                       trust_pickle=args.trust_pickle, checkpoint_dir=args.checkpoint_dir,
                                       allow_other_dataset=args.allow_other_dataset, **overrides)
        if args.new_items:
            recommender.add_items(args.new_items)
        common = dict(k=args.k, strict=args.strict,
                      candidates=args.candidates.split(",") if args.candidates else None)
        if args.users:
            recs = recommender.recommend(users=[u for u in args.users.split(",") if u], split=args.split, **common)
        else:
            recs = recommender.recommend(histories=[h.split() for h in args.history], **common)
        text = recommender.write(recs, args.format, args.output)
    except PMMRecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {len(recs)} users' top-{args.k} to {args.output}", file=sys.stderr)
    return 0


__all__ = ["Recommender", "Recommendation", "topk_by_id", "render_html",
           "main"]

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
