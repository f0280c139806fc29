"""The plugin's ``Config``: RecBole's configurator with the plugin's yaml layers added.

Merge order, later wins::

    recbole overall (+ recbole's sample dataset defaults) < plugin overall < recbole model < plugin model
      < recbole dataset (+ recbole's model-type quick-start file) < plugin dataset
      < config files < config_dict < command line

The plugin's defaults live in ``properties/`` (``overall.yaml``, ``model/NAME.yaml``,
``dataset/NAME.yaml``).
"""

from __future__ import annotations

import os
from pathlib import Path

import recbole_pmmrec  # noqa: F401  (applies the compatibility fixes first)
from recbole.config import Config as RecBoleConfig
from recbole.utils import ModelType

from recbole_pmmrec.errors import PMMRecConfigError


def properties_dir() -> Path:
    """The folder that holds the plugin's yaml defaults."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "properties", here / "properties"):
        if (candidate / "overall.yaml").is_file():
            return candidate
    raise PMMRecConfigError(
        f"cannot find the plugin's properties/overall.yaml next to {here}; reinstall with `pip install -e .`"
    )


import recbole as _recbole  # noqa: E402

RECBOLE_PROPERTIES = Path(_recbole.__file__).resolve().parent / "properties"


class Config(RecBoleConfig):
    """RecBole ``Config`` that knows the plugin's models and yaml defaults."""

    def _get_model_and_dataset(self, model, dataset):
        from recbole_pmmrec.utils import get_model

        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise PMMRecConfigError("no model given: pass --model=NAME (for example --model=PMMRec)")
        if isinstance(model, str):
            model_class, model_name = get_model(model), model
        else:
            model_class, model_name = model, model.__name__
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise PMMRecConfigError("no dataset given: pass --dataset=NAME (for example --dataset=ml-100k)")
        return model_name, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        ours = properties_dir()
        rb = RECBOLE_PROPERTIES
        self.internal_config_dict = {}
        for file in (
            rb / "overall.yaml",
            rb / "dataset" / "sample.yaml",
            ours / "overall.yaml",
            rb / "model" / f"{model}.yaml",
            ours / "model" / f"{model}.yaml",
            rb / "dataset" / f"{dataset}.yaml",
        ):
            self._load_layer(file, dataset_keys=file.parent.name == "dataset")
        self.internal_config_dict["MODEL_TYPE"] = model_class.type
        for file in self._model_type_files(model, model_class.type, dataset):
            self._load_layer(file)
        self._load_layer(ours / "dataset" / f"{dataset}.yaml", dataset_keys=True)

    def _load_layer(self, file: Path, dataset_keys: bool = False) -> None:
        if not file.is_file():
            return
        config_dict = self._update_internal_config_dict(str(file))
        if dataset_keys and config_dict:
            self.parameters["Dataset"] += [k for k in config_dict if k not in self.parameters["Dataset"]]

    @staticmethod
    def _model_type_files(model: str, model_type, dataset: str) -> list[Path]:
        """RecBole's per-model-type defaults (``properties/quick_start_config``), as RecBole picks them."""
        qs = RECBOLE_PROPERTIES / "quick_start_config"
        on_ml100k = dataset == "ml-100k"
        if model_type in {ModelType.CONTEXT, ModelType.DECISIONTREE}:
            return [qs / "context-aware.yaml"] + ([qs / "context-aware_ml-100k.yaml"] if on_ml100k else [])
        if model_type == ModelType.KNOWLEDGE:
            return [qs / "knowledge_base.yaml"]
        if model_type != ModelType.SEQUENTIAL:
            return []
        if model in ("DIN", "DIEN"):
            return [qs / "sequential_DIN.yaml"] + ([qs / "sequential_DIN_on_ml-100k.yaml"] if on_ml100k else [])
        if model in ("GRU4RecKG", "KSR"):
            return [qs / "sequential_embedding_model.yaml"]
        files = [qs / "sequential.yaml"]
        if on_ml100k and model in ("GRU4RecF", "SASRecF", "FDSA", "S3Rec"):
            files.append(qs / "special_sequential_on_ml-100k.yaml")
        return files

    def _set_default_parameters(self):
        super()._set_default_parameters()
        for key, default in (("log_dir", "./log"), ("tensorboard_dir", "./log_tensorboard")):
            if self.final_config_dict.get(key) is None:
                self.final_config_dict[key] = default
        self.final_config_dict["log_dir"] = os.fspath(self.final_config_dict["log_dir"])
