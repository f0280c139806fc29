"""The plugin's ``Config``: RecBole's configurator with the plugin's yaml layers added.

Merge order, later wins::

    recbole overall (+ recbole's sample dataset defaults) < plugin overall < recbole model < plugin model
      < recbole dataset (+ recbole's model-type quick-start file) < plugin dataset
      < config files < config_dict < command line

The plugin's defaults live in ``properties/`` (``overall.yaml``, ``model/NAME.yaml``,
``dataset/NAME.yaml``).

A key given in a config file, the config dict or on the command line that neither RecBole nor the plugin
knows (no yaml default, no ``config[...]`` read in their code) is logged as a warning that names the
nearest known key (``config.unknown_keys``): a typo would otherwise be ignored silently.

Every key the plugin reads is then parsed and checked once (:mod:`recbole_pmmrec.settings`): the typed
values are written back into the config and kept as ``config.settings``; a wrong type or range is a
``PMMRecConfigError`` naming the key, the value and what is allowed.

With ``local_rank`` set (a worker of ``nproc > 1``), ``_init_device`` joins the process group through
:func:`recbole_pmmrec.collectives.init_process_group` (``gloo`` on CPU as well as RecBole's ``nccl``).
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from pathlib import Path

from recbole_pmmrec import compat

compat.apply()  # before recbole is imported: recbole 1.2.1 needs the numpy aliases at import time

from recbole.config import Config as RecBoleConfig  # noqa: E402
from recbole.utils import ModelType  # noqa: E402

from recbole_pmmrec.collectives import init_process_group  # noqa: E402
from recbole_pmmrec.errors import PMMRecConfigError  # noqa: E402
from recbole_pmmrec.settings import KEY, RENAMED, REMOVED, Settings  # noqa: E402


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

logger = logging.getLogger(__name__)

# Keys RecBole's Config sets itself, and keys of a distributed run.
_INTERNAL_KEYS = {"model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "device", "single_spec",
                  "local_rank", "nproc", "world_size", "ip", "port", "offset", "eval_type", "eval_neg_sample_args",
                  "valid_neg_sample_args", "test_neg_sample_args", "train_neg_sample_args", "verbose"}
_CONFIG_READ = re.compile(r"""config(?:_dict)?\s*(?:\[\s*|\.get\(\s*)["']([A-Za-z_]\w*)["']""")


def _yaml_keys(file: Path) -> set[str]:
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return set()
    return {str(k) for k in data} if isinstance(data, dict) else set()


@functools.lru_cache(maxsize=None)
def known_keys() -> frozenset:
    """Every config key RecBole or the plugin knows: the plugin's schema (``settings.KEYS``), yaml defaults,
    RecBole's argument lists, the keys RecBole's code reads (``config["key"]`` / ``config.get("key")``), and
    RecBole's internal keys. (The plugin reads no key outside its schema: a test checks it.)"""
    from recbole.utils import argument_list

    keys = set(_INTERNAL_KEYS) | set(KEY) | set(RENAMED) | set(REMOVED)
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys.update(getattr(argument_list, name))
    for root in (RECBOLE_PROPERTIES, properties_dir()):
        for file in root.rglob("*.yaml"):
            keys |= _yaml_keys(file)
    for file in RECBOLE_PROPERTIES.parent.rglob("*.py"):
        keys.update(_CONFIG_READ.findall(file.read_text(encoding="utf-8", errors="replace")))
    return frozenset(keys)


def nearest_key(key: str, keys=None) -> str | None:
    """The known key closest to ``key`` (same letters in another case first, then difflib), or None."""
    keys = known_keys() if keys is None else keys
    same = [k for k in keys if k.lower() == key.lower()]
    if same:
        return same[0]
    close = difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0.6)
    return close[0] if close else None


class Config(RecBoleConfig):
    """RecBole ``Config`` that knows the plugin's yaml defaults and validates every plugin key once.

    ``model`` is a model class (``recbole_pmmrec.utils.get_model`` resolves a name: ``load_config`` in
    ``recbole_pmmrec.quick_start`` does both). ``config.settings`` holds the validated values.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        compat.apply()
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        self.unknown_keys = self._check_unknown_keys()
        self.settings = Settings.from_config(self.final_config_dict, self.model,
                                             content=bool(getattr(self.model_class, "uses_item_content", False)))
        self.final_config_dict.update(self.settings)

    def resolve(self, reason: str, **values) -> None:
        """Install values decided from the data (e.g. ``modalities``) and log the decision in one line."""
        self.settings = self.settings.resolved(**values)
        self.final_config_dict.update(values)
        logger.info("%s (%s)", ", ".join(f"{k}={v}" for k, v in values.items()), reason)

    def _check_unknown_keys(self) -> dict:
        """{unknown key: nearest known key or None} over the user's config files, dict and command line."""
        model_keys = set()
        for file in (RECBOLE_PROPERTIES / "model" / f"{self.model}.yaml", properties_dir() / "model" / f"{self.model}.yaml",
                     properties_dir() / "content.yaml"):
            if file.is_file():
                model_keys |= _yaml_keys(file)
        known = known_keys() | model_keys
        unknown = {}
        for source, given in (("config files", self.file_config_dict), ("config_dict", self.variable_config_dict),
                              ("command line", self.cmd_config_dict)):
            for key in given or {}:
                if key in known or key in unknown:
                    continue
                unknown[key] = nearest_key(key, known)
                if "local_rank" in self.external_config_dict:  # a worker of nproc > 1: its parent has warned
                    continue
                hint = f"; did you mean '{unknown[key]}'?" if unknown[key] else ""
                logger.warning("unknown config key '%s' (from the %s): neither RecBole nor recbole-pmmrec reads it, "
                               "so it has no effect%s", key, source, hint)
        return unknown

    def _init_device(self):
        config = self.final_config_dict
        world_size = int(config.get("world_size") or config.get("nproc") or 1)
        if "local_rank" in config and world_size > 1:
            config["gpu_id"] = ",".join(map(str, config["gpu_id"])) if isinstance(config["gpu_id"], tuple) \
                else str(config["gpu_id"])
            init_process_group(config)
            return
        config.pop("local_rank", None)  # a single process: RecBole's own set-up
        super()._init_device()

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            raise PMMRecConfigError("no model given: pass --model=NAME (for example --model=PMMRec)")
        if isinstance(model, str):
            raise PMMRecConfigError(f"Config(model={model!r}): pass the model class; recbole_pmmrec.quick_start."
                                    f"load_config(name, ...) resolves a model name")
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
            *([ours / "content.yaml"] if getattr(model_class, "uses_item_content", False) else []),
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

