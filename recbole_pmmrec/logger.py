"""Logging set-up: RecBole's console and file format, with the folders taken from the config.

``log_dir`` (default ``./log``) and ``tensorboard_dir`` (default ``./log_tensorboard``) are plugin
keys; RecBole 1.2.1 hard-codes both folders.
"""

from __future__ import annotations

import hashlib
import logging
import os

import colorlog
from colorama import init as colorama_init
from recbole.utils.logger import RemoveColorFilter, log_colors_config
from recbole.utils.utils import get_local_time

# Set by init_logger from the config; read by get_tensorboard, which RecBole's trainer calls with the
# logger only.
_tensorboard_dir = "log_tensorboard"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


def init_logger(config) -> str:
    """Log to the console and to ``{log_dir}/{model}/{model}-{dataset}-{time}-{hash}.log``.

    Returns the log file's path. Handlers from an earlier run in the same process are replaced.
    """
    global _tensorboard_dir
    _tensorboard_dir = config["tensorboard_dir"]
    colorama_init(autoreset=True)
    model_dir = os.path.join(config["log_dir"], config["model"])
    os.makedirs(model_dir, exist_ok=True)
    digest = hashlib.md5("".join(str(v) for v in config.final_config_dict.values()).encode()).hexdigest()[:6]
    path = os.path.join(model_dir, f"{config['model']}-{config['dataset']}-{get_local_time()}-{digest}.log")
    level = _LEVELS.get(str(config["state"] or "info").lower(), logging.INFO)

    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S"))
    file_handler.addFilter(RemoveColorFilter())
    stream_handler = logging.StreamHandler()
    stream_handler.setFormatter(colorlog.ColoredFormatter(
        "%(log_color)s%(asctime)-15s %(levelname)s  %(message)s", "%d %b %H:%M", log_colors=log_colors_config))

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in (file_handler, stream_handler):
        handler.setLevel(level)
        root.addHandler(handler)
    root.setLevel(level)
    return path


def get_tensorboard(logger=None):
    """A SummaryWriter under ``tensorboard_dir``, named after the current log file (RecBole's rule).

    Same signature as ``recbole.utils.get_tensorboard``, which ``recbole_pmmrec.trainer`` replaces
    with it."""
    from torch.utils.tensorboard import SummaryWriter

    name = None
    for handler in logging.getLogger().handlers:
        if hasattr(handler, "baseFilename"):
            name = os.path.basename(handler.baseFilename).rsplit(".", 1)[0]
            break
    name = name or f"model-{get_local_time()}"
    return SummaryWriter(os.path.join(_tensorboard_dir, name))
