"""The plugin's settings: every key it reads, with its type and range, validated once.

``Config`` (``recbole_pmmrec.config``) builds :class:`Settings` right after RecBole has merged the yaml
layers, the config dict and the command line, and writes the parsed values back, so every later reader
(RecBole's trainer included) sees the same typed values. Defaults live only in ``properties/``; a key that
a plugin model needs and no yaml file gives is an error here, not a silent fallback in the code.

A bad value is a :class:`~recbole_pmmrec.errors.PMMRecConfigError` that names the key, the value and what
is allowed. List-valued keys are parsed one way wherever they come from: ``[text]``, ``"[text]"``,
``text``, ``text,image``, ``['text', 'image']`` and a yaml list all give the same list.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from recbole_pmmrec.errors import PMMRecConfigError

PLUGIN_MODELS = ("PMMRec", "ContentKNN")  # models whose keys are required to have a yaml default
_CONTENT = "content"  # marks the keys of every model that reads item content (class attribute uses_item_content)


@dataclass(frozen=True)
class Key:
    """One config key: how to parse it and what is allowed."""

    name: str
    kind: str  # int | float | bool | str | choice | list | path | dict | any
    low: float | None = None  # inclusive lower bound (int / float)
    high: float | None = None  # inclusive upper bound
    high_open: bool = False  # the upper bound is exclusive
    choices: tuple = ()  # allowed values (choice), or allowed items (list)
    optional: bool | tuple = False  # ~ (None) is allowed: True for every model, or a tuple of the models for which
    # ~ means "decided from the data" (e.g. train_batch_size for PMMRec)
    models: tuple | str | None = None  # only read for these models ("content": models that read item content;
    # None: every model)
    arch: bool = False  # recorded in a component checkpoint's header (what the weights need to load)

    def none_allowed(self, model: str | None = None) -> bool:
        """Whether ~ is a value of this key for ``model`` (None: for some model)."""
        if isinstance(self.optional, tuple):
            return model is None or model in self.optional
        return bool(self.optional)

    def allowed(self, model: str | None = None) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(map(str, self.choices))
        elif self.kind == "list":
            text = ("a list of " + ", ".join(self.choices)) if self.choices else "a list"
            text += " (e.g. [a], a,b or \"[a, b]\")"
        elif self.kind in ("int", "float"):
            what = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                close = ")" if self.high_open else "]"
                text = f"{what} in [{self.low:g}, {self.high:g}{close}"
            elif self.low is not None:
                text = f"{what} >= {self.low:g}"
            else:
                text = what
        elif self.kind == "bool":
            text = "True or False"
        else:
            text = f"a {self.kind}"
        if isinstance(self.optional, tuple):
            if model is None or model in self.optional:
                return text + f", or ~ (decided from the data; {', '.join(self.optional)} only)"
            return text
        return text + (", or ~ (none)" if self.optional else "")


def _k(name, kind, **kw) -> Key:
    return Key(name, kind, **kw)


# Every key recbole-pmmrec reads or validates. RecBole keys are listed when a wrong value would otherwise end
# in a torch or RecBole traceback far from its cause.
KEYS: tuple[Key, ...] = (
    # ---- RecBole keys, checked for every model
    _k("epochs", "int", low=0),
    _k("train_batch_size", "int", low=1, optional=("PMMRec",)),  # ~: decided from the data (data/dataset.py)
    _k("eval_batch_size", "int", low=1),
    _k("learning_rate", "float", low=0.0),
    _k("weight_decay", "float", low=0.0),
    _k("MAX_ITEM_LIST_LENGTH", "int", low=1, arch=True),
    _k("stopping_step", "int", low=1),
    _k("eval_step", "int", low=0),
    _k("seed", "int"),
    _k("hidden_size", "int", low=1, optional=("PMMRec",), arch=True),  # ~: from the modalities
    _k("inner_size", "int", low=1, optional=("PMMRec",), arch=True),  # ~: 4x hidden_size
    _k("n_layers", "int", low=1, arch=True),
    _k("n_heads", "int", low=1, arch=True),
    _k("hidden_dropout_prob", "float", low=0.0, high=1.0, high_open=True, optional=("PMMRec",)),  # ~: by modality
    _k("attn_dropout_prob", "float", low=0.0, high=1.0, high_open=True, optional=("PMMRec",)),  # ~: by modality
    _k("layer_norm_eps", "float", low=0.0, arch=True),
    _k("initializer_range", "float", low=0.0),
    # ---- run keys of the plugin, every model
    _k("threads", "int", low=1, optional=True),
    _k("nproc", "int", low=1),
    _k("world_size", "int", low=-1, optional=True),
    _k("offset", "int", low=0, optional=True),
    _k("port", "int", low=1, high=65535, optional=True),
    _k("ip", "str", optional=True),
    _k("ddp_check_sync", "bool"),
    _k("resume_checkpoint", "path", optional=True),
    _k("log_dir", "path"),
    _k("tensorboard_dir", "path"),
    _k("checkpoint_dir", "path"),
    # ---- split variants, every sequential model (recbole_pmmrec.data.splits)
    _k("train_window", "bool"),
    _k("train_window_stride", "int", low=1, optional=True),
    _k("few_shot_ratio", "float", low=0.0, high=1.0, optional=True),
    _k("cold_item_ratio", "float", low=0.0, high=1.0, high_open=True, optional=True),
    _k("split_seed", "int", optional=True),
    # ---- item content (PMMRec)
    _k("modalities", "list", choices=("text", "image"), optional=True, models=_CONTENT, arch=True),
    _k("text_fields", "list", optional=True, models=_CONTENT, arch=True),
    _k("text_lowercase", "bool", models=_CONTENT, arch=True),
    _k("text_max_length", "int", low=2, models=_CONTENT, arch=True),
    _k("text_groups", "int", low=1, optional=True, models=_CONTENT, arch=True),
    _k("image_dir", "path", optional=True, models=_CONTENT),
    _k("image_size", "int", low=16, models=_CONTENT, arch=True),
    _k("image_grid", "int", low=1, optional=True, models=_CONTENT, arch=True),
    _k("contentless_items", "choice", choices=("error", "zero"), models=_CONTENT),
    _k("image_checkpoint", "path", optional=True, models=_CONTENT, arch=True),
    # ---- encoders
    _k("text_encoder", "str", models=_CONTENT, arch=True),
    _k("image_encoder", "str", models=_CONTENT, arch=True),
    _k("text_train_layers", "int", low=0, models=_CONTENT, arch=True),
    _k("image_train_layers", "int", low=0, models=_CONTENT, arch=True),
    _k("encoder_mode", "choice", choices=("cached", "end_to_end"), models=_CONTENT),
    _k("cache_dir", "path", models=_CONTENT),
    _k("cache_dtype", "choice", choices=("float16", "float32"), models=_CONTENT),
    _k("encoder_batch_size", "int", low=1, models=_CONTENT),
    _k("item_chunk_size", "int", low=1, models=_CONTENT),
    # ---- towers
    _k("projection", "choice", choices=("linear", "mlp", "moe"), optional=True, models=("PMMRec",), arch=True),
    _k("moe_experts", "int", low=1, models=("PMMRec",), arch=True),
    _k("fusion_heads", "int", low=1, models=("PMMRec",), arch=True),
    _k("item_id_embedding", "bool", models=("PMMRec",), arch=True),
    _k("item_id_neighbours", "int", low=0, models=("PMMRec",)),
    _k("item_id_dropout", "float", low=0.0, high=1.0, high_open=True, models=("PMMRec",)),
    _k("item_id_shrink", "float", low=0.0, models=("PMMRec",)),
    _k("item_id_learning_rate", "float", low=0.0, optional=True, models=("PMMRec",)),
    _k("whiten", "choice", choices=("raw", "center", "zca"), optional=True, models=("PMMRec",), arch=True),
    # ~: from the modalities; recorded in a header: a loading model must have the skip (and score it the same way)
    _k("content_skip", "float", low=0.0, optional=("PMMRec",), models=("PMMRec",), arch=True),
    _k("content_skip_dim", "int", low=1, models=("PMMRec",), arch=True),
    _k("fusion_dropout", "float", low=0.0, high=1.0, high_open=True, models=("PMMRec",)),
    _k("hidden_act", "choice", choices=("gelu", "relu", "swish", "tanh", "sigmoid"), models=("PMMRec",), arch=True),
    # ---- ContentKNN
    _k("knn_decay", "float", low=0.0, high=1.0, models=("ContentKNN", "PMMRec"), arch=True),  # PMMRec's skip too
    _k("knn_history", "int", low=1, models=("ContentKNN", "PMMRec"), arch=True),
    _k("knn_whiten", "choice", choices=("raw", "center", "zca"), models=("ContentKNN", "PMMRec"), arch=True),
    # ---- objectives and evaluation
    _k("exclude_history", "bool", optional=True, models=("PMMRec", "ContentKNN")),
    _k("eval_item_dtype", "choice", choices=("float32", "bfloat16"), models=("PMMRec",)),
    _k("loss_type", "choice", choices=("NIP", "CE"), models=("PMMRec",)),
    _k("nip_debias", "bool", models=("PMMRec",)),
    _k("nip_negatives", "int", low=0, models=("PMMRec",)),
    _k("nip_history_negatives", "bool", models=("PMMRec",)),
    # recorded in a header: a model loaded for recommending must score as it was trained
    _k("score_tau", "float", low=0.0, optional=("PMMRec",), models=("PMMRec",), arch=True),  # ~: ID + text alone
    _k("w_nicl", "float", low=0.0, models=("PMMRec",)),
    _k("nicl_tau", "float", low=1e-6, models=("PMMRec",)),
    _k("w_nid", "float", low=0.0, optional=("PMMRec",), models=("PMMRec",)),  # ~: from the modalities
    _k("nid_ratio", "float", low=0.0, high=1.0, models=("PMMRec",)),
    _k("w_rcl", "float", low=0.0, models=("PMMRec",)),
    _k("rcl_tau", "float", low=1e-6, models=("PMMRec",)),
    _k("encoder_learning_rate", "float", low=0.0, models=("PMMRec",)),
    _k("encoder_weight_decay", "float", low=0.0, models=("PMMRec",)),
    # ---- transfer
    _k("pretrained", "path", optional=True, models=("PMMRec",)),
    _k("transfer_components", "list", optional=True, models=("PMMRec",),
       choices=("text_encoder", "image_encoder", "fusion", "user_encoder", "heads")),
    _k("freeze_transferred", "bool", models=("PMMRec",)),
    _k("transfer_shrink", "float", low=0.0, high=1.0, models=("PMMRec",)),
    _k("skip_calibration", "bool", optional=True, models=("PMMRec",)),
    _k("domain_batches", "bool", models=("PMMRec",)),
    _k("finetune", "choice", choices=("all", "adaptor", "user_encoder"), models=("PMMRec",)),
    _k("save_pretrained", "path", optional=True, models=("PMMRec",)),
    _k("eval_test", "bool", models=("PMMRec",)),
)
KEY = {k.name: k for k in KEYS}
ARCH_KEYS = tuple(k.name for k in KEYS if k.arch)

# Keys that were renamed: an old name is an error that gives the new one (a silent default would be worse).
RENAMED = {"cache_batch_size": "encoder_batch_size", "text_tokens": "text_groups"}
# Settings measured and not adopted (CHANGELOG 0.6.0 keeps their results).
REMOVED = ("item_feature_dropout", "modality_dropout", "text_skip", "image_skip")


def parse_list(value: Any, key: str = "value") -> list[str] | None:
    """A list-valued key from yaml, a config dict or the command line -> list of strings (None stays None).

    ``[text]``, ``"[text]"``, ``text``, ``text,image``, ``text image``, ``['text', 'image']`` and
    ``('text',)`` are all accepted; ``~``, ``None`` and an empty string mean None.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, str):
        text = value.strip().strip("'\"").strip()
        if text in ("", "~", "None", "none", "null"):
            return None
        text = text.strip("[]()").replace("+", ",").replace(" ", ",")
        items = text.split(",")
    else:
        raise PMMRecConfigError(f"{key}={value!r}: expected a list (e.g. [a, b] or a,b)")
    out = []
    for item in items:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise PMMRecConfigError(f"{key}={value!r}: list items must be names, got {item!r}")
        name = str(item).strip().strip("'\"").strip()
        if name:
            out.append(name)
    return out


def _number(key: Key, value: Any):
    if isinstance(value, bool):
        raise ValueError
    if key.kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            return int(value)
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    number = float(str(value).strip()) if isinstance(value, str) else float(value)
    if not math.isfinite(number):
        raise ValueError
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError


def check(key: Key, value: Any, model: str | None = None):
    """``value`` of ``key`` parsed and checked for ``model`` (None: any model); raises PMMRecConfigError naming key,
    value, model where it matters, and what is allowed."""
    if value is None or (isinstance(value, str) and value.strip() in ("~", "None", "none", "null")
                         and key.kind not in ("str",)):
        if key.none_allowed(model):
            return None
        for_model = f" for model {model}" if isinstance(key.optional, tuple) else ""
        raise PMMRecConfigError(f"{key.name} is not set{for_model}: it must be {key.allowed(model)}")
    bad = PMMRecConfigError(f"{key.name}={value!r} is not allowed: it must be {key.allowed(model)}")
    try:
        if key.kind in ("int", "float"):
            parsed = _number(key, value)
            if key.low is not None and parsed < key.low:
                raise bad
            if key.high is not None and (parsed > key.high or (key.high_open and parsed >= key.high)):
                raise bad
            return parsed
        if key.kind == "bool":
            return _bool(value)
        if key.kind == "choice":
            text = str(value).strip()
            match = [c for c in key.choices if c.lower() == text.lower()]
            if not match:
                raise bad
            return match[0]
        if key.kind == "list":
            items = parse_list(value, key.name)
            if items is None:
                if key.none_allowed(model):
                    return None
                raise bad
            if key.choices:
                items = [i.lower() for i in items]
                unknown = [i for i in items if i not in key.choices]
                if unknown or not items:
                    raise PMMRecConfigError(f"{key.name}={value!r}: {unknown or 'an empty list'} not allowed; it "
                                            f"must be {key.allowed(model)}")
            elif not items:
                raise bad
            return list(dict.fromkeys(items))
        if key.kind == "path":
            if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
                raise bad
            return os.fspath(value)
        if key.kind == "str":
            if not isinstance(value, str) or not value.strip():
                raise bad
            return value.strip()
    except (TypeError, ValueError, OverflowError):
        raise bad from None
    return value


class Settings(Mapping):
    """The validated plugin settings of one run: ``settings.hidden_size``, ``settings["hidden_size"]``.

    Holds every key of :data:`KEYS` that applies to the run's model. Read-only; :meth:`resolved` returns a
    copy with values decided from the data (``modalities``), which ``Config.resolve`` installs.
    """

    def __init__(self, values: Mapping[str, Any], model: str):
        self._values = dict(values)
        self.model = model

    @classmethod
    def from_config(cls, config: Mapping[str, Any], model: str, content: bool = False) -> "Settings":
        present = set(config)
        for old, new in RENAMED.items():
            if old in present and config.get(old) is not None:
                raise PMMRecConfigError(f"config key '{old}' was renamed '{new}' in recbole-pmmrec 0.6: use {new}")
        if model in PLUGIN_MODELS:
            for old in REMOVED:
                if old in present and config.get(old) not in (None, False, 0, 0.0):
                    raise PMMRecConfigError(
                        f"config key '{old}' was removed in recbole-pmmrec 0.6: it was measured and not adopted "
                        f"(CHANGELOG.md, 0.6.0); drop it from your config")
        values = {}
        for key in KEYS:
            applies = key.models is None or (content if key.models == _CONTENT else model in key.models)
            if not applies:
                continue
            if key.name not in present:
                if key.models is not None and model in PLUGIN_MODELS and not key.none_allowed(model):
                    raise PMMRecConfigError(
                        f"{key.name} has no value for model {model}: its default lives in properties/ "
                        f"(content.yaml or model/{model}.yaml), which was not found or lacks it; reinstall "
                        f"recbole-pmmrec")
                continue
            values[key.name] = check(key, config[key.name], model)
        return cls(values, model)

    def resolved(self, **changes) -> "Settings":
        return Settings({**self._values, **changes}, self.model)

    def architecture(self) -> dict:
        """The architecture keys (what a component checkpoint's header records)."""
        return {k: self._values[k] for k in ARCH_KEYS if k in self._values}

    def __getattr__(self, name: str):
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"no setting '{name}' for model {self.__dict__.get('model')}")

    def __getitem__(self, name: str):
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self.model}, {self._values})"


def settings_of(config) -> Settings:
    """The :class:`Settings` of a plugin ``Config`` (built once by it), or built now from a plain mapping."""
    settings = getattr(config, "settings", None)
    if isinstance(settings, Settings):
        return settings
    model = config["model"] if "model" in config else "PMMRec"
    return Settings.from_config(config, str(model), content=True)
