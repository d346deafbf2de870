"""The classifier training loop: docs/labeling.md#loss + docs/classifier.md#recipe, exact resume, signals, DDP.

See docs/pipeline.md#reliability, docs/pipeline.md#scale.

Decisions recorded here and in docs/classifier.md:

* optimiser: SGD (PyTorch form, v ← μv + g; w ← w − lr·v, which equals Caffe's form while lr is
  constant), weight decay on every parameter, ``lr × lr_fc_mult`` on the classifier's parameters;
  ``MultiStepLR`` stepped once per epoch at ``milestones``. With ``schedule: iterations`` it is stepped after
  every iteration at ``iter_milestones``, the run stops after exactly ``iterations`` steps whatever the
  number of generated images, and every batch holds a fixed mix of real and generated images
  (:class:`~replication.training.sampler.IterationBatchSampler`); its "epochs" are blocks of ⌊N/B⌋
  iterations (N real images) for the records and evaluations only. ``history["schedule"]`` records the
  schedule and the mix, ``history["lr_drop_iteration"]`` the iterations after which the LR dropped.
* ``batch_size`` is the *global* batch; under DDP each of W processes takes ``batch_size / W``
  images (so results do not depend on W) and the loss is normalised per process, DDP averaging the
  gradients — the same as normalising by the global batch.
* the last partial batch of an epoch is dropped (see :mod:`replication.training.sampler`).
* loss in float32 on float32 logits, even under bf16 autocast; WIDER targets: −1 → 0, and with
  ``wider_unspecified: ignore`` the unspecified (0) entries of *real* images are masked out.
* ``freeze_bn``: after ``model.train()`` every BatchNorm layer is put back in eval mode
  (:func:`set_train_mode`), so it normalises with its running statistics and never updates them;
  its affine weight and bias still get gradients. The evaluation switches the whole model to eval
  mode as always, and the next epoch's :func:`set_train_mode` re-applies the freeze.
* ``bn_generated`` (``real-stats`` | ``separate``; :mod:`replication.models.domain_bn`): after the
  pretrained weights are loaded, every BatchNorm2d becomes a :class:`DomainBatchNorm2d`; each step's
  forward runs inside :func:`domain_rows` with the batch's real/generated split (from the CPU copy of
  ``is_real``, so no device sync). ``checkpoint.pt`` keeps the generated copies for an exact resume;
  ``model.pt`` holds the plain model's keys only (:func:`plain_state_dict`), which is what evaluation
  uses anyway. Each epoch logs and records (``history["bn_shift"]``, a ``bn/shift`` curve) how far the
  generated images' running means sit from the real ones' (:func:`generated_shift`). Under DDP the
  statistics are per process (as plain BN without ``sync_bn``); ``separate`` asks DDP to find unused
  parameters, since a process's share of a batch may hold no generated (or no real) image.
* non-finite losses are detected on the device without a host sync per step; every
  ``log_every`` iterations (and before every checkpoint) the flag is read, so a checkpoint is
  never written after a bad step, and the error names the first bad iteration.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from kernels.ops.soft_cross_entropy import weighted_soft_cross_entropy
from replication.console.progress import progress_on
from replication.data.dataset import ShardDataset
from replication.data.shards import ShardSet
from replication.data.transforms import CaffeTestTransform, CaffeTrainTransform
from replication.errors import ConfigError, ReplicationError, ShardError
from replication.inference.predictions import ignore_sigint, score_images
from replication.io_utils import atomic_write_text, check_output_path
from replication.locking import output_lock
from replication.models import build_model
from replication.models.domain_bn import (
    SEPARATE,
    SHARED,
    RowSplit,
    convert_domain_bn,
    domain_rows,
    generated_shift,
    plain_state_dict,
)
from replication.models.pretrained import load_pretrained
from replication.training import distributed as D
from replication.training.checkpoint import (
    CHECKPOINT,
    MODEL,
    load_checkpoint,
    non_finite_keys,
    save_checkpoint,
    save_model,
    set_rng_states,
)
from replication.training.config import (
    ITERATIONS,
    TrainConfig,
    config_from_dict,
    config_to_yaml,
    incompatible_changes,
    iterations_per_epoch,
    mix_counts,
    resolve_input_norm,
    run_input_norm,
    validate,
)
from replication.training.report import evaluate_logits, write_outputs
from replication.training.sampler import EpochBatchSampler, IterationBatchSampler, SeededDataset

log = logging.getLogger(__name__)


class TrainingError(ReplicationError):
    """Training stopped: a non-finite loss (the message names the iteration) or a bad setup."""


class TrainingInterrupted(ReplicationError):
    """SIGINT/SIGTERM: a checkpoint was written; ``--resume`` continues from it."""


def compute_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None,
                 cfg: TrainConfig) -> torch.Tensor:
    """loss of docs/labeling.md#loss (paper Eq. (3)) via ``kernels.weighted_soft_cross_entropy`` on float32 logits.

    Eq. 3 / Caffe BCE.
    """
    mode = "sigmoid" if cfg.loss == "sigmoid_bce" else "softmax"
    return weighted_soft_cross_entropy(
        logits.float(), targets, weights, mode=mode, normalize=cfg.normalize, mask=mask, backend=cfg.kernel_backend
    )


def training_targets(targets: torch.Tensor, is_real: torch.Tensor, label_kind: str, wider_unspecified: str
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(targets in [0, 1], optional N×C mask): WIDER −1/0/1 → 0/0/1; ``ignore`` masks real 0 entries."""
    if label_kind != "wider":
        return targets, None
    mask = None
    if wider_unspecified == "ignore":
        mask = (~(is_real[:, None] & (targets == 0))).to(targets.dtype)
    return targets.clamp(min=0), mask


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """``model.train()``; with ``freeze_bn`` every BatchNorm layer (SyncBatchNorm too) stays in eval mode."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


class _StopSignal:
    """Turns SIGINT/SIGTERM into a flag checked at the next sync point (a second signal aborts)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("signal %d: stopping at the next sync point and writing a checkpoint", signum)

    def __enter__(self) -> _StopSignal:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class Trainer:
    """One training run in ``out`` (see :func:`train`)."""

    def __init__(self, cfg: TrainConfig, out: Path, info: D.DistInfo) -> None:
        self.cfg, self.out, self.info = cfg, out, info
        self.dev = info.device
        on_cuda = self.dev.type == "cuda"
        self.amp = on_cuda if cfg.amp is None else cfg.amp
        self.channels_last = on_cuda if cfg.channels_last is None else cfg.channels_last
        self.epoch = 0            # completed epochs
        self.batch_in_epoch = 0   # completed batches of the current epoch
        self.global_step = 0      # completed iterations
        self.loss_sum = 0.0       # over the current epoch's completed batches (host copy at sync points)
        self.iter_mode = cfg.schedule == ITERATIONS
        self._block_lr = float("nan")   # iteration schedule: the LR of the last iteration (for the epoch record)
        self.history: dict[str, Any] = {
            k: [] for k in ("epoch", "iteration", "train_loss", "lr", "test_mAP", "images_per_s", "seconds",
                            "log_iteration", "log_loss")
        }
        self._last_eval: tuple[int, np.ndarray] | None = None
        self.domain_bn = cfg.bn_generated != SHARED
        if self.domain_bn:
            self.history["bn_shift"] = []   # per epoch: {layer: shift} (replication.models.domain_bn)

    # -- setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, d = self.cfg, self.cfg.data
        if d.train is None or d.test is None:
            raise ConfigError("config keys 'data.train' and 'data.test' must name shard sets")
        self.train_set = ShardDataset(
            d.train, CaffeTrainTransform(d.crop, d.load_size, flip=d.flip, input_norm=run_input_norm(cfg)),
            generated=d.generated, label_file=d.label_file, generated_weight=d.generated_weight,
        )
        self.label_kind = self.train_set.real.label_kind
        self.test_set = ShardSet(d.test)
        if self.test_set.class_names != self.train_set.class_names:
            raise ShardError(f"{d.test}: class names differ from the training shards {d.train}")
        self.class_names = list(self.train_set.class_names)
        self.test_transform = CaffeTestTransform(d.crop, d.load_size, mode=d.test_mode, input_norm=run_input_norm(cfg))
        n = len(self.train_set)
        if cfg.batch_size % self.info.world_size:
            raise ConfigError(
                f"config key 'batch_size': {cfg.batch_size} is not divisible by {self.info.world_size} processes"
            )
        if n < cfg.batch_size:
            raise ConfigError(f"config key 'batch_size': {cfg.batch_size} is more than the {n} training images")
        self._plan_schedule(n)

        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        model = build_model(cfg.model, len(self.class_names))
        if cfg.pretrained:
            info = load_pretrained(model, cfg.pretrained, new_head=cfg.pretrained_head == "new")
            log.info("loaded %s (left at init: %s)", cfg.pretrained, info["skipped"] or "nothing")
        if self.domain_bn:
            try:
                convert_domain_bn(model, cfg.bn_generated)
            except ValueError as e:
                raise ConfigError(f"config key 'bn_generated': {e}") from None
        if cfg.sync_bn and self.info.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.dev)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        head = {id(p) for p in model.get_classifier().parameters()}
        groups = [
            {"params": [p for p in model.parameters() if id(p) not in head], "lr": cfg.lr},
            {"params": [p for p in model.parameters() if id(p) in head], "lr": cfg.lr * cfg.lr_fc_mult},
        ]
        self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=cfg.iter_milestones if self.iter_mode else cfg.milestones, gamma=cfg.gamma
        )
        fwd: nn.Module = model
        if self.info.distributed:

            fwd = DDP(model, device_ids=[self.dev] if self.dev.type == "cuda" else None,
                      find_unused_parameters=cfg.bn_generated == SEPARATE)
        self.forward_model = torch.compile(fwd) if cfg.compile else fwd
        if self.info.is_main:
            n_gen = len(self.train_set) - self.train_set.num_real
            log.info(
                "%s: %d real + %d generated training images, %d test; C=%d; %d params; "
                "%d iterations/epoch × %d epochs; device %s × %d, amp=%s, channels_last=%s",
                cfg.model, self.train_set.num_real, n_gen, len(self.test_set), len(self.class_names),
                sum(p.numel() for p in model.parameters()), self.batches_per_epoch, self.num_epochs, self.dev,
                self.info.world_size, self.amp, self.channels_last,
            )
            if self.iter_mode:
                log.info("schedule: %d iterations, LR ×%g after iterations %s; %d real + %d generated per batch "
                         "(epochs and milestones unused)", cfg.iterations, cfg.gamma, cfg.iter_milestones or "none",
                         *self.mix)

    def _plan_schedule(self, n: int) -> None:
        """Batches per epoch and epochs of the run's schedule for ``n`` training images; under
        ``schedule: iterations`` also each batch's real/generated mix, recorded in ``history``."""
        cfg = self.cfg
        n_real = self.train_set.num_real
        if self.iter_mode:
            assert cfg.iterations is not None  # validate() checked it
            try:
                self.mix = mix_counts(n_real, n - n_real, cfg.batch_size)
            except ValueError as e:
                raise ConfigError(f"config key 'batch_size': {e}") from None
            self.batches_per_epoch = iterations_per_epoch(n_real, cfg.batch_size)
            self.num_epochs = -(-cfg.iterations // self.batches_per_epoch)
            self.history["lr_drop_iteration"] = []
            self.history["schedule"] = {
                "schedule": ITERATIONS, "iterations": cfg.iterations, "milestones": list(cfg.iter_milestones),
                "real_per_batch": self.mix[0], "generated_per_batch": self.mix[1],
                "real_images": n_real, "generated_images": n - n_real}
        else:
            self.batches_per_epoch = EpochBatchSampler.batches_per_epoch(n, cfg.batch_size)
            self.num_epochs = cfg.epochs

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "loss_sum": self.loss_sum,
            "history": self.history,
            "world_size": self.info.world_size,
            "config": self.cfg.to_dict(),
        }

    def save(self) -> None:
        if self.info.is_main:
            save_checkpoint(self.out / CHECKPOINT, self.state())
        D.barrier(self.info)

    def restore(self) -> None:
        ck = load_checkpoint(self.out / CHECKPOINT)
        if ck["world_size"] != self.info.world_size:
            raise ConfigError(
                f"{self.out / CHECKPOINT}: written by {ck['world_size']} processes, "
                f"resumed with {self.info.world_size}"
            )
        changed = incompatible_changes(config_from_dict(ck["config"]), self.cfg)
        if changed:
            raise ConfigError(f"{self.out / CHECKPOINT}: cannot resume with changed config keys {', '.join(changed)}")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.epoch, self.batch_in_epoch, self.global_step = ck["epoch"], ck["batch_in_epoch"], ck["global_step"]
        self.loss_sum, self.history = ck["loss_sum"], ck["history"]
        set_rng_states(ck["rng"])
        if self.info.is_main:
            log.info("resumed %s at epoch %d, batch %d (iteration %d)", self.out, self.epoch, self.batch_in_epoch,
                     self.global_step)

    # -- training ----------------------------------------------------------------------------------
    def epoch_length(self) -> int:
        """Iterations of the current epoch (the iteration schedule's last block may be shorter)."""
        if self.iter_mode:
            assert self.cfg.iterations is not None
            return min(self.batches_per_epoch, self.cfg.iterations - self.epoch * self.batches_per_epoch)
        return self.batches_per_epoch

    def _loader(self) -> DataLoader:
        cfg = self.cfg
        sampler: EpochBatchSampler | IterationBatchSampler
        if self.iter_mode:
            start = self.epoch * self.batches_per_epoch + self.batch_in_epoch   # = global_step
            sampler = IterationBatchSampler(
                self.train_set.num_real, len(self.train_set) - self.train_set.num_real, *self.mix, seed=cfg.seed,
                start=start, stop=start + self.epoch_length() - self.batch_in_epoch, rank=self.info.rank,
                world_size=self.info.world_size)
        else:
            sampler = EpochBatchSampler(
                len(self.train_set), cfg.batch_size, seed=cfg.seed, epoch=self.epoch, rank=self.info.rank,
                world_size=self.info.world_size, start_batch=self.batch_in_epoch, num_real=self.train_set.num_real,
            )
        return DataLoader(
            SeededDataset(self.train_set, self.train_set.num_real), batch_sampler=sampler,
            num_workers=cfg.data.num_workers, pin_memory=self.dev.type == "cuda",
            worker_init_fn=ignore_sigint if cfg.data.num_workers else None,
        )

    def _max_reached(self) -> bool:
        return self.cfg.max_iters is not None and self.global_step >= self.cfg.max_iters

    def train_epoch(self, stop: _StopSignal) -> bool:
        """Run the rest of the current epoch; True when stopped early by ``max_iters``."""
        cfg, dev = self.cfg, self.dev
        every = cfg.checkpoint_every_iters
        autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if self.amp else nullcontext()
        set_train_mode(self.model, cfg.freeze_bn)
        bad_step = torch.zeros((), dtype=torch.int64, device=dev)   # first non-finite iteration (0 = none)
        loss_acc = torch.zeros((), dtype=torch.float64, device=dev)
        length = self.epoch_length()
        pbar = tqdm(total=length, initial=self.batch_in_epoch,
                    desc=f"epoch {self.epoch + 1}/{self.num_epochs}", unit="it",
                    disable=(not self.info.is_main) or (None if progress_on(cfg.progress) else True), leave=False)
        t_sync, steps_since = time.perf_counter(), 0
        try:
            for images, targets, weights, is_real in self._loader():
                split = RowSplit.from_mask(is_real, dev) if self.domain_bn else None
                images = images.to(dev, non_blocking=True)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets, weights, is_real = targets.to(dev), weights.to(dev), is_real.to(dev)
                targets, mask = training_targets(targets, is_real, self.label_kind, cfg.wider_unspecified)
                with autocast, domain_rows(self.model, split) if split is not None else nullcontext():
                    logits = self.forward_model(images)
                loss = compute_loss(logits, targets, weights, mask, cfg)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.batch_in_epoch += 1
                self.global_step += 1
                if self.iter_mode:   # the LR schedule counts iterations
                    self._block_lr = self.optimizer.param_groups[0]["lr"]
                    self.scheduler.step()
                    if self.optimizer.param_groups[0]["lr"] != self._block_lr:
                        self.history["lr_drop_iteration"].append(self.global_step)
                steps_since += 1
                loss_d = loss.detach()
                bad_step = torch.where((bad_step == 0) & ~torch.isfinite(loss_d), self.global_step, bad_step)
                loss_acc += loss_d.double()
                ckpt_due = every > 0 and self.global_step % every == 0
                last = self.batch_in_epoch == length or self._max_reached()
                if not (ckpt_due or last or self.global_step % cfg.log_every == 0):
                    continue
                # Sync point (the same iterations on every rank): read flags, update the bar, maybe checkpoint.
                first_bad = int(bad_step)
                flags = D.any_rank(self.info, torch.tensor(
                    [float(first_bad > 0), float(stop.signum is not None), -float(first_bad or 2**52)],
                    dtype=torch.float64))
                if flags[0] > 0:
                    raise TrainingError(
                        f"{self.out}: non-finite loss at iteration {int(-flags[2])} (epoch {self.epoch + 1}); "
                        + (f"the last good checkpoint {self.out / CHECKPOINT} is kept"
                           if (self.out / CHECKPOINT).exists() else "no checkpoint was written")
                    )
                self.loss_sum += float(loss_acc)
                self.history["log_iteration"].append(self.global_step)
                self.history["log_loss"].append(
                    float(D.mean_over_ranks(self.info, loss_acc.cpu().view(1) / steps_since)[0])
                )
                loss_acc.zero_()
                now = time.perf_counter()
                rate = steps_since * cfg.batch_size / max(now - t_sync, 1e-9)
                t_sync, steps_since = now, 0
                pbar.update(self.batch_in_epoch - pbar.n)
                pbar.set_postfix(loss=f"{loss_d.item():.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2g}",
                                 img_s=f"{rate:.0f}")
                if flags[1] > 0:
                    self.save()
                    raise TrainingInterrupted(
                        f"{self.out}: interrupted by signal at iteration {self.global_step}; checkpoint saved, "
                        "continue with --resume"
                    )
                if ckpt_due and not last:
                    self.save()
                if self._max_reached():
                    return True
        finally:
            pbar.close()
        return False

    def end_epoch(self, seconds: float, images: int) -> None:
        """Step the schedule, record the epoch (with a test evaluation when due) and checkpoint."""
        cfg = self.cfg
        length = self.epoch_length()
        lr = self._block_lr if self.iter_mode else self.optimizer.param_groups[0]["lr"]
        train_loss = float(D.mean_over_ranks(self.info, torch.tensor([self.loss_sum / length]))[0])
        if not self.iter_mode:
            self.scheduler.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        self.loss_sum = 0.0
        m_ap = float("nan")
        if cfg.eval_every_epochs and (self.epoch % cfg.eval_every_epochs == 0 or self.epoch == self.num_epochs):
            logits = self.evaluate()
            if logits is not None:
                m_ap = evaluate_logits(logits, self.test_set, cfg.convention, "none")[0]["mAP"]
        h = self.history
        h["epoch"].append(self.epoch)
        h["iteration"].append(self.global_step)
        h["train_loss"].append(train_loss)
        h["lr"].append(lr)
        h["test_mAP"].append(m_ap)
        h["images_per_s"].append(images / max(seconds, 1e-9))
        h["seconds"].append(seconds)
        if self.info.is_main:
            log.info("epoch %d/%d: loss %.4f, lr %.3g, test mAP %.2f, %.0f img/s", self.epoch, self.num_epochs,
                     train_loss, lr, m_ap, h["images_per_s"][-1])
        if self.domain_bn:
            shift = generated_shift(self.model)
            h["bn_shift"].append(shift)
            if self.info.is_main:
                names = list(shift)
                shown = [names[0], names[len(names) // 2], names[-1]]
                log.info("epoch %d: BN shift of generated vs real running means (bn_generated=%s): mean %.3f; %s",
                         self.epoch, cfg.bn_generated, _mean(shift.values()),
                         ", ".join(f"{n} {shift[n]:.3f}" for n in shown))
        self.save()

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self) -> np.ndarray | None:
        """Test logits (N×C on rank 0, None elsewhere): rank r scores ``range(r, N, W)``, no padding."""
        if self._last_eval is not None and self._last_eval[0] == self.global_step:
            return self._last_eval[1]
        if self.info.distributed:  # every rank evaluates with rank 0's BN statistics
            for b in self.model.buffers():
                torch.distributed.broadcast(b, 0)
        n = len(self.test_set)
        idx = D.rank_indices(n, self.info)
        rows = score_images(
            self.model, self.test_set, self.test_transform, idx, batch_size=self.cfg.eval_batch_size, device=self.dev,
            num_workers=self.cfg.data.num_workers, amp=self.amp, channels_last=self.channels_last,
        )
        if rows.size == 0:
            rows = np.zeros((0, len(self.class_names)), dtype=np.float32)
        logits = D.gather_rows(self.info, n, idx, rows)
        self._last_eval = (self.global_step, logits)
        return logits

    def curves(self) -> dict[str, tuple[list, list]]:
        """Series for :func:`replication.report.plots.plot_curves`, x in epochs (iteration / iterations per epoch)."""
        h = self.history
        out = {"train/loss": ([i / self.batches_per_epoch for i in h["log_iteration"]], h["log_loss"])}
        if h["epoch"]:
            out["train-epoch/loss"] = (h["epoch"], h["train_loss"])
            out["test/mAP"] = (h["epoch"], h["test_mAP"])
            out["lr"] = (h["epoch"], h["lr"])
        if h.get("bn_shift"):
            out["bn/shift"] = (h["epoch"], [_mean(s.values()) for s in h["bn_shift"]])
        return out

    # -- the whole run -----------------------------------------------------------------------------
    def run(self, resume: bool) -> dict:
        cfg, out = self.cfg, self.out
        if self.info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resume and (out / CHECKPOINT).exists():
                raise ConfigError(
                    f"{out}: holds a checkpoint already; pass --resume (resume=True) or choose another folder"
                )
        D.barrier(self.info)
        self.setup()
        if resume:
            self.restore()
        if self.info.is_main:
            atomic_write_text(out / "config.yaml", config_to_yaml(cfg))
        with _StopSignal() as stop:
            while self.epoch < self.num_epochs and not self._max_reached():
                t0, b0 = time.perf_counter(), self.batch_in_epoch
                stopped = self.train_epoch(stop)
                if self.batch_in_epoch == self.epoch_length():
                    self.end_epoch(time.perf_counter() - t0, (self.batch_in_epoch - b0) * cfg.batch_size)
                if stopped:
                    self.save()
                    break
        logits = self.evaluate()
        metrics: dict = {}
        if self.info.is_main:
            save_model(out / MODEL, plain_state_dict(self.model), name=cfg.model, class_names=self.class_names,
                       config=cfg.to_dict())
            metrics = write_outputs(out, logits, self.test_set, self.history, self.curves(), convention=cfg.convention,
                                    top3=cfg.top3, title=f"{cfg.model} on {Path(cfg.data.train).name}")
        D.barrier(self.info)
        return metrics


def train(cfg: TrainConfig, out: Path, *, resume: bool = False) -> dict:
    """Train the classifier of ``cfg`` into the run directory ``out``; return the test metrics.

    Writes ``config.yaml`` (resolved), ``checkpoint.pt`` (every epoch, every
    ``checkpoint_every_iters`` iterations, on SIGINT/SIGTERM and at ``max_iters``), and at the
    end ``model.pt``, ``preds.npz``, ``metrics.json`` (:func:`replication.metrics.evaluate`),
    ``history.json``, ``curves.png`` and ``per_class_ap.png``. ``resume=True`` continues exactly
    from ``checkpoint.pt``. Under ``torchrun`` each process calls this; rank 0 writes the files
    and returns the metrics (other ranks return ``{}``).
    """
    cfg = resolve_input_norm(validate(replace(cfg, data=replace(cfg.data))))  # config.yaml records the norm used
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    bad = non_finite_keys(cfg.to_dict())
    if bad:
        raise ConfigError(f"config key {', '.join(bad)}: must be a finite number")
    d = cfg.data  # a run directory never is, holds or lies inside one of its inputs
    out = check_output_path(out, ("the training shard set", d.train or None), ("the test shard set", d.test or None),
                            ("the generated shard set", d.generated or None), ("the label file", d.label_file or None))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; give a run directory")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: the run directory is write-protected")
    info = D.init_distributed(cfg.device)
    try:
        with output_lock(out) if info.is_main else nullcontext():  # one writer per run directory
            return Trainer(cfg, Path(out), info).run(resume)
    finally:
        D.shutdown(info)
