"""A training session: everything a run is set up with before its first step (the store and
its splits, device and DDP, normalisation, the step, validation, early stopping, the time
budget), and how its state becomes a checkpoint (`info`, `state`, `save`) or a stop (`_preempt`,
`_diverged`). The loop that runs it is `seg.training.loop.Trainer`.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import torch.distributed as dist

from seg import fs as segfs
from seg.checkpoint import CheckpointInfo
from seg.config import TrainConfig
from seg.data.dataset import build_datasets, open_data, scene_facts
from seg.data.scene_metadata import MetadataCodec
from seg.data.window_prep import Normalisation
from seg.errors import CheckpointError, Diverged, Preempted
from seg.locks import FolderLock
from seg.models.unet import check_scale
from seg.provenance import code_provenance
from seg.report import SILENT, Reporter
from seg.training import run_folder, runtime
from seg.training.band_count import resolve_augment
from seg.training.budget import MIN_EPOCH_STEPS, VAL_WINDOWS, Budget, Horizon
from seg.training.class_balance import balanced_weights
from seg.training.resolution import resolve_scale
from seg.training.steps import Step, StepSpec
from seg.training.trainers import build_step
from seg.training.validation import EarlyStopping, Validator, check_metric_name
from seg.training.window_draws import WindowDraws


class Session:
    def __init__(
        self,
        cfg: TrainConfig,
        data: str,
        out: str,
        *,
        resume: str | None = None,
        gpus: str | None = None,
        reporter: Reporter = SILENT,
    ) -> None:
        self.reporter = reporter if runtime.rank_is_main() else SILENT
        gpu_list = runtime.parse_gpus(gpus)
        self.ddp = runtime.init_distributed(runtime.wants_cuda(cfg.train, gpu_list))
        self.cfg, self.out = cfg, out
        self.data = info = open_data(data, cfg.data)
        self.classes, self.bands, self.size = info.classes, info.bands, info.size
        self.device = runtime.select_device(cfg.train, gpu_list, self.ddp)
        # model.scale, augment.illumination, cut_mix, data.num_workers: auto -> numbers, saved
        cfg = resolve_scale(cfg, info)
        cfg = runtime.resolve_workers(cfg, self.device, segfs.is_remote(data))
        self.cfg = cfg = resolve_augment(cfg, info.bands)
        self.provenance = {**code_provenance(), "data": data, "store": info.store.fingerprint()}
        check_metric_name(cfg.early_stopping.metric, self.classes)
        crop = cfg.augment.crop
        sizes = {"window": info.size}
        if crop is not None and crop < info.size:
            sizes["training crop (augment.crop)"] = crop
        check_scale(float(cfg.model.scale), sizes)
        if cfg.model.name == "pix2pix":
            cfg.pix2pix.check_fits(sizes)
        if self.ddp.is_main:
            segfs.check_writable(out)
        self.resume_from = run_folder.choose_resume(out, resume)
        resume_path, state = self.resume_from or ("", None)
        bands, amp = info.bands, runtime.amp_dtype(cfg.train, self.device)
        runtime.preflight(cfg, self.device, bands=bands, size=info.size, amp=amp is not None)
        runtime.seed_everything(cfg.train.seed + self.ddp.rank, cfg.train.deterministic)
        if state:
            run_folder.check_compatible(
                state,
                resume_path,
                model_name=cfg.model.name,
                in_channels=bands,
                num_classes=len(self.classes),
            )
        self.norm = (
            Normalisation.from_json(state["band_stats"])
            if state
            else Normalisation.from_store(info.store, info.train_ids)
        )
        self.codec = self._metadata_codec(state, resume_path)
        # A budgeted run validates on an evenly spaced subsample unless data.max_val_windows says.
        cap = VAL_WINDOWS if cfg.train.time_budget_s else None
        self.train_set, val_set = build_datasets(info, self.norm, cfg, cap, codec=self.codec)
        # The training labels' class shares: the checkpoint keeps them for seg predict's
        # adaptation to each scene's own shares (seg.inference.priors).
        k = len(self.classes)
        self.draws, self.class_prior = WindowDraws.build(self.train_set, cfg.data, k)
        if spread := self.draws.spread():
            self.reporter.note(
                f"rare-class sampling over {len(self.train_set)} windows: drawn {spread[0]:.2f}x"
                f" to {spread[1]:.2f}x as often as uniform"
            )
        if cfg.loss.class_weights == "auto":
            weights = balanced_weights(self.class_prior)
            self.reporter.note(
                "class weights (auto): "
                + ", ".join(f"{c} {w:g}" for c, w in zip(self.classes, weights, strict=True))
            )
            loss = cfg.loss.model_copy(update={"class_weights": weights})
            self.cfg = cfg = cfg.model_copy(update={"loss": loss})
        if info.val_from_train:
            self.reporter.warn(
                f"split {cfg.data.val_split!r} has no scenes in {data}: validating on training"
                " windows (optimistic figures); tile more scenes to hold some out, or re-tile"
                " with --set splits.blocks=true to hold out blocks inside the scenes"
            )
        d = cfg.data
        per_rank = len(self.train_set) // (d.batch_size * self.ddp.world)
        # A budgeted run's epochs are at least MIN_EPOCH_STEPS long (several passes over a small
        # store): every epoch restarts the DataLoader workers, which costs seconds.
        shortest = MIN_EPOCH_STEPS if cfg.train.time_budget_s else 1
        self.steps_per_epoch = cfg.train.steps_per_epoch or max(shortest, per_rank)
        # With a time budget the budget ends the run (epochs cap it only when given).
        budget = cfg.train.time_budget_s
        self.epochs = cfg.train.epochs or (10**9 if budget else 10)
        total = self.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.train.max_steps or total)
        self.horizon = Horizon(min(self.total_steps, 1000) if budget else self.total_steps)
        self.plan = Budget(budget, self.horizon) if budget else None
        self.val_windows, self.windows_seen = len(val_set), 0
        spec = StepSpec(
            in_channels=bands,
            num_classes=len(self.classes),
            device=self.device,
            amp_dtype=amp,
            channels_last=cfg.train.channels_last,
            compile=cfg.train.compile,
            total_steps=self.horizon.steps,
            horizon=self.horizon,
            distributed=self.ddp.enabled,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            reporter=self.reporter,
            conditioning=self._conditioning(),
        )
        self.spec = spec
        self.step: Step = build_step(cfg, spec)
        self.draws.attach(self.step, cfg.model.name)
        if cfg.model.encoder_weights and not state:
            from seg.models.unet import load_encoder_weights

            load_encoder_weights(self.step.generator, cfg.model.encoder_weights)
        if cfg.model.init_from and not state:
            from seg.training.warm_start import warm_start

            warm_start(
                self.step.generator,
                cfg.model.init_from,
                bands=bands,
                classes=self.classes,
                reporter=self.reporter,
            )
        names = self.classes
        self.validator = Validator(val_set, cfg, self.device, ddp=self.ddp, class_names=names)
        self.stopping = EarlyStopping(cfg.early_stopping)
        self.epoch = self.global_step = self.batch_in_epoch = 0
        self.lr_applied = 0.0  # the lr_id of the last control.json LR request applied
        if state:
            self.lr_applied = float(state.get("lr_applied", 0.0))
            self.step.load_state_dict(state)
            self.epoch, self.global_step = int(state["epoch"]), int(state["step"])
            self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
            self.stopping.load_state_dict(state.get("early_stopping", {}))
            self.draws.load_state_dict(state.get("draws", {}))
            self.validator.load_state_dict(state)
            run_folder.set_rng_state(state["rng"])
        self.signal: str | None = None
        # Last, after every check: one writer per run folder (a second `seg train --out` into
        # it is refused), and what a killed writer left half-written is removed.
        self.lock = FolderLock(out, "seg train")
        if self.ddp.is_main:
            self.lock.acquire()
            segfs.remove_stale_temporaries(out)

    def describe_run(self) -> None:
        """run.json: what this run trains on and how big it is (parameters, windows): `seg ui`
        shows it and resumes from it."""
        params = sum(p.numel() for p in self.step.generator.parameters())
        facts = {
            "data": self.provenance["data"],
            "parameters": params,
            "train_windows": len(self.train_set),
            "val_windows": self.val_windows,
            "window": self.size,
            "model_scale": self.cfg.model.scale,
            "bands": self.bands,
            "classes": list(self.classes),
            "started": time.time(),
            "budget_s": self.cfg.train.time_budget_s,
        }
        segfs.write_bytes_atomic(segfs.join(self.out, "run.json"), json.dumps(facts).encode())

    # -- checkpoints ---------------------------------------------------------------------------

    def info(self) -> CheckpointInfo:
        """What `seg predict` needs to know about the network this run trains."""
        return CheckpointInfo(
            model=self.spec.model_section(self.cfg),
            class_names=tuple(self.classes),
            bands=tuple(self.data.band_ids),
            mean=tuple(float(x) for x in self.norm.mean),
            std=tuple(float(x) for x in self.norm.std),
            size=self.size,
            dtype=self.data.dtype,
            normalise=self.cfg.data.normalise,
            provenance=self.provenance,
            metadata=self.codec.to_json() if self.codec else None,
            class_prior=tuple(round(float(x), 6) for x in self.class_prior),
            calibration=cal.to_json() if (cal := self.validator.calibration) else None,
        )

    def _metadata_codec(self, state: dict[str, Any] | None, path: str) -> MetadataCodec | None:
        """The metadata encoding: fitted on the train split, or the resumed checkpoint's."""
        fields = self.cfg.model.metadata
        if state is not None:
            saved = state.get("metadata")
            codec = MetadataCodec.from_json(saved) if saved else None
            if (codec.names if codec else []) != [f.name for f in fields]:
                raise CheckpointError(
                    f"checkpoint {path} is conditioned on {codec.names if codec else []}, this"
                    f" run on {[f.name for f in fields]} (model.metadata); resume with the same"
                    " fields, or use another --out"
                )
            return codec
        if not fields:
            return None
        codec = MetadataCodec.fit(fields, scene_facts(self.data, self.data.train_ids))
        self.reporter.note(
            "conditioned on scene metadata ("
            + self.cfg.model.metadata_mechanism
            + "): "
            + ", ".join(f"{f.name} ({f.kind})" for f in codec.fields)
        )
        return codec

    def _conditioning(self) -> dict[str, Any] | None:
        """The conditioner's shape for the model section (seg.models.conditioning)."""
        if self.codec is None:
            return None
        m = self.cfg.model
        return {
            "widths": self.codec.widths,
            "mechanism": m.metadata_mechanism,
            "hidden": m.metadata_hidden,
            "dropout": m.metadata_dropout,
        }

    def state(self) -> dict[str, Any]:
        return {
            **self.info().to_state(),
            "config": self.cfg.model_dump(mode="json"),
            **self.step.state_dict(),
            "epoch": self.epoch,
            "step": self.global_step,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": run_folder.rng_state(),
            "early_stopping": self.stopping.state_dict(),
            "lr_applied": self.lr_applied,
            "draws": self.draws.state_dict(),
        }

    def save(self, *names: str) -> None:
        """Save on rank 0: periodic snapshots first, `last.pt` (and the pointer) last."""
        if self.ddp.is_main:
            run_folder.save_run_checkpoints(
                self.out, list(names), self.state(), self.cfg.checkpoint.keep
            )
        if self.ddp.enabled:
            dist.barrier()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signal = signal.Signals(signum).name

    def _preempt(self) -> Preempted:
        self.save()
        where = segfs.join(self.out, "last.pt")
        return Preempted(
            f"stopped by {self.signal or 'a signal'} at step {self.global_step}; checkpoint saved"
            f" to {where}; run the same command with --resume auto to continue"
        )

    def _diverged(self, loss: float) -> Diverged:
        last = run_folder.find_resume(self.out) if self.ddp.is_main else None
        kept = (
            f"the last good checkpoint is {last[0]} (step {last[1]['step']})"
            if last
            else "no checkpoint was written yet"
        )
        return Diverged(
            f"loss became {loss} at step {self.global_step + 1}; stopped, {kept}."
            " Lower optim.lr, keep optim.grad_clip set, or check the data for NaN/inf values"
        )
