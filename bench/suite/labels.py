"""What each label of the suite runs: a model and its config overrides of the properties' defaults.

Only settings the package has today are here. A run already in bench/results keeps its own ``label`` and
``spec`` (with every override it was made with), so the report shows it without this registry:
``overrides_of(spec)`` recovers its keys, and ``is_current(run)`` tells whether it is the label's setting of
today (its overrides equal the label's here) or history.
"""

from __future__ import annotations

import functools
from pathlib import Path

from bench.suite.results import REPO

DATASET = "ml100k-posters"
SEEDS = [2020, 2021, 2022]
# cold start: each seed has only ~87 cold test rows on ml100k-posters, so --seed-list may add these (the
# report pools every seed of a label and shows how many)
COLD_EXTRA_SEEDS = [2023, 2024]

# The PMMRec labels of the table: ablations of the default (text + image, frozen encoders with cached
# states, NIP + NICL + NID), each label's suffix -> its keys.
SUITE = {
    "": {},
    # one modality: projection ~ resolves to mlp since 0.6; named here so that the older linear runs are history
    " text-only": {"modalities": ["text"], "projection": "mlp"},
    # 19 movies have no poster: they keep a zero item vector (counted in the run's log), so that image-only is
    # ranked over the same candidates as every other model
    " image-only": {"modalities": ["image"], "contentless_items": "zero", "projection": "mlp"},
    " w/o NICL": {"w_nicl": 0.0},
    " w/o NID": {"w_nid": 0.0},
    " with RCL": {"w_rcl": 0.1},  # the paper's fourth objective (the default before 2026-11-30)
}
PMMREC = {"PMMRec" + suffix: keys for suffix, keys in SUITE.items()}
# settings tried against the default (not in the table)
PMMREC.update({
    "PMMRec coarse fusion": {"image_grid": 1, "text_groups": 1},  # one token per modality enters the fusion
    "PMMRec mlp": {"projection": "mlp"},  # more item-tower capacity
    # tried on MicroLens-50K (19,220 items, where the in-batch softmax sees a small share of the catalogue per step)
    "PMMRec text-only CE": {"modalities": ["text"], "loss_type": "CE", "projection": "linear"},  # full softmax
    # issue 22's levers, tried on the text data sets (the data's own modalities and projection, one key changed)
    "PMMRec with item ID": {"item_id_embedding": True},  # UniSRec's transductive mode: warm items add an ID row
    "PMMRec CE": {"loss_type": "CE"},  # full-catalogue softmax instead of the in-batch one
    # the ID row with SASRec's loss: every item's row a negative at every step (the in-batch softmax gives a row
    # gradient only when its item is in the batch)
    "PMMRec with item ID CE": {"item_id_embedding": True, "loss_type": "CE"},
    # new items (no ID row) borrow the mean ID row of their 10 nearest warm items by content: does the ID model then
    # rank new items as the ID-free one does? (an evaluation-time rule: training is the same as "with item ID")
    "PMMRec with item ID neighbours": {"item_id_embedding": True, "item_id_neighbours": 10},
    # DropoutNet: in training a fifth of a batch's items go without their ID row, so the model keeps scoring by
    # content (as it must for new items) and the rows overfit less (the ID model peaks by epoch 2-3). 0.5 was
    # tried during 0.6 (64 windows, no skip), on warm items only, and lost 1.5% on seqrec-toys (one seed)
    "PMMRec with item ID dropout 0.2": {"item_id_embedding": True, "item_id_dropout": 0.2},
    # the ID rows at 0.3x the learning rate: the ID model peaks by epoch 2-3, long before its content part would
    "PMMRec with item ID lr 0.0003": {"item_id_embedding": True, "item_id_learning_rate": 0.0003},
    # the ID row of an item with n training interactions at n / (n + 5): rare items' rows are the ones to overfit
    "PMMRec with item ID shrink 5": {"item_id_embedding": True, "item_id_shrink": 5.0},
    "PMMRec with item ID dropout 0.2 neighbours": {"item_id_embedding": True, "item_id_dropout": 0.2,
                                                   "item_id_neighbours": 10},
    "PMMRec batch 256": {"train_batch_size": 256},  # 4x the in-batch negatives (short histories: few per batch)
    # either side of what train_batch_size ~ gives on short histories (256): is the rule's aim of 1,280 targets right?
    "PMMRec batch 128": {"train_batch_size": 128},
    "PMMRec batch 512": {"train_batch_size": 512},
    "PMMRec d128": {"hidden_size": 128, "inner_size": 512},
    "PMMRec d128 w/o NID": {"hidden_size": 128, "inner_size": 512, "w_nid": 0.0},  # the two levers together
    # the same two levers where text is one of the data's modalities (ml100k-posters' text alone) and with the ID row
    "PMMRec text-only d128 w/o NID": {"modalities": ["text"], "projection": "mlp", "hidden_size": 128,
                                      "inner_size": 512, "w_nid": 0.0},
    "PMMRec with item ID d128 w/o NID": {"item_id_embedding": True, "hidden_size": 128, "inner_size": 512,
                                         "w_nid": 0.0},
    # the next width (text alone: the 0.7 default is d 128 without NID, so this changes only the widths there)
    "PMMRec d256": {"hidden_size": 256, "inner_size": 1024},
    # the widths and NID weight of 0.6 (before hidden_size ~ / w_nid ~ followed text alone): the old default on text
    "PMMRec d64 with NID": {"hidden_size": 64, "inner_size": 256, "w_nid": 0.1},
    # mixed negative sampling: 2,048 items drawn uniformly per step join the in-batch candidates (short histories
    # give few in-batch negatives against a large catalogue)
    "PMMRec negatives 2048": {"nip_negatives": 2048},
    # the ID row overfits within a few epochs (seqrec-toys, MicroLens): SASRec's dropout (RecBole's default 0.5)
    "PMMRec with item ID dropout 0.5": {"item_id_embedding": True, "hidden_dropout_prob": 0.5},
    # w * cos(recent history, item) in the frozen space added to the learned score (ContentKNN's signal), w from 5
    "PMMRec content skip": {"content_skip": 5.0},
    # one frozen modality's pooled states centred / whitened with the catalogue's statistics (text-only data sets)
    "PMMRec whiten center": {"whiten": "center"},
    "PMMRec whiten zca": {"whiten": "zca"},
    "PMMRec text-only whiten zca": {"modalities": ["text"], "projection": "mlp", "whiten": "zca"},
    "PMMRec with item ID whiten zca": {"item_id_embedding": True, "whiten": "zca"},
    # the ID-free text model peaks within 5-6 epochs and then declines (seqrec-toys): slower steps, more dropout,
    # a shallower or deeper user encoder
    "PMMRec lr 5e-4": {"learning_rate": 0.0005},
    "PMMRec dropout 0.3": {"hidden_dropout_prob": 0.3, "attn_dropout_prob": 0.3},
    "PMMRec dropout 0.5": {"hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5},  # RecBole's SASRec default
    # 0.8: the dropout ~ gives frozen, cached text alone is 0.3; these name the 0.7 value on such data
    "PMMRec dropout 0.1": {"hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1},
    "PMMRec with item ID dropout 0.1": {"item_id_embedding": True, "hidden_dropout_prob": 0.1,
                                        "attn_dropout_prob": 0.1},
    "PMMRec text-only dropout 0.1": {"modalities": ["text"], "projection": "mlp", "hidden_dropout_prob": 0.1,
                                     "attn_dropout_prob": 0.1},
    "PMMRec text-only dropout 0.3": {"modalities": ["text"], "projection": "mlp", "hidden_dropout_prob": 0.3,
                                     "attn_dropout_prob": 0.3},  # the same on a text + image data set's text
    "PMMRec 1 layer": {"n_layers": 1},
    # the same on a text + image data set's text (ml100k-posters)
    "PMMRec text-only 1 layer": {"modalities": ["text"], "projection": "mlp", "n_layers": 1},
    "PMMRec 3 layers": {"n_layers": 3},
    # data whose users repeat items (exclude_history ~ decides False): the items a user had before each target as
    # NIP negatives of it (the ranking then holds them), and the history removed from the ranking anyway
    "PMMRec history negatives": {"nip_history_negatives": True},
    "PMMRec exclude history": {"exclude_history": True},
    # cosine scores over a temperature (UniSRec's, SimpleX's) instead of dot products: no popularity in vector lengths
    "PMMRec cosine 0.05": {"score_tau": 0.05},
    "PMMRec cosine 0.1": {"score_tau": 0.1},
    "PMMRec cosine 0.2": {"score_tau": 0.2},
    "PMMRec with item ID cosine 0.05": {"item_id_embedding": True, "score_tau": 0.05},
    "PMMRec with item ID cosine 0.1": {"item_id_embedding": True, "score_tau": 0.1},
    # 0.8: score_tau ~ is 0.1 with the item ID on frozen, cached text alone; these name the dot products of 0.8
    # there (on data with images score_tau ~ stays 0, so they never match a run there)
    "PMMRec with item ID dot products": {"item_id_embedding": True, "score_tau": 0.0},
    # 0.9: the content skip's cosine in ContentKNN zca's geometry (its principal directions scaled to about unit
    # variance), on the top 64 directions or all 384 of MiniLM's (ContentKNN zca on seqrec-toys: 0.0376 / 0.0487)
    "PMMRec skip zca": {"knn_whiten": "zca"},
    "PMMRec skip zca 384": {"knn_whiten": "zca", "content_skip_dim": 384},
    "PMMRec with item ID skip zca 384": {"item_id_embedding": True, "knn_whiten": "zca", "content_skip_dim": 384},
    # 0.9: MiniLM's top block trains (over the cached states of the five below it), with the rest of the text
    # defaults set explicitly (a trainable block turns the frozen-text rules off; whiten needs frozen pooled states,
    # so it is raw; the skip reads the frozen fifth block's pooled states)
    "PMMRec text block 1": {"text_train_layers": 1, "hidden_size": 128, "inner_size": 512, "w_nid": 0.0,
                            "hidden_dropout_prob": 0.3, "attn_dropout_prob": 0.3, "content_skip": 5.0},
    "PMMRec with item ID neighbours dot products": {"item_id_embedding": True, "item_id_neighbours": 10,
                                                    "score_tau": 0.0},
    "PMMRec with item ID dropout 0.2 neighbours dot products": {"item_id_embedding": True, "item_id_dropout": 0.2,
                                                                "item_id_neighbours": 10, "score_tau": 0.0},
})
# 0.9: score_tau ~ is 0.1 (cosine scores) on frozen, cached text alone, with or without the ID. "X dot products"
# names label X as it ran before that on such data (its stored runs were stamped score_tau 0), for every PMMRec label
# that does not set score_tau itself (the explicit ones above keep their keys)
PMMREC.update({f"{label} dot products": {**keys, "score_tau": 0.0} for label, keys in list(PMMREC.items())
               if "score_tau" not in keys and f"{label} dot products" not in PMMREC})
BASELINES = {
    "SASRec": {},
    "GRU4Rec": {},
    "BERT4Rec": {},
    "FDSA": {"selected_features": ["genres"], "pooling_mode": "mean"},
    "Pop": {},
    "ContentKNN": {},  # the training-free floor (plugin model, same content cache as PMMRec)
    # the same on whitened content vectors (why PMMRec with random weights and cosine scores beat ContentKNN zero-shot)
    "ContentKNN zca": {"knn_whiten": "zca"},
}
# models with nothing to train: one epoch (one validation) whatever --max-epochs says; more only repeat it, and a
# time budget would then stop a run that cannot improve (ContentKNN's yaml has epochs: 0, RecBole's fit needs 1)
TRAINING_FREE = frozenset({"ContentKNN"})
# baselines whose early stopping and checkpoint follow validation NDCG@10 with the input history removed (the rule
# PMMRec ranks by) instead of RecBole's score; the label's model is the part before the first space
SELECT = {"SASRec hr-selected": "history_removed"}
BASELINES.update({label: dict(BASELINES[label.split(" ")[0]]) for label in SELECT})
QUALITY_ORDER = ["PMMRec", "SASRec", "SASRec hr-selected", "PMMRec text-only", "GRU4Rec", "FDSA", "PMMRec image-only",
                 "ContentKNN", "Pop", "PMMRec w/o NICL", "PMMRec w/o NID", "PMMRec with RCL", "BERT4Rec"]
COLD_ORDER = ["PMMRec", "SASRec", "PMMRec text-only", "GRU4Rec", "FDSA", "PMMRec image-only", "BERT4Rec"]
# keys every run of a part sets (paths, budget, seed, the part's protocol): not a model setting
RUN_KEYS = frozenset({"data_path", "checkpoint_dir", "log_dir", "tensorboard_dir", "cache_dir", "show_progress",
                      "epochs", "stopping_step", "state", "seed", "threads", "cold_item_ratio"})


# Labels renamed when a default changed: a stored run under the old label whose settings are today's label's counts
# as today's (0.6: projection ~ is mlp for one modality, so "text-only mlp" is today's "text-only"; whiten ~ is zca
# for one frozen, cached text modality, so "whiten zca" on text-only data is today's label without it).
RENAMED_LABELS = {"PMMRec text-only mlp": "PMMRec text-only", "PMMRec image-only mlp": "PMMRec image-only",
                  "PMMRec whiten zca": "PMMRec", "PMMRec text-only whiten zca": "PMMRec text-only",
                  "PMMRec with item ID whiten zca": ("PMMRec with item ID", "PMMRec with item ID dot products"),
                  # 0.6: train_batch_size ~ is 256 on short histories, so "batch 256" there is today's default
                  "PMMRec batch 256": "PMMRec",
                  # 0.6: content_skip ~ is 5.0 for frozen, cached text alone, so "content skip" there is today's default
                  "PMMRec content skip": "PMMRec",
                  # 0.7: hidden_size ~ is 128 (inner_size 4x) and w_nid ~ is 0 for frozen, cached text alone, so
                  # "d128 w/o NID" there is today's label without it
                  # (0.8: unless stamped with the dropout 0.1 they ran with, below)
                  "PMMRec d128 w/o NID": ("PMMRec", "PMMRec dropout 0.1"),
                  "PMMRec with item ID d128 w/o NID": ("PMMRec with item ID", "PMMRec with item ID dropout 0.1",
                                                       "PMMRec with item ID dot products"),
                  "PMMRec text-only d128 w/o NID": ("PMMRec text-only", "PMMRec text-only dropout 0.1"),
                  # and a 0.6 default run on text alone (stamped with the widths and NID weight it ran with) is the
                  # label that names them; a 0.7 one (stamped with dropout 0.1) the label that names that
                  "PMMRec": ("PMMRec d64 with NID", "PMMRec dropout 0.1"),
                  "PMMRec with item ID": ("PMMRec with item ID dropout 0.1", "PMMRec with item ID dot products"),
                  "PMMRec text-only": "PMMRec text-only dropout 0.1",
                  # 0.8: hidden_dropout_prob / attn_dropout_prob ~ are 0.3 for frozen, cached text alone, so
                  # "dropout 0.3" there is today's label without it
                  "PMMRec dropout 0.3": "PMMRec", "PMMRec text-only dropout 0.3": "PMMRec text-only",
                  # 0.8: score_tau ~ is 0.1 with the item ID on frozen, cached text alone, so "with item ID cosine
                  # 0.1" there is today's "with item ID"; a 0.8 ID run there (stamped score_tau 0) names its dot
                  # products (and on data with images, where ~ stays 0, keeps its label)
                  "PMMRec with item ID cosine 0.1": "PMMRec with item ID",
                  # 0.9: score_tau ~ is 0.1 on frozen, cached text alone without the ID too, so "cosine 0.1" there is
                  # today's default (on data with images, where ~ stays 0, it keeps its label)
                  "PMMRec cosine 0.1": "PMMRec",
                  "PMMRec with item ID neighbours": "PMMRec with item ID neighbours dot products",
                  "PMMRec with item ID dropout 0.2 neighbours":
                      "PMMRec with item ID dropout 0.2 neighbours dot products"}
# The suite's data sets with images (modalities ~ is text + image there); every other one is text only.
IMAGE_DATASETS = frozenset({"ml100k-posters", "ml1m-posters"})


def canonical_label(run: dict) -> str:
    """A stored run's label under today's registry: RENAMED_LABELS applied where the settings match (an old label
    may have several new ones, one per default change; the first whose settings match wins). Each candidate, and
    the label itself, is also tried as "... dot products" (a run stamped with the dot products it ran with before
    score_tau ~ became 0.1 on text alone)."""
    label, spec = run.get("label"), run.get("spec") or {}
    candidates = RENAMED_LABELS.get(label) or ()
    overrides = overrides_of(spec)
    for new in ((candidates,) if isinstance(candidates, str) else tuple(candidates)) + (label,):
        for name in (new, f"{new} dot products"):
            if name in PMMREC and overrides == model_of(name)[1]:
                return name
    return label


def model_of(label: str) -> tuple[str, dict]:
    """(model name, config overrides) of a label of the registry."""
    if label in PMMREC:
        return "PMMRec", dict(PMMREC[label])
    return label.split(" ")[0], dict(BASELINES[label])


# DATA_DEFAULTS keys that data_defaults_of leaves out: a stored run's explicit ``projection`` stays an override (the
# suite's one-modality labels name it, and counting it as a default would change which stored runs match them)
NOT_DATA_DEFAULTS = frozenset({"projection"})


def data_defaults_of(spec: dict) -> dict:
    """What the ``~`` keys that follow the modalities and encoders resolve to for a stored PMMRec run, by the
    package's own rules (``item_tower.DATA_DEFAULTS``, less ``NOT_DATA_DEFAULTS``: ``whiten`` and ``content_skip``
    since 0.6, ``hidden_size``, ``inner_size`` and ``w_nid`` since 0.7, the two dropouts and ``score_tau`` since 0.8)
    on the run's modalities (its ``modalities``, else the data set's), encoder keys and ``item_id_embedding``."""
    from types import SimpleNamespace

    from recbole_pmmrec.model.item_tower import DATA_DEFAULTS

    cfg = spec.get("config") or {}
    modalities = list(cfg.get("modalities") or (["text", "image"] if spec.get("dataset", DATASET) in IMAGE_DATASETS
                                                else ["text"]))
    settings = SimpleNamespace(encoder_mode=cfg.get("encoder_mode") or "cached",
                               item_id_embedding=bool(cfg.get("item_id_embedding")),
                               text_train_layers=cfg.get("text_train_layers") or 0,
                               image_train_layers=cfg.get("image_train_layers") or 0)
    out = {}
    for key, (rule, _) in DATA_DEFAULTS.items():  # in order: a rule may read a key decided before it (inner_size
        setattr(settings, key, rule(settings, modalities))  # from the default hidden_size, not the run's)
        if key not in NOT_DATA_DEFAULTS:
            out[key] = getattr(settings, key)
    return out


def overrides_of(spec: dict) -> dict:
    """The model settings a run was made with, against today's defaults: its spec's config without the keys every
    run sets, and without a ``whiten`` or ``content_skip`` equal to what today's default resolves to for it
    (``data_defaults_of``), nor a key equal to what today's ``~`` resolved to on the run's data
    (``spec["resolved"]``: ``train_batch_size``, ``content_skip``). (PMMRec runs made before a default changed
    carry the value they ran with in their stored spec: ``whiten: raw``, ``train_batch_size: 64``,
    ``content_skip: 0.0``.)"""
    out = {k: v for k, v in sorted((spec.get("config") or {}).items()) if k not in RUN_KEYS}
    if spec.get("model") == "PMMRec":
        for key, value in data_defaults_of(spec).items():
            if key in out and out[key] == value:
                del out[key]
    for key, value in (spec.get("resolved") or {}).items():  # what ~ resolved to for this run's data
        if key in out and out[key] == value:
            del out[key]
    return out


def is_current(run: dict) -> bool:
    """Whether a stored run is its label's setting of today: the label is in the registry and the run's overrides
    are the label's (older runs of a relabelled or removed setting are history)."""
    label, spec = run.get("label"), run.get("spec") or {}
    if label not in PMMREC and label not in BASELINES:
        return False
    model, keys = model_of(label)
    return spec.get("model") == model and overrides_of(spec) == keys and spec.get("select") == SELECT.get(label)


def run_label(run: dict) -> str:
    """A run's row: its label, plus " on DATASET" for a run on another data set than the suite's."""
    label = run.get("label", run["spec"]["model"])
    dataset = run["spec"].get("dataset", DATASET)
    return label if dataset == DATASET else f"{label} on {dataset}"


@functools.lru_cache(maxsize=None)
def _model_properties(model: str) -> dict:
    """A model's defaults, read once: RecBole's own ``properties/model/<model>.yaml`` (a RecBole baseline's),
    overlaid by the plugin's ``properties/model/<model>.yaml``; empty where neither has the model. A string that
    reads as a number (YAML 1.1 leaves ``1e-12`` a string; RecBole's loader makes it a float) becomes that number."""
    import recbole
    import yaml  # a dependency of recbole

    def number(value):
        try:
            return float(value) if isinstance(value, str) else value
        except ValueError:
            return value

    values = {}
    for folder in (Path(recbole.__file__).parent, REPO):
        path = folder / "properties" / "model" / f"{model}.yaml"
        if path.is_file():
            values.update({k: number(v) for k, v in (yaml.safe_load(path.read_text()) or {}).items()})
    return values


def today_default(spec: dict, key: str):
    """What a run like ``spec`` would get for ``key`` today if it did not set it: the data rule's value
    (``data_defaults_of``) where one decides the key, else the model's properties file."""
    resolved = data_defaults_of(spec) if spec.get("model") == "PMMRec" else {}
    if key in resolved:
        return resolved[key]
    return _model_properties(spec.get("model")).get(key)


def stamp(runs: list[dict], model: str, values: dict, digest, where: dict | None = None,
          every_digest: bool = False) -> list[tuple[dict, dict]]:
    """After a default changes: give each stored ``model`` run made with the older defaults (its ``defaults``
    differs from ``digest(model, dataset)``; with ``every_digest`` any run, for a default that changed in the code
    rather than in the properties files) the old ``values`` it ran with, as explicit keys of its spec, so the
    report keeps telling it apart from today's default. ``where`` (key -> value) limits it to the runs with those
    settings (a key the run did not set counts as today's default for it). A run that set a key itself keeps its
    own value, and a key whose default today is still the old value (on that run's data) is left out. Changes
    ``runs`` in place and returns (run, keys added) for each run changed."""
    digest = functools.cache(digest)  # one digest per data set (it reads the properties files)
    changed = []
    for run in runs:
        spec = run.get("spec") or {}
        if spec.get("model") != model or run.get("defaults") is None:
            continue
        if not every_digest and run.get("defaults") == digest(model, spec.get("dataset", DATASET)):
            continue
        cfg = spec.get("config") or {}
        if any(cfg.get(k, today_default(spec, k)) != v for k, v in (where or {}).items()):
            continue
        added = {k: v for k, v in values.items() if k not in cfg and today_default(spec, k) != v}
        if added:
            spec["config"] = {**cfg, **added}
            changed.append((run, added))
    return changed
