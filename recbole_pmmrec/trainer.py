"""Trainers: RecBole's, made safe for torch >= 2.6, resumable and configurable; and PMMRec's own.

``with_own_checkpoint_loading(cls)`` wraps any RecBole trainer class so that

* its best/resume checkpoint (a pickle that holds RecBole's ``Config``) is reloaded with
  ``weights_only=False`` only when it lies inside this run's ``checkpoint_dir``
  (:func:`recbole_pmmrec.compat.load_own_checkpoint`); anything else is refused;
* checkpoints are written atomically (temporary file, then rename) under a unique name, so a crash
  while saving never leaves a corrupt file and two runs started in the same second do not collide;
* besides RecBole's best checkpoint ``NAME.pth`` (written on a new best validation score), a
  ``NAME.latest.pth`` is written at every epoch boundary: model, optimiser (and scheduler, if any),
  epoch, early-stopping state, best result, the RNG states of every rank (python, numpy, torch, cuda)
  and the training loader's shuffling generator. ``resume_checkpoint(NAME.latest.pth)`` (``--resume``)
  restores all of it at the same point of the loop, so a run killed at any moment continues to the
  same result as an uninterrupted one;
* one writer per checkpoint name: ``fit`` holds an exclusive lock on ``NAME.lock`` beside the checkpoint
  (:class:`CheckpointLock`; a resumed run writes the same NAME), and a second writer is refused with a
  :class:`PMMRecCheckpointError` naming the file and the holder's pid;
* a failed write (a full disk) removes the temporary file and names the checkpoint (:func:`write_atomically`);
* TensorBoard files go to ``tensorboard_dir``, and the writer is closed when ``fit`` ends (RecBole leaves its
  flush thread running); multi-process runs (``nproc > 1``) work on CPU (gloo).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import random
import socket
import time
import uuid
from typing import Callable

import numpy as np
import recbole.trainer.trainer as recbole_trainer_module
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color
from recbole.utils.utils import get_local_time
from torch.nn.parallel import DistributedDataParallel

from recbole_pmmrec import collectives
from recbole_pmmrec.compat import is_inside, load_own_checkpoint
from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecError
from recbole_pmmrec.logger import get_tensorboard
from recbole_pmmrec.preflight import write_failure

# RecBole's trainers write TensorBoard files to a hard-coded ./log_tensorboard: point them at the config's.
recbole_trainer_module.get_tensorboard = get_tensorboard


def _distributed_data_parallel(module, device_ids=None, **kwargs):
    """RecBole passes ``device_ids=[local_rank]``, which torch refuses for a CPU module (gloo runs)."""
    on_cpu = next(module.parameters()).device.type == "cpu"
    return DistributedDataParallel(module, device_ids=None if on_cpu else device_ids, **kwargs)


recbole_trainer_module.DistributedDataParallel = _distributed_data_parallel

LATEST_SUFFIX = ".latest.pth"
# Keys whose change between a checkpoint and the resuming run is expected (paths, devices, verbosity).
_RESUME_FREE_KEYS = {"checkpoint_dir", "log_dir", "tensorboard_dir", "resume_checkpoint", "device", "gpu_id", "use_gpu",
                     "state", "show_progress", "verbose", "epochs", "local_rank", "nproc", "world_size", "ip", "port",
                     "offset", "single_spec", "data_path", "cache_dir", "config_files", "pretrained", "save_pretrained"}
logger = logging.getLogger(__name__)


class _StopTraining(Exception):
    """Raised inside ``fit`` when the epoch callback asked to stop."""


def rng_state() -> dict:
    """The global random states this process trains with."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def write_atomically(write: Callable[[str], None], target: str) -> bool:
    """``write(tmp)`` to ``target.tmp-PID`` next to ``target``, then rename: never a half-written ``target``.

    -> whether ``write`` produced a file (RecBole's ``_save_checkpoint`` writes nothing on ranks > 0). A failed
    write (a full disk: ``OSError`` or torch's ``RuntimeError`` "basic_ios::clear" / "file write failed")
    removes the temporary file and raises a :class:`PMMRecCheckpointError` that names ``target`` and says to
    free space."""
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        write(tmp)
        if not os.path.exists(tmp):
            return False
        os.replace(tmp, target)
        return True
    except (OSError, RuntimeError) as exc:
        raise write_failure(target, exc, "checkpoint", PMMRecCheckpointError) from exc
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


def atomic_save(obj, target: str) -> None:
    """``torch.save`` through :func:`write_atomically`."""
    write_atomically(lambda tmp: torch.save(obj, tmp, pickle_protocol=4), target)


def latest_file_of(saved_model_file: str) -> str:
    """``dir/NAME.pth`` -> ``dir/NAME.latest.pth``."""
    stem = saved_model_file[:-4] if saved_model_file.endswith(".pth") else saved_model_file
    return stem + LATEST_SUFFIX


def lock_file_of(saved_model_file: str) -> str:
    """``dir/NAME.pth`` -> ``dir/NAME.lock``."""
    stem = saved_model_file[:-4] if saved_model_file.endswith(".pth") else saved_model_file
    return stem + ".lock"


class CheckpointLock:
    """An exclusive ``flock`` on ``NAME.lock`` beside the checkpoint ``NAME.pth``: one writer per checkpoint name.

    The holder writes its pid and host into the file; a second writer gets a :class:`PMMRecCheckpointError`
    naming the checkpoint, the lock file and that pid. The kernel drops the lock when the holder dies (even by
    SIGKILL), so a stale file never blocks anybody. ``release`` deletes the file while it still holds the lock;
    ``acquire`` checks that the file it locked is still the one at the path (a waiter may have opened the
    deleted one)."""

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint, self.path = checkpoint, lock_file_of(checkpoint)
        self._fh = None

    def acquire(self) -> "CheckpointLock":
        while True:
            fh = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    fh.close()
                    raise
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                fh.close()
                raise PMMRecCheckpointError(
                    f"checkpoint '{self.checkpoint}' is being written by another run (pid {holder}, lock file "
                    f"'{self.path}'): two runs must not write one checkpoint. Wait for that run to end (or stop it), "
                    f"or start this one with another --checkpoint_dir") from None
            try:
                same = os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            fh.close()  # the previous holder deleted the file between our open and flock: lock the new one
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None

    def __enter__(self) -> "CheckpointLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class OwnCheckpointMixin:
    """Checkpoint handling shared by every trainer this plugin hands out."""

    def __init__(self, config, model):
        super().__init__(config, model)
        if hasattr(self, "saved_model_file"):
            name = f"{config['model']}-{get_local_time()}-{uuid.uuid4().hex[:6]}.pth"
            # every rank must name the same file: rank 0 writes it, all ranks read it for the test
            self.saved_model_file = collectives.broadcast_object(os.path.join(self.checkpoint_dir, name))
        self._resume_state = None  # RNG / data-order state of a --resume checkpoint, applied when training starts
        self._resumed_finished = False
        self._fit_first_epoch = None
        self._save_latest = False
        self.epoch_callback = None  # epoch_callback(record, trainer, valid_data): see quick_start.run_recbole_pmmrec
        self._epoch_record = None
        self._stop_requested = False
        self._fit_clock = 0.0  # seconds of this fit, callbacks excluded
        self._valid_data = None
        self.sync_checks = 0  # training steps after which all ranks were checked to hold identical parameters
        if config["ddp_check_sync"] and collectives.is_distributed():
            self.optimizer.register_step_post_hook(self._check_ranks_in_sync)

    def _check_ranks_in_sync(self, optimizer, args, kwargs) -> None:
        """``ddp_check_sync: True``: after every optimiser step, all ranks must hold bitwise equal parameters."""
        digest = hashlib.sha256()
        for p in self.model.parameters():
            digest.update(p.detach().reshape(-1).cpu().view(torch.uint8).numpy().tobytes())
        digests = collectives.all_gather_object(digest.hexdigest())
        if len(set(digests)) > 1:
            raise PMMRecError(f"ddp_check_sync: the ranks' parameters differ after training step {self.sync_checks + 1} "
                              f"(sha256 per rank: {[d[:12] for d in digests]}); gradients were not synchronised")
        self.sync_checks += 1

    @property
    def latest_model_file(self) -> str:
        return latest_file_of(self.saved_model_file)

    # ------------------------------------------------------------------ saving
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        target = kwargs.pop("saved_model_file", self.saved_model_file)
        parent = super()
        written = write_atomically(
            lambda tmp: parent._save_checkpoint(epoch, verbose=False, saved_model_file=tmp, **kwargs), target)
        if written and verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {target}")

    def save_latest(self, epoch: int, train_data=None, finished: bool = False) -> None:
        """Write ``NAME.latest.pth``: the whole training state after ``epoch`` (all ranks must call it)."""
        rng_states = collectives.all_gather_object(rng_state())
        if collectives.rank() != 0:
            return
        generator = getattr(train_data, "generator", None)
        scheduler = getattr(self, "scheduler", None)
        state = {
            # RecBole's checkpoint keys
            "config": self.config, "epoch": epoch, "cur_step": self.cur_step, "best_valid_score": self.best_valid_score,
            "state_dict": self.model.state_dict(), "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            # what an exact continuation needs besides
            "kind": "latest", "finished": finished, "best_valid_result": self.best_valid_result,
            "train_loss_dict": dict(self.train_loss_dict), "best_model_file": os.path.basename(self.saved_model_file),
            "rng_states": rng_states, "world_size": len(rng_states),
            "data_generator": generator.get_state() if isinstance(generator, torch.Generator) else None,
            "scheduler": scheduler.state_dict() if hasattr(scheduler, "state_dict") else None,
        }
        atomic_save(state, self.latest_model_file)
        self.logger.debug(f"Saving latest: {self.latest_model_file} (epoch {epoch}, finished={finished})")

    # ------------------------------------------------------------------ training loop hooks
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        try:
            return self._fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        finally:  # whichever way fit ends (a resumed run with nothing left to train included)
            self._close_tensorboard()

    def _fit(self, train_data, valid_data, verbose, saved, show_progress, callback_fn):
        self._fit_first_epoch, self._save_latest = self.start_epoch, bool(saved)
        self._valid_data, self._fit_clock = valid_data, 0.0
        if self._resumed_finished or (self._resume_state is not None and self.start_epoch >= self.epochs):
            self.logger.info(f"Resumed run has nothing left to train (epoch {self.start_epoch} of {self.epochs})")
            return self.best_valid_score, self.best_valid_result
        # only rank 0 writes NAME.pth / NAME.latest.pth
        writes = saved and collectives.rank() == 0 and hasattr(self, "saved_model_file")
        with CheckpointLock(self.saved_model_file) if writes else contextlib.nullcontext():
            try:
                result = super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                                     show_progress=show_progress, callback_fn=self._after_epoch_callback(callback_fn))
            except _StopTraining:  # the epoch callback asked to stop (after this epoch's checkpoint)
                result = self.best_valid_score, self.best_valid_result
            if saved:
                self.save_latest(getattr(self, "_last_epoch", self.start_epoch - 1), train_data, finished=True)
        if self.sync_checks:
            self.logger.info(f"ddp_check_sync: parameters bitwise identical on all {torch.distributed.get_world_size()} "
                             f"ranks after each of {self.sync_checks} training steps")
        return result

    def _close_tensorboard(self) -> None:
        """Flush and close the run's TensorBoard writer. RecBole never closes it: its flush thread stayed alive for
        the life of the process and reopened the event file every 2 minutes (one more thread per run of a loop).
        A later write (another ``fit``) opens a new event file."""
        writer = getattr(self, "tensorboard", None)
        if writer is not None:
            writer.close()

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self._stop_requested:  # asked after an epoch without validation (its checkpoint is written by now)
            raise _StopTraining
        # The state at the start of an epoch is exactly where a resumed run picks up.
        if self._resume_state is not None:
            self._restore_run_state(train_data)
        elif self._save_latest and self._fit_first_epoch is not None and epoch_idx > self._fit_first_epoch:
            self.save_latest(epoch_idx - 1, train_data)
        self._last_epoch = epoch_idx
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        seconds = time.perf_counter() - start
        self._fit_clock += seconds
        total = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
        self._epoch_record = {"epoch": epoch_idx, "train_s": seconds, "loss": total, "valid_s": None, "valid": None,
                              "score": None, "wall_s": self._fit_clock}
        validated = self._valid_data and self.eval_step > 0 and (epoch_idx + 1) % self.eval_step == 0
        if not validated:
            self._report_epoch()
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        start = time.perf_counter()
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        seconds = time.perf_counter() - start
        self._fit_clock += seconds
        if self._epoch_record is not None:
            self._epoch_record.update(valid_s=seconds, valid={k: float(v) for k, v in result.items()},
                                      score=float(score), wall_s=self._fit_clock)
            score = self._report_epoch()["score"]
        return score, result

    def _report_epoch(self) -> None:
        """Hand the epoch's record to ``epoch_callback``. The callback may return ``"stop"`` (training ends after
        this epoch, its checkpoint written) and may set ``record["score"]``: the score early stopping and the
        best checkpoint then use for this epoch."""
        record, self._epoch_record = self._epoch_record, None
        if record is not None:
            self._log_eta(record)
        if self.epoch_callback is not None and record is not None:
            if self.epoch_callback(record, self, self._valid_data) == "stop":
                self._stop_requested = True
        return record

    def _log_eta(self, record: dict) -> None:
        """One progress line per epoch: epochs done, time so far, and an upper bound of the time left (every epoch
        still allowed at this run's mean epoch time; early stopping usually ends sooner)."""
        done = record["epoch"] + 1 - (self._fit_first_epoch or 0)
        left = max(0, self.epochs - record["epoch"] - 1)
        per_epoch = record["wall_s"] / max(done, 1)
        self.logger.info(f"epoch {record['epoch'] + 1}/{self.epochs}: {record['wall_s'] / 60:.1f} min so far, "
                         f"at most {left} epochs (~{left * per_epoch / 60:.0f} min) left; early stopping may end "
                         f"sooner")

    def _after_epoch_callback(self, callback_fn):
        """RecBole's callback_fn, run after the epoch's checkpoint: where a requested stop takes effect."""
        def after(epoch_idx, valid_score):
            if callback_fn is not None:
                callback_fn(epoch_idx, valid_score)
            if self._stop_requested:
                raise _StopTraining
        return after

    def _restore_run_state(self, train_data) -> None:
        state, self._resume_state = self._resume_state, None
        rng_states = state.get("rng_states") or []
        world, rank = len(rng_states), collectives.rank()
        if rng_states:
            if world != (torch.distributed.get_world_size() if collectives.is_distributed() else 1):
                self.logger.warning(f"checkpoint was written by {world} process(es); random states are restored per "
                                    f"rank where they exist, so the continued run is not an exact replay")
            set_rng_state(rng_states[min(rank, world - 1)])
        generator = getattr(train_data, "generator", None)
        if state.get("data_generator") is not None and isinstance(generator, torch.Generator):
            generator.set_state(state["data_generator"].cpu())

    # ------------------------------------------------------------------ loading
    def _load_own(self, path):
        return load_own_checkpoint(path, self.checkpoint_dir, map_location=self.device)

    def resume_checkpoint(self, resume_file):
        """Continue training from ``resume_file``: a ``*.latest.pth`` (exact continuation) or a best checkpoint
        (RecBole's resume: weights, optimiser and early-stopping state, but not the random states)."""
        resume_file = str(resume_file)
        if not is_inside(resume_file, self.checkpoint_dir):
            raise PMMRecCheckpointError(
                f"cannot resume from '{resume_file}': it is not inside checkpoint_dir '{self.checkpoint_dir}'. Training "
                f"checkpoints are pickles and are only read from the run's own folder; pass "
                f"--checkpoint_dir={os.path.dirname(os.path.abspath(resume_file))} to resume from it.")
        checkpoint = self._load_own(resume_file)
        needed = ("config", "epoch", "cur_step", "best_valid_score", "state_dict", "optimizer")
        if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in needed):
            have = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise PMMRecCheckpointError(
                f"'{resume_file}' is not a training checkpoint of RecBole / recbole-pmmrec (it needs {list(needed)}, "
                f"has {have}); resume from a NAME.latest.pth or NAME.pth that a training run wrote.")
        saved_model = str(checkpoint["config"]["model"])
        if saved_model.lower() != self.config["model"].lower():
            raise PMMRecCheckpointError(
                f"checkpoint '{resume_file}' was written by model {saved_model}, not {self.config['model']}; "
                f"resume with --model={saved_model}, or start a new run without --resume")
        self._warn_config_changes(checkpoint["config"], resume_file)
        try:
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler = getattr(self, "scheduler", None)
            if checkpoint.get("scheduler") is not None and hasattr(scheduler, "load_state_dict"):
                scheduler.load_state_dict(checkpoint["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise PMMRecCheckpointError(
                f"checkpoint '{resume_file}' does not fit this {self.config['model']} (another architecture or "
                f"optimiser set-up?): {str(exc)[:500]}; resume with the config the checkpoint was trained with"
            ) from exc
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.best_valid_result = checkpoint.get("best_valid_result", self.best_valid_result)
        self.train_loss_dict = dict(checkpoint.get("train_loss_dict") or {})
        if checkpoint.get("kind") == "latest":
            self.saved_model_file = os.path.join(os.path.dirname(resume_file), checkpoint["best_model_file"])
            self._resume_state = {k: checkpoint.get(k) for k in ("rng_states", "data_generator")}
            self._resumed_finished = bool(checkpoint.get("finished"))
        else:
            self.saved_model_file = resume_file
            self._resume_state = {}
            self.logger.warning(
                f"{resume_file} is a best-score checkpoint: weights, optimiser and early stopping are restored, the "
                f"random states and data order are not, so the run continues differently from an uninterrupted one. "
                f"Resume from {os.path.basename(latest_file_of(resume_file))} for an exact continuation.")
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")
        return checkpoint

    def _warn_config_changes(self, saved_config, resume_file) -> None:
        saved = getattr(saved_config, "final_config_dict", saved_config)
        if not isinstance(saved, dict):
            return
        now = self.config.final_config_dict
        changed = sorted(k for k in set(saved) | set(now)
                         if k not in _RESUME_FREE_KEYS and str(saved.get(k)) != str(now.get(k)))
        if changed:
            self.logger.warning(f"resuming from {resume_file} with a config that differs in {changed[:20]}: "
                                f"the continued run is not the one the checkpoint started")

    def load_best_model(self, model_file=None) -> str:
        """Load the weights of ``model_file`` (default: this run's best checkpoint) into the model, without
        evaluating anything; returns the path read. Every rank of a distributed run must call it."""
        collectives.barrier()  # rank 0 may still be writing the best checkpoint
        path = model_file or self.saved_model_file
        checkpoint = self._load_own(path)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        self.logger.info(f"Loading model structure and parameters from {path}")
        return path

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            self.load_best_model(model_file)
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
