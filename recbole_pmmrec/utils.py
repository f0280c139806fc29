"""Factories that try the plugin first and fall back to RecBole (the RecBole-GNN pattern)."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from recbole_pmmrec import compat

compat.apply()  # before recbole is imported

from recbole.data import create_dataset as recbole_create_dataset  # noqa: E402
from recbole.data import data_preparation as recbole_data_preparation  # noqa: E402
from recbole.utils import ModelType  # noqa: E402
from recbole.utils import get_model as recbole_get_model  # noqa: E402
from recbole.utils import get_trainer as recbole_get_trainer  # noqa: E402

from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError  # noqa: E402

# Models this plugin adds: name -> "module:attribute".
PLUGIN_MODELS = {"PMMRec": "recbole_pmmrec.model.pmmrec:PMMRec",
                 "ContentKNN": "recbole_pmmrec.model.content_knn:ContentKNN"}

logger = logging.getLogger(__name__)


def _import(target: str):
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def _recbole_model_modules() -> dict[str, str]:
    """RecBole's model modules: lower-case file name -> submodule."""
    import recbole.model as rm

    root = Path(rm.__file__).parent
    return {p.stem: sub for sub in ("general_recommender", "sequential_recommender", "context_aware_recommender",
                                    "knowledge_aware_recommender", "exlib_recommender")
            for p in (root / sub).glob("*.py") if not p.stem.startswith("_")}


def get_model(model_name: str):
    """The model class for ``model_name``: the plugin's own, else RecBole's."""
    if model_name in PLUGIN_MODELS:
        return _import(PLUGIN_MODELS[model_name])
    if model_name.lower() in _recbole_model_modules():
        try:
            return recbole_get_model(model_name)
        except AttributeError:  # right module, wrong case: recbole looks the class up by exact name
            pass
    raise PMMRecConfigError(
        f"unknown model '{model_name}'. Plugin models: {', '.join(sorted(PLUGIN_MODELS))}; or a RecBole model "
        f"class name spelled exactly as RecBole does (SASRec, GRU4Rec, BERT4Rec, FDSA, SASRecF, Pop, ...)."
    )


def get_trainer(model_type, model_name: str):
    """The trainer class: the plugin's ``<Model>Trainer`` if there is one, else RecBole's, made safe to
    reload its own checkpoints on torch >= 2.6."""
    from recbole_pmmrec import trainer as plugin_trainers

    own = getattr(plugin_trainers, f"{model_name}Trainer", None)
    if own is not None:
        return own
    return plugin_trainers.with_own_checkpoint_loading(recbole_get_trainer(model_type, model_name))


def dataset_files_hint(config) -> str:
    return (
        f"Put RecBole atomic files at {os.path.join(config['data_path'], config['dataset'] + '.inter')} "
        f"(data_path={config['data_path']!r}), or convert raw data first: "
        f"python -m dataset_tools.convert FORMAT --input PATH --output DIR --name {config['dataset']} "
        f"and pass --data_path=DIR. The bundled 'ml-100k' always works."
    )


def check_dataset_exists(config) -> None:
    """RecBole would try to download a missing dataset; there is no network here, so say so clearly."""
    inter = Path(config["data_path"]) / f"{config['dataset']}.inter"
    if not inter.is_file():
        raise PMMRecDataError(f"dataset '{config['dataset']}' not found: {inter} does not exist. "
                              + dataset_files_hint(config))


def create_dataset(config):
    """The plugin's dataset class for plugin models (``<Model>Dataset``), else RecBole's."""
    check_dataset_exists(config)
    try:
        return _create_dataset(config)
    except ValueError as exc:
        if "feat is empty" not in str(exc):
            raise
        raise PMMRecDataError(
            f"dataset '{config['dataset']}' has no interactions left after loading and filtering "
            f"({config['data_path']}); check its .inter file and the filters (user_inter_num_interval, "
            f"item_inter_num_interval, val_interval)") from None


def _create_dataset(config):
    if getattr(get_model(config["model"]), "uses_item_content", False):  # PMMRec, ContentKNN
        from recbole_pmmrec.data import PMMRecDataset

        return PMMRecDataset(config)
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and _uses_split_variants(config):
        from recbole_pmmrec.data.splits import PluginSequentialDataset

        return PluginSequentialDataset(config)
    return recbole_create_dataset(config)


def _uses_split_variants(config) -> bool:
    few_shot = config["few_shot_ratio"] is not None and config["few_shot_ratio"] < 1.0
    return bool(config["train_window"]) or bool(config["cold_item_ratio"]) or few_shot


def data_preparation(config, dataset):
    """Plugin datasets bring their own split and dataloaders; everything else goes to RecBole."""
    if hasattr(dataset, "data_preparation"):
        return dataset.data_preparation()
    return recbole_data_preparation(config, dataset)
