"""Component checkpoints: save a PMMRec as a folder anyone can load, load any subset of its components.

A checkpoint folder holds two files::

    model.safetensors   every tensor of the model except the frozen encoder bottoms
    pmmrec.json         header: format version, model type, modalities, the architecture config, each
                        encoder's identity (what produces its bottom states, with a hash of the bottom
                        weights), per-component tensor counts, source datasets, library versions and the
                        sha256 of model.safetensors

Components are state-dict prefixes of :class:`~recbole_pmmrec.model.pmmrec.PMMRec`:

=================  ===============================  ==========================================
component          prefix                           holds
=================  ===============================  ==========================================
``text_encoder``   ``item_tower.text_encoder.``     trainable top blocks of the text encoder + projection
``image_encoder``  ``item_tower.image_encoder.``    trainable top blocks of the image encoder + projection
``fusion``         ``item_tower.fusion.``           merge-attention layer (used with two modalities)
``user_encoder``   ``user_encoder.``                positions + causal Transformer
``heads``          ``heads.``                       NICL / NID pre-training heads (never loaded by default)
=================  ===============================  ==========================================

The frozen bottom of each encoder is not saved: it is the public pretrained model named in the
header, and its identity (``TokenEncoder.identity()``, including ``bottom_sha256``) must equal the
loading model's, otherwise the transferred top blocks and projection would read states they were
never trained on (and a cached model's encoder-state cache would not match).

Loading never unpickles anything: weights are read with safetensors only. A folder that holds a
pickle (``.pth``/``.pt``/``.bin``/``.pkl``/``.ckpt``) instead is refused; convert such a file yourself
with ``torch.load(path, weights_only=True)`` and :func:`safetensors.torch.save_file` if you trust its
content.

Modality settings: a component belongs to a modality (``text_encoder`` -> text, ``image_encoder`` ->
image); ``fusion`` is trained only by a model with both modalities (a single modality is mean-pooled
without it), and the header says so. ``components=None`` loads every default component that the
checkpoint and the model both have and that was trained; an explicitly listed component that cannot be
loaded is an error that says why.

Workflow (config keys documented in ``properties/model/PMMRec.yaml``)::

    # pre-train on one source (or a merged one: python -m dataset_tools.convert merge --inputs ...)
    python run_recbole_pmmrec.py --dataset=microlens-50k --save_pretrained=/ckpt/ml50k
    # fine-tune on a target, training only what was not transferred
    python run_recbole_pmmrec.py --dataset=ml100k-posters --pretrained=/ckpt/ml50k \\
        --transfer_components="[text_encoder,user_encoder]" --freeze_transferred=True
    # zero-shot: evaluate without a training step; few-shot: --few_shot_ratio=0.05
    python run_recbole_pmmrec.py --dataset=ml100k-posters --pretrained=/ckpt/ml50k --epochs=0
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError
from recbole_pmmrec.hashing import file_sha256, jsonable
from recbole_pmmrec.provenance import library_versions
from recbole_pmmrec.settings import parse_list, settings_of

logger = logging.getLogger(__name__)

FORMAT = "recbole-pmmrec component checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
HEADER_FILE = "pmmrec.json"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".pkl", ".pickle", ".ckpt")

COMPONENTS = {
    "text_encoder": "item_tower.text_encoder.",
    "image_encoder": "item_tower.image_encoder.",
    "fusion": "item_tower.fusion.",
    "user_encoder": "user_encoder.",
    "heads": "heads.",
}
DEFAULT_COMPONENTS = ("text_encoder", "image_encoder", "fusion", "user_encoder")
MODALITY_OF = {"text_encoder": "text", "image_encoder": "image"}
BOTTOM = ".backbone.bottom."  # frozen encoder bottoms: identified by their identity, never saved

# Identity fields that decide whether the transferred top blocks read the same states: must be equal.
# Architecture values (``model.architecture()``) that each component's tensors depend on.
ARCH_OF = {"text_encoder": ("hidden_size", "projection", "moe_experts", "whiten"),
           "image_encoder": ("hidden_size", "projection", "moe_experts", "whiten"),
           "fusion": ("hidden_size", "fusion_heads", "hidden_act"),
           "user_encoder": ("hidden_size", "inner_size", "n_heads", "n_layers", "hidden_act"),
           "heads": ("hidden_size",)}
IDENTITY_HARD = ("kind", "model_type", "arch", "num_blocks", "boundary_layer", "boundary_block", "state_dim",
                 "bottom_sha256")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _cfg(config, key: str):
    """``config[key]`` for a RecBole Config (None when unset) or a plain dict."""
    try:
        return config[key]
    except KeyError:
        return None


def _component_of(key: str) -> str | None:
    for name, prefix in COMPONENTS.items():
        if key.startswith(prefix):
            return name
    return None


def _model_modalities(model: nn.Module) -> tuple[str, ...]:
    tower = getattr(model, "item_tower", None)
    return tuple(getattr(tower, "modalities", ()))


def exportable_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict without frozen encoder bottoms (what a checkpoint holds)."""
    return {k: v for k, v in model.state_dict().items() if BOTTOM not in k and _component_of(k) is not None}


def _encoder_identities(model: nn.Module) -> dict[str, dict]:
    tower = model.item_tower
    return {m: getattr(tower, f"{m}_encoder").backbone.identity() for m in tower.modalities}


def parse_components(value) -> list[str] | None:
    """``transfer_components`` (a list, or a string such as ``'text_encoder,user_encoder'``) -> names; None (or
    ``all``) = the default components."""
    names = parse_list(value, "transfer_components")
    if names is None or names == ["all"]:
        return None
    names = [n.lower() for n in names]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise PMMRecConfigError(
            f"transfer_components={value!r}: unknown component(s) {unknown}; choose from {list(COMPONENTS)} "
            f"(~ = every default component the checkpoint and the model share)")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------


def save_pretrained(model: nn.Module, folder, config=None, dataset_names=None, corpus: dict | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/pmmrec.json`` (atomically: temp file, then rename).

    ``config``: the run's config (its architecture keys go into the header); ``dataset_names``: the
    source datasets the model was trained on (a name or a list). Returns the folder.
    """
    from safetensors.torch import save_file

    if not hasattr(model, "item_tower") or not hasattr(model, "user_encoder"):
        raise PMMRecCheckpointError(
            f"save_pretrained: {type(model).__name__} has no item_tower/user_encoder; component checkpoints "
            "are for PMMRec (other models: use the trainer's own checkpoint)")
    folder = Path(os.path.expanduser(str(folder)))
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in exportable_state(model).items()}  # (no shared storage)
    modalities = list(_model_modalities(model))
    components = {}
    for name, prefix in COMPONENTS.items():
        keys = [k for k in state if k.startswith(prefix)]
        if not keys:
            continue
        components[name] = {
            "prefix": prefix,
            "tensors": len(keys),
            "parameters": int(sum(state[k].numel() for k in keys)),
            # fusion only runs with two modalities: a single-modality model never trains it
            "trained": not (name == "fusion" and len(modalities) < 2),
        }
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    cfg = settings_of(config).architecture() if config is not None else {}
    cfg.update(model.architecture())  # what the weights were built with, whatever the config said

    weights = folder / WEIGHTS_FILE
    tmp_weights = folder / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    try:
        save_file(state, str(tmp_weights), metadata={"format": "pt", "pmmrec_format_version": str(FORMAT_VERSION)})
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": type(model).__name__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "modalities": modalities,
            "components": components,
            "encoders": jsonable(_encoder_identities(model)),
            "config": cfg,
            "source_datasets": [str(d) for d in (dataset_names or [])],
            "corpus": corpus or {},
            "versions": library_versions(),
            "weights": WEIGHTS_FILE,
            "weights_sha256": file_sha256(tmp_weights),
        }
        fd, tmp_header = tempfile.mkstemp(prefix=f".{HEADER_FILE}.tmp-", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(header, fh, indent=2)
            fh.write("\n")
        os.replace(tmp_weights, weights)
        os.replace(tmp_header, folder / HEADER_FILE)
    finally:
        if tmp_weights.exists():
            tmp_weights.unlink()
    logger.info("saved components %s of %s to %s", list(components), type(model).__name__, folder)
    return folder


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


@dataclass
class ComponentReport:
    """Tensor names of one component, sorted into what happened to them."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)       # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)    # in the checkpoint, not in the model
    mismatched: list[str] = field(default_factory=list)    # in both with different shapes
    frozen: bool = False


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, per component; ``str(report)`` is a table."""

    folder: str
    header: dict
    components: dict[str, ComponentReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # component -> why it was not loaded
    warnings: list[str] = field(default_factory=list)
    shrink: float = 1.0  # loaded parameters = shrink * saved + (1 - shrink) * fresh initialisation

    @property
    def loaded(self) -> list[str]:
        return list(self.components)

    def table(self) -> str:
        rows = [("component", "loaded", "missing", "unexpected", "shape-mismatched", "frozen")]
        for name, r in self.components.items():
            rows.append((name, str(len(r.loaded)), str(len(r.missing)), str(len(r.unexpected)),
                         str(len(r.mismatched)), "yes" if r.frozen else "no"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [f"pretrained weights from {self.folder} (sources: {', '.join(self.header.get('source_datasets') or ['?'])})"
                 + (f", shrunk: {self.shrink:g} x saved + {1 - self.shrink:g} x fresh" if self.shrink < 1.0 else "")]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
        lines += [f"  not loaded: {name} ({why})" for name, why in self.skipped.items()]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    __str__ = table


def _resolve_folder(path) -> Path:
    """A checkpoint folder (or one of its two files) -> the folder; refuses pickles before touching them."""
    if path is None or str(path).strip() in ("", "None", "~"):
        raise PMMRecConfigError("pretrained: no checkpoint folder given")
    path = Path(os.path.expanduser(str(path)))
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise PMMRecCheckpointError(
            f"refusing to load '{path}': it is a pickle-based torch file, and unpickling a file from elsewhere "
            f"can run arbitrary code. --pretrained takes a folder written by recbole_pmmrec.transfer.save_pretrained "
            f"({WEIGHTS_FILE} + {HEADER_FILE}); if you trust the file, convert it with "
            f"torch.load(path, weights_only=True) and safetensors.torch.save_file")
    if path.is_file() and path.name in (WEIGHTS_FILE, HEADER_FILE):
        path = path.parent
    if not path.is_dir():
        raise PMMRecCheckpointError(f"pretrained checkpoint folder '{path}' does not exist (or is not a folder)")
    if not (path / WEIGHTS_FILE).is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise PMMRecCheckpointError(
                f"refusing to load '{path}': it holds pickle-based torch files {pickles} and no {WEIGHTS_FILE}. "
                f"Unpickling a file from elsewhere can run arbitrary code, so it is never done; if you trust the "
                f"file, convert it with torch.load(path, weights_only=True) + safetensors.torch.save_file, or "
                f"save the model with recbole_pmmrec.transfer.save_pretrained")
        raise PMMRecCheckpointError(
            f"'{path}' is not a PMMRec checkpoint folder: {WEIGHTS_FILE} is missing "
            f"(write one with recbole_pmmrec.transfer.save_pretrained or the save_pretrained config key)")
    return path


def read_header(folder) -> dict:
    """The validated ``pmmrec.json`` of a checkpoint folder."""
    folder = _resolve_folder(folder)
    path = folder / HEADER_FILE
    if not path.is_file():
        raise PMMRecCheckpointError(
            f"'{folder}' has {WEIGHTS_FILE} but no {HEADER_FILE}: without the header the encoders and modalities "
            f"of the weights are unknown; save the model again with recbole_pmmrec.transfer.save_pretrained")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PMMRecCheckpointError(f"{path} is not valid JSON ({exc}); the checkpoint is corrupt") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PMMRecCheckpointError(f"{path} is not a recbole-pmmrec checkpoint header (format field: "
                                    f"{header.get('format') if isinstance(header, dict) else None!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PMMRecCheckpointError(f"{path}: format_version {version!r} is not supported by this recbole-pmmrec "
                                    f"(reads versions up to {FORMAT_VERSION}); upgrade recbole-pmmrec")
    return header


SKIP_WEIGHT = "user_encoder.skip.weight"


def with_older_keys(config: dict, weight_names) -> dict:
    """A saved model's settings (a header's, or a RecBole checkpoint's config), with what a model saved before a
    key was recorded was built with: ``whiten`` raw (no whitening before the key), ``content_skip`` from its
    weights (the skip's weight is among ``weight_names`` or not; its value loads with them), ``score_tau`` 0 (dot
    products), ``knn_whiten`` raw (the skip's plain principal directions)."""
    config = dict(config)
    config.setdefault("whiten", "raw")
    config.setdefault("knn_whiten", "raw")
    config.setdefault("score_tau", 0.0)
    if "content_skip" not in config:
        config["content_skip"] = 1.0 if SKIP_WEIGHT in set(weight_names) else 0.0
    return config


def header_architecture(folder, header: dict) -> dict:
    """``with_older_keys`` of a checkpoint folder's header (its weights' names are read only when needed)."""
    config = header.get("config", {})
    if "content_skip" in config:
        return with_older_keys(config, ())
    from safetensors import safe_open

    path = _resolve_folder(folder) / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="pt") as weights:
            names = list(weights.keys())
    except Exception as exc:  # safetensors raises its own error types for bad headers / short files
        raise _unreadable(path, exc) from exc
    return with_older_keys(config, names)


def _unreadable(path: Path, exc: Exception) -> PMMRecCheckpointError:
    return PMMRecCheckpointError(f"cannot read {path} ({type(exc).__name__}: {exc}): the file is truncated or "
                                 f"corrupt; copy the checkpoint folder again")


def _read_weights(folder: Path, header: dict) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    path = folder / WEIGHTS_FILE
    expected = header.get("weights_sha256")
    if expected and file_sha256(path) != expected:
        raise PMMRecCheckpointError(
            f"{path} does not match the sha256 recorded in {HEADER_FILE}: the file is truncated, corrupt or was "
            f"replaced; copy the checkpoint folder again")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad headers / short files
        raise _unreadable(path, exc) from exc


def identity_differences(saved: dict, own: dict, saved_name: str = "checkpoint", own_name: str = "model") -> str:
    """The identity fields (:data:`IDENTITY_HARD`) in which two encoders differ, as ``"key: <saved_name> value vs
    <own_name> value, ..."`` ("" when they match): any one means the top blocks and projection trained on one
    encoder's states would read other states from the other."""
    differ = [k for k in IDENTITY_HARD if (k in saved or k in own) and saved.get(k) != own.get(k)]
    return ", ".join(f"{k}: {saved_name} {saved.get(k)!r} vs {own_name} {own.get(k)!r}" for k in differ)


def _check_identity(modality: str, saved: dict | None, own: dict, folder: Path, report: LoadReport) -> None:
    if saved is None:
        raise PMMRecCheckpointError(f"{folder / HEADER_FILE}: no identity recorded for the {modality} encoder")
    detail = identity_differences(saved, own)
    if detail:
        raise PMMRecCheckpointError(
            f"the {modality} encoder of checkpoint '{folder}' ({saved.get('encoder')}) does not match this "
            f"model's ({own.get('encoder')}): {detail}. Its top blocks and projection were trained on the states "
            f"of a different frozen bottom, so the cached states would not match; use the same "
            f"{modality}_encoder and {modality}_train_layers as the checkpoint (see its {HEADER_FILE}), or leave "
            f"{modality}_encoder out of transfer_components")
    soft = [k for k in set(saved) | set(own) if k not in IDENTITY_HARD and k != "path" and saved.get(k) != own.get(k)]
    for k in sorted(soft):
        report.warnings.append(f"{modality} encoder {k}: checkpoint {saved.get(k)!r}, model {own.get(k)!r}")


def _check_architecture(name: str, header: dict, model: nn.Module) -> None:
    saved, own = header.get("config", {}), model.architecture()
    bad = {k: (saved[k], own[k]) for k in ARCH_OF[name] if k in saved and k in own and saved[k] != own[k]}
    if bad:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in bad.items())
        raise PMMRecCheckpointError(
            f"cannot load {name}: the checkpoint's architecture differs ({detail}); set these keys to the "
            f"checkpoint's values, or leave {name} out of transfer_components")


def _unusable(name: str, ckpt_modalities: set, model_modalities: set, saved_components: dict) -> str | None:
    """Why component ``name`` cannot be loaded (None: it can). One rule set: the default choice skips such a
    component with this reason, an explicit request is an error that gives it."""
    modality = MODALITY_OF.get(name)
    if modality and modality not in ckpt_modalities:
        return f"the checkpoint has no {modality} modality (its modalities: {sorted(ckpt_modalities)})"
    if modality and modality not in model_modalities:
        return f"the model has no {modality} modality (add {modality} to modalities)"
    if name not in saved_components:
        return "not in the checkpoint"
    if name == "fusion" and len(model_modalities) < 2:
        return "unused: the model has one modality, which is mean-pooled without the fusion layer"
    if not saved_components[name].get("trained", True):
        return "never trained: the checkpoint has one modality, which is mean-pooled without the fusion layer"
    return None


def load_pretrained(model: nn.Module, folder, components=None, freeze: bool = False, config=None,
                    strict: bool = False, shrink: float = 1.0) -> LoadReport:
    """Load ``components`` of the checkpoint in ``folder`` into ``model``; the others keep their weights.

    ``components``: a list of names from :data:`COMPONENTS` (or a string such as
    ``'text_encoder,user_encoder'``); ``None`` = every default component that the checkpoint and the
    model both have and that was trained. ``freeze``: set ``requires_grad=False`` on the loaded
    components' parameters (build the optimiser afterwards). ``config``: the model's config, for
    extra architecture checks. ``strict``: missing or unexpected tensors in a loaded component are
    errors too (they are reported either way). ``shrink`` (``transfer_shrink``): each loaded parameter becomes
    ``shrink * saved + (1 - shrink) * fresh``, ``fresh`` being its value in ``model`` before loading (the new
    initialisation), after Ash & Adams' "shrink and perturb" for warm-started training; buffers load as saved;
    1.0 loads everything as saved.

    Raises :class:`PMMRecCheckpointError` for: a pickle instead of safetensors, a missing or invalid
    header, another model type, a corrupt/truncated weights file, a component of a modality the
    checkpoint or the model lacks, an encoder whose frozen bottom differs, a different architecture, a
    shape mismatch, or a requested component with zero tensors loaded.
    """
    if not 0.0 <= float(shrink) <= 1.0:
        raise PMMRecConfigError(f"transfer_shrink must be in [0, 1] (1 = load as saved), got {shrink!r}")
    folder = _resolve_folder(folder)
    header = read_header(folder)
    report = LoadReport(str(folder), header, shrink=float(shrink))
    saved_model = header.get("model")
    if saved_model != type(model).__name__:
        raise PMMRecCheckpointError(
            f"checkpoint '{folder}' holds a {saved_model} model, not a {type(model).__name__}; "
            f"load it into {saved_model}, or use a checkpoint saved from {type(model).__name__}")
    weights = _read_weights(folder, header)
    ckpt_modalities = set(header.get("modalities") or [])
    model_modalities = set(_model_modalities(model))
    saved_components = header.get("components", {})
    requested = parse_components(components)
    chosen = []
    for name in requested or DEFAULT_COMPONENTS:
        why = _unusable(name, ckpt_modalities, model_modalities, saved_components)
        if why is None:
            chosen.append(name)
        elif requested is None:
            report.skipped[name] = why
        else:
            raise PMMRecCheckpointError(f"transfer_components asks for {name}, which cannot be loaded from "
                                        f"'{folder}': {why}; leave {name} out of transfer_components")
    if not chosen:
        raise PMMRecCheckpointError(
            f"nothing to load from '{folder}': {'; '.join(f'{k}: {v}' for k, v in report.skipped.items())}")

    identities = _encoder_identities(model)
    for name in chosen:
        _check_architecture(name, header, model)
        if name in MODALITY_OF:
            modality = MODALITY_OF[name]
            _check_identity(modality, header.get("encoders", {}).get(modality), identities[modality], folder, report)

    own = exportable_state(model)
    to_load = {}
    for name in chosen:
        prefix = COMPONENTS[name]
        mine = {k for k in own if k.startswith(prefix)}
        theirs = {k for k in weights if k.startswith(prefix)}
        row = ComponentReport(
            loaded=sorted(k for k in mine & theirs if weights[k].shape == own[k].shape),
            missing=sorted(mine - theirs), unexpected=sorted(theirs - mine),
            mismatched=sorted(k for k in mine & theirs if weights[k].shape != own[k].shape))
        report.components[name] = row
        if row.mismatched:
            detail = ", ".join(f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in row.mismatched[:5])
            raise PMMRecCheckpointError(
                f"cannot load {name} from '{folder}': {len(row.mismatched)} tensors have another shape in this "
                f"model ({detail}); build the model with the checkpoint's config (see {HEADER_FILE}) or leave "
                f"{name} out of transfer_components")
        if not row.loaded:
            raise PMMRecCheckpointError(
                f"cannot load {name} from '{folder}': zero tensors matched (the model has {len(mine)} under "
                f"'{prefix}', the checkpoint {len(theirs)}); the checkpoint does not hold this component")
        if strict and (row.missing or row.unexpected):
            raise PMMRecCheckpointError(
                f"cannot load {name} strictly from '{folder}': missing {row.missing[:5]}, unexpected "
                f"{row.unexpected[:5]}")
        if row.missing or row.unexpected:
            report.warnings.append(f"{name}: {len(row.missing)} tensors keep their initial values (not in the "
                                   f"checkpoint), {len(row.unexpected)} checkpoint tensors unused")
        to_load.update({k: weights[k] for k in row.loaded})

    if report.shrink < 1.0:  # parameters only: buffers (statistics, masks) are not initialisations to mix with
        params = dict(model.named_parameters())
        to_load.update({k: report.shrink * v.to(own[k].dtype) + (1.0 - report.shrink) * own[k]
                        for k, v in to_load.items() if k in params and own[k].is_floating_point()})
    result = model.load_state_dict(to_load, strict=False)  # PMMRec.load_state_dict drops its item-vector cache
    assert not result.unexpected_keys, result.unexpected_keys
    if freeze:
        params = dict(model.named_parameters())
        for name in chosen:
            for key, p in params.items():
                if key.startswith(COMPONENTS[name]):
                    p.requires_grad_(False)
            report.components[name].frozen = True
    logger.info("%s", report.table())
    for line in report.warnings:
        logger.warning("pretrained %s: %s", folder, line)
    return report


def _dataset_meta(config) -> dict:
    """The converter's ``NAME.meta.json`` of the run's data set ({} when there is none)."""
    name = str(config["dataset"])
    root = Path(str(_cfg(config, "data_path") or ""))  # RecBole's Config appends the dataset name to data_path
    for meta in (root / f"{name}.meta.json", root / name / f"{name}.meta.json"):
        try:
            return json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return {}


def _merged_sources(meta: dict) -> list[dict]:
    sources = meta.get("source", {}).get("datasets") if meta.get("format") == "merge" else None
    return [s for s in sources or [] if isinstance(s, dict) and "name" in s]


FINETUNE_TRAINS = {"adaptor": (".proj.",), "user_encoder": ("user_encoder.",)}


def apply_finetune(model: nn.Module, mode: str) -> list[str]:
    """``finetune``: ``all`` trains every parameter that is not frozen otherwise; ``adaptor`` only the
    projections between the encoders and the model (UniSRec's fixed-encoder mode with ``projection: moe``);
    ``user_encoder`` only the user encoder. Returns the names of the parameters left trainable."""
    if mode == "all":
        return [k for k, p in model.named_parameters() if p.requires_grad]
    keep = FINETUNE_TRAINS[mode]
    for key, p in model.named_parameters():
        if not any(part in f".{key}" for part in keep):
            p.requires_grad_(False)
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise PMMRecConfigError(f"finetune={mode}: the model has no parameter to train in that mode")
    logger.info("finetune=%s: %d parameter tensors train, the rest is frozen", mode, len(trainable))
    return trainable


# skip_calibration: the factors tried on the content-skip weight of a loaded model (1 = the checkpoint's own)
SKIP_FACTORS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def calibrate_skip(model: nn.Module, validate, factors=SKIP_FACTORS) -> tuple[float, dict[float, float]]:
    """``skip_calibration``: set the balance between a loaded model's learned score and its ``content_skip`` term
    for the data it now ranks. The skip weight ``w`` was trained on the source domains, where the learned score
    was worth more than on a new one; here ``w`` is multiplied by the factor of ``factors`` whose ``validate()``
    (the validation metric, higher is better, with ``w`` at that value) is highest, ties going to 1 (the
    checkpoint's own) and then to the first listed. No parameter but ``w`` changes, and ``w`` keeps training
    from the chosen value. Returns (chosen factor, {factor: score})."""
    skip = getattr(model, "skip", None)
    if skip is None:
        raise PMMRecConfigError("skip_calibration needs a content skip (content_skip > 0 or a checkpoint that has "
                                "one); set skip_calibration: False")
    if not factors:
        raise PMMRecConfigError("skip_calibration: no factor to try")
    base = skip.weight.detach().clone()
    scores: dict[float, float] = {}
    with torch.no_grad():
        for factor in factors:
            skip.weight.copy_(base * factor)
            scores[float(factor)] = float(validate())
        best = max(scores, key=lambda f: (scores[f], f == 1.0))
        skip.weight.copy_(base * best)
    logger.info("skip_calibration: content-skip weight x%g (%.4g -> %.4g); validation score by factor: %s", best,
                float(base), float(skip.weight.detach()), ", ".join(f"{f:g}: {v:.4f}" for f, v in scores.items()))
    return best, scores


def source_datasets(config) -> list[str]:
    """The datasets a run trained on: the dataset's name, or a merged dataset's sources (from its meta.json)."""
    name = str(config["dataset"])
    return [name] + [f"{name}:{s['name']}" for s in _merged_sources(_dataset_meta(config))]


def corpus(config, data_files: dict | None = None) -> dict:
    """What a checkpoint was trained on, for its header: the data set, the sha256 and size of each atomic file
    the run read (``provenance.check_atomic_files``), its counts, and for a merged data set each source's name,
    counts and file hashes (from the converters' meta.json)."""
    meta = _dataset_meta(config)
    return jsonable({
        "dataset": str(config["dataset"]),
        "files": {name: {k: info.get(k) for k in ("sha256", "bytes")} for name, info in (data_files or {}).items()},
        "counts": meta.get("counts"),
        "sources": [{k: s.get(k) for k in ("name", "counts", "sha256")} for s in _merged_sources(meta)],
    })


def save_folder(config) -> Path | None:
    """Where the ``save_pretrained`` config key says to write the trained model's components (None: nowhere).

    A folder path is used as given; ``auto`` / ``True`` means ``<checkpoint_dir>/<model>-<dataset>-pretrained``.
    """
    value = config["save_pretrained"]
    if value is None or value is False or str(value).strip() in ("", "None", "~", "False", "false"):
        return None
    if value is True or str(value).strip().lower() in ("auto", "true"):
        return Path(str(config["checkpoint_dir"])) / f"{config['model']}-{config['dataset']}-pretrained"
    return Path(os.path.expanduser(str(value)))


__all__ = [
    "COMPONENTS", "DEFAULT_COMPONENTS", "ComponentReport", "LoadReport", "load_pretrained", "parse_components",
    "read_header", "save_folder", "save_pretrained", "source_datasets", "corpus", "exportable_state", "apply_finetune",
    "calibrate_skip", "SKIP_FACTORS",
]
