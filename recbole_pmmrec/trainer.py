"""Trainers: RecBole's, made safe for torch >= 2.6 and configurable paths; and PMMRec's own.

``with_own_checkpoint_loading(cls)`` wraps any RecBole trainer class so that

* its best/resume checkpoint (a pickle that holds RecBole's ``Config``) is reloaded with
  ``weights_only=False`` only when it lies inside this run's ``checkpoint_dir``
  (:func:`recbole_pmmrec.compat.load_own_checkpoint`); anything else is refused;
* checkpoints are written atomically (temporary file, then rename) under a unique name, so a crash
  while saving never leaves a corrupt file and two runs started in the same second do not collide;
* TensorBoard files go to ``tensorboard_dir``.
"""

from __future__ import annotations

import os
import uuid

import recbole.trainer.trainer as recbole_trainer_module
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from recbole.utils.utils import get_local_time

from recbole_pmmrec.compat import load_own_checkpoint
from recbole_pmmrec.logger import get_tensorboard

# RecBole's trainers write TensorBoard files to a hard-coded ./log_tensorboard: point them at the config's.
recbole_trainer_module.get_tensorboard = get_tensorboard


class OwnCheckpointMixin:
    """Checkpoint handling shared by every trainer this plugin hands out."""

    def __init__(self, config, model):
        super().__init__(config, model)
        if hasattr(self, "saved_model_file"):
            name = f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:6]}.pth"
            self.saved_model_file = os.path.join(self.checkpoint_dir, name)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        target = kwargs.pop("saved_model_file", self.saved_model_file)
        tmp = f"{target}.tmp-{os.getpid()}"
        super()._save_checkpoint(epoch, verbose=False, saved_model_file=tmp, **kwargs)
        if os.path.exists(tmp):
            os.replace(tmp, target)
            if verbose:
                self.logger.info(set_color("Saving current", "blue") + f": {target}")

    def _load_own(self, path):
        return load_own_checkpoint(path, self.checkpoint_dir, map_location=self.device)

    def resume_checkpoint(self, resume_file):
        checkpoint = self._load_own(resume_file)
        self.saved_model_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        saved_model = checkpoint["config"]["model"]
        if saved_model.lower() != self.config["model"].lower():
            from recbole_pmmrec.errors import PMMRecCheckpointError

            raise PMMRecCheckpointError(
                f"checkpoint '{resume_file}' was written by model {saved_model}, not {self.config['model']}"
            )
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")
        return checkpoint

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            path = model_file or self.saved_model_file
            checkpoint = self._load_own(path)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {path}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


_WRAPPED: dict[type, type] = {}


def with_own_checkpoint_loading(trainer_class: type) -> type:
    """``trainer_class`` with :class:`OwnCheckpointMixin` in front (cached, so ``isinstance`` is stable)."""
    if issubclass(trainer_class, OwnCheckpointMixin) or not issubclass(trainer_class, Trainer):
        return trainer_class
    if trainer_class not in _WRAPPED:
        _WRAPPED[trainer_class] = type(trainer_class.__name__, (OwnCheckpointMixin, trainer_class), {
            "__module__": __name__, "__doc__": trainer_class.__doc__})
    return _WRAPPED[trainer_class]


class PMMRecTrainer(OwnCheckpointMixin, Trainer):
    """RecBole's Trainer with PMMRec's optimiser groups: the trainable encoder blocks get
    ``encoder_learning_rate`` / ``encoder_weight_decay``; projections, fusion, user encoder and heads get
    ``learning_rate`` / ``weight_decay`` (the paper: 1e-4 without decay, and 1e-4 with decay 0.1)."""

    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs and hasattr(self.model, "parameter_groups"):
            config = self.config
            encoder_lr = config["encoder_learning_rate"]
            encoder_wd = config["encoder_weight_decay"]
            kwargs["params"] = self.model.parameter_groups(
                learning_rate=self.learning_rate, weight_decay=self.weight_decay,
                encoder_learning_rate=self.learning_rate if encoder_lr is None else encoder_lr,
                encoder_weight_decay=0.0 if encoder_wd is None else encoder_wd)
        return super()._build_optimizer(**kwargs)
