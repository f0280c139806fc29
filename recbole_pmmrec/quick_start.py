"""``run_recbole_pmmrec``: train and evaluate any model (PMMRec or a RecBole baseline) end to end.

Never imports ``recbole.quick_start`` (it imports ray and counts FLOPs with thop at import time).

``nproc > 1`` (argument, config key or ``--nproc``) trains with that many processes
(:mod:`recbole_pmmrec.launch`); ``threads`` sets torch's threads of this process; ``resume_checkpoint`` (``--resume``) continues a killed run from its
``*.latest.pth`` (:mod:`recbole_pmmrec.trainer`). The run log records library versions, config, atomic-file
hashes and encoder-state cache directories (:mod:`recbole_pmmrec.provenance`).
"""

from __future__ import annotations

import logging
import sys

import torch
from recbole.utils import init_seed, set_color

from recbole_pmmrec import collectives, launch
from recbole_pmmrec.config import Config
from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.logger import init_logger
from recbole_pmmrec.preflight import check_output_dirs
from recbole_pmmrec.provenance import check_atomic_files, log_provenance, run_provenance
from recbole_pmmrec.utils import create_dataset, data_preparation, get_model, get_trainer


def load_config(model, dataset, config_file_list=None, config_dict=None) -> Config:
    """Build the merged config; ``model`` is a name or a model class."""
    if isinstance(model, str):
        model = get_model(model)
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    if config["threads"] is not None:  # this process's torch threads (set 1 when runs share a machine)
        torch.set_num_threads(config["threads"])
    return config


# keys a checkpoint's header records and ``~`` takes from it, with what a header written before the key reads as
# (``transfer.with_older_keys``), in the log's words
READ_BEFORE_THE_KEY = {"whiten": "raw", "score_tau": "dot products"}


def calibrate_loaded_skip(config, model, trainer, valid_data) -> None:
    """``skip_calibration`` for a model just loaded from ``pretrained``: ~ calibrates where the model has a content
    skip and there are validation rows to choose on; True demands both; False keeps the checkpoint's weight.
    (A resumed run is not calibrated again: its checkpoint holds the weight it trained from.)"""
    wanted = config.settings.get("skip_calibration")
    if wanted is False:
        return
    has_skip = getattr(model, "skip", None) is not None
    has_rows = valid_data is not None and len(valid_data._dataset) > 0
    if wanted is None and not (has_skip and has_rows):
        return
    if not has_rows:
        raise PMMRecConfigError("skip_calibration: True chooses on the validation split, which is empty here; "
                                "give the data set validation rows or set skip_calibration: False")
    from recbole_pmmrec.transfer import calibrate_skip

    metric = config["valid_metric"].lower()
    calibrate_skip(model, lambda: trainer.evaluate(valid_data, load_best_model=False, show_progress=False)[metric])


def resolve_from_checkpoint(config) -> None:
    """With ``pretrained``, ``projection: ~``, ``whiten: ~``, ``score_tau: ~``, ``hidden_size: ~`` and
    ``inner_size: ~``: the checkpoint's projection (and an adaptor's experts), widths, whitening (``raw`` for a
    checkpoint older than that key) and scores (cosine or dot products: 0 for a checkpoint older than that key),
    logged in one line each. Every builder of a model that loads a checkpoint calls it before the model is built
    (the run, and a rebuild that tests a run's best weights), so that the model has the checkpoint's layers, feeds
    them what they were trained on and scores as they were trained."""
    settings = config.settings
    open_projection = "projection" in settings and settings.projection is None
    open_recorded = [k for k in READ_BEFORE_THE_KEY if k in settings and getattr(settings, k) is None]
    open_widths = [k for k in ("hidden_size", "inner_size") if k in settings and settings[k] is None]
    if not (open_projection or open_recorded or open_widths) or not config["pretrained"]:
        return
    from recbole_pmmrec.transfer import header_architecture, read_header

    header = read_header(config["pretrained"])
    saved = header_architecture(config["pretrained"], header)
    if open_projection and saved.get("projection"):  # transferred projections keep their kind (and experts)
        config.resolve("taken from the pre-trained checkpoint", projection=saved["projection"],
                       **({"moe_experts": saved["moe_experts"]}
                          if saved["projection"] == "moe" and saved.get("moe_experts") else {}))
    widths = {k: saved[k] for k in open_widths if saved.get(k)}
    if widths:  # every transferred tensor has the checkpoint's width
        config.resolve("taken from the pre-trained checkpoint", **widths)
    for key in open_recorded:  # the projection was trained on states whitened, its vectors scored, this way
        older = key not in header.get("config", {})
        config.resolve("taken from the pre-trained checkpoint"
                       + (f" ({READ_BEFORE_THE_KEY[key]}: written before the key)" if older else ""),
                       **{key: saved[key]})


def output_dirs(config) -> dict:
    """{config key: folder} of every folder this run writes into (None: the key writes nowhere)."""
    from recbole_pmmrec.transfer import save_folder

    keys = ["checkpoint_dir", "log_dir", "tensorboard_dir"] + (["cache_dir"] if "cache_dir" in config.settings else [])
    return {**{key: config[key] for key in keys}, "save_pretrained": save_folder(config)}


def run_recbole_pmmrec(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, nproc=None,
                       epoch_callback=None):
    """Train ``model`` on ``dataset`` and evaluate it on the test split.

    Returns a dict with ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
    ``test_result`` and ``config``, like RecBole's ``run_recbole``, and the run's ``trainer``, ``dataset``,
    ``train_data``, ``valid_data`` and ``test_data``. With ``nproc > 1`` (or the config key ``nproc``) it
    spawns that many processes and returns rank 0's result (``config`` as a plain dict, no trainer or data).

    ``epoch_callback(record, trainer, valid_data)`` is called after every training epoch with ``record`` =
    ``{"epoch", "train_s", "loss", "valid_s", "valid", "score", "wall_s"}`` (the ``valid*`` values are None in
    an epoch without validation); the benchmarks record learning curves with it.
    """
    if nproc is not None:
        config_dict = dict(config_dict or {}, nproc=int(nproc))
    config = load_config(model, dataset, config_file_list, config_dict)
    # before any work: a folder that cannot be written fails here (and exists before the ranks start: RecBole's
    # ensure_dir races between them)
    check_output_dirs(output_dirs(config))
    if config["nproc"] > 1 and "local_rank" not in (config_dict or {}):
        return launch.spawn_run(run_recbole_pmmrec, config["nproc"], model, dataset, config_file_list, config_dict,
                                saved=saved, world_size=config["world_size"] or -1, ip=config["ip"],
                                port=config["port"], offset=config["offset"])
    init_seed(config["seed"], config["reproducibility"])
    log_file = init_logger(config)
    logger = logging.getLogger()
    logger.info(sys.argv)
    logger.info(config)

    data_files = check_atomic_files(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    provenance = run_provenance(config, data_files, dataset)
    log_provenance(provenance, log_file)
    train_data, valid_data, test_data = data_preparation(config, dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    resolve_from_checkpoint(config)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if config["pretrained"]:  # transfer: load (and freeze) components before the optimiser is built
        from recbole_pmmrec.transfer import load_pretrained

        load_pretrained(model, config["pretrained"], config["transfer_components"],
                        freeze=bool(config["freeze_transferred"]), config=config,
                        shrink=float(config["transfer_shrink"]))
    if "finetune" in config.settings and config.settings.finetune != "all":  # before the optimiser is built
        from recbole_pmmrec.transfer import apply_finetune

        apply_finetune(model, config.settings.finetune)
    logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.epoch_callback = epoch_callback
    if config["resume_checkpoint"]:  # continue a killed run (model, optimiser, RNG, early stopping)
        trainer.resume_checkpoint(config["resume_checkpoint"])
    elif config["pretrained"]:
        calibrate_loaded_skip(config, model, trainer, valid_data)

    trained = config["epochs"] > 0
    if trained:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"])
    else:  # zero-shot: evaluate the model as it was built (or loaded) without a training step
        best_valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=config["show_progress"])
        best_valid_score = best_valid_result[config["valid_metric"].lower()]
    if saved and trained and test_data:  # the weights the test scores: the best checkpoint's
        trainer.load_best_model()
    from recbole_pmmrec.transfer import corpus, save_folder, save_pretrained, source_datasets

    # The components are written before the test: on a large pre-training corpus the test can take as long as an
    # epoch, and a run stopped in it must not lose them. (The best model's; the last epoch's when saved=False.)
    pretrained_out = save_folder(config)
    if pretrained_out is not None and collectives.rank() == 0:
        save_pretrained(model, pretrained_out, config, source_datasets(config), corpus(config, data_files))
        logger.info(f"pretrained components: {pretrained_out}")
    if config["eval_test"] is False:  # PMMRec's key (other models: None, tested as always)
        test_result = {}
        logger.info("test evaluation skipped (eval_test: False)")
    else:
        test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])

    logger.info(set_color("best valid ", "yellow") + f": {dict(best_valid_result or {})}")
    logger.info(set_color("test result", "yellow") + f": {dict(test_result)}")
    logger.info(f"log file: {log_file}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": dict(best_valid_result or {}),  # empty when no epoch was validated (eval_step 0)
        "test_result": dict(test_result),
        "config": config,
        "checkpoint": getattr(trainer, "saved_model_file", None) if saved and trained else None,
        "log_file": log_file,
        "provenance": provenance,
        "pretrained_folder": str(pretrained_out) if pretrained_out is not None else None,
        "trainer": trainer,
        "dataset": dataset,
        "train_data": train_data,
        "valid_data": valid_data,
        "test_data": test_data,
    }
