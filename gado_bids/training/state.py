"""A training run's state: model, optimiser, learning-rate schedule, random generator and
counters, saved whole in every checkpoint so a resumed run continues exactly; and the time limit
that cuts the epoch count."""
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from gado_bids import atomic

LOG = logging.getLogger("gadosynth.train")


class TrainingState:
    """Model, optimiser, schedule and counters: everything a checkpoint holds. epochs may be cut
    by a time limit (the learning-rate decay follows, through total_steps)."""

    def __init__(self, model, config, device, n_train: int, borrowed: dict = None):
        self.model, self.config = model, config
        # what a scratch model borrowed (loop._initial_model), for best.pt's meta and the
        # summary: derived from the options, not checkpointed (recomputed on resume)
        self.borrowed = borrowed or {}
        self.optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        self.scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
        self.epochs = config.epochs
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser, lambda step: min(1.0, 2.0 * (1 - step / max(self.total_steps, 1)))
            + 0.02)
        self.start_epoch, self.step, self.best = 1, 0, float("inf")

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def save(self, path: Path, epoch: int):
        with atomic.atomic_path(path) as temporary:
            torch.save({"model": self.model.state_dict(),
                        "optimiser": self.optimiser.state_dict(),
                        "scaler": self.scaler.state_dict() if self.scaler else None,
                        "generator": self.generator.get_state(), "epoch": epoch,
                        "step": self.step, "best_val_loss": self.best,
                        "config": {**asdict(self.config), "epochs": self.epochs}}, temporary)

    def resume(self, path: Path, device):
        state = torch.load(path, map_location=device, weights_only=False)
        if state["config"]["model"] != self.config.model or \
                state["config"]["seed"] != self.config.seed:
            raise ValueError(f"{path} is from another model or seed: use a new work folder")
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.start_epoch, self.step = state["epoch"] + 1, state["step"]
        self.best = state["best_val_loss"]
        if self.config.max_minutes > 0:  # the epoch count the time limit settled on
            self.epochs = min(self.epochs, state["config"]["epochs"])
        self.schedule.last_epoch = self.step
        for group in self.optimiser.param_groups:
            group["lr"] = self.config.learning_rate * self.schedule.lr_lambdas[0](self.step)
        LOG.info("resumed from %s: epoch %d, step %d", path, state["epoch"], self.step)

    def fit_to_time_limit(self, epoch, started, epoch_seconds, validation_seconds):
        """Once a training epoch and a validation have been timed (not the run's first epoch,
        which pays for warm-up), cut the epoch count so the run ends within max_minutes."""
        config = self.config
        per_epoch = 1.05 * (epoch_seconds + validation_seconds / config.validate_every)
        left = config.max_minutes * 60 - (time.time() - started)
        fitted = max(epoch, epoch + int(left // per_epoch))
        if fitted < self.epochs:
            LOG.info("time limit %.1f min: %d epochs instead of %d (%.1f s per epoch)",
                     config.max_minutes, fitted, self.epochs, per_epoch)
            self.epochs = fitted
