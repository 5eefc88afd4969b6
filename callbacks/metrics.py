"""FAS metrics per evaluation domain, logged and written to ``val_metrics.json`` / ``test_metrics.json``.

One :class:`~fasvlm.metrics.FASMetrics` per split (val, test) and per dataloader; its states are synced over all
ranks, so every number covers the whole evaluation set (the published InstructFLIP code used one rank's shard).
Each domain is scored twice (docs/design.md, "Contracts"):

* ``paper``: the field's shared code, threshold = EER point of the domain's own scores (HTER = EER);
* ``honest``: one threshold chosen on the SOURCE validation loader (``threshold_rule``: EER point, or the lowest
  threshold with BPCER <= ``bpcer_target``) applied unchanged to every domain; APCER (worst attack type), BPCER, ACER.

At test time the honest threshold comes from the source loader of the same test run; when the test run has none, from
the last validation (kept in the callback's checkpoint state).

Logged keys (``<split>`` = ``val`` or ``test``; the source loader logs as ``source``, targets under their names):
``<split>/<domain>/{hter,eer,auc,threshold,tpr_at_fpr_<t>}`` (paper mode),
``<split>/<domain>/{hter_honest,apcer_honest,bpcer_honest,acer_honest}``, the same keys but ``threshold`` under
``<split>/mean/`` (mean over target domains, NaN-skipping) and ``<split>/threshold_honest``. Checkpoint selection
should monitor
:attr:`FASMetricsCallback.monitor`: ``val/source/hter`` (mode "min"; source data only) by default;
``select_on_targets=True`` adds ``val/mean_targets/hter`` (the published code's test-data selection) and makes it the
monitor, and the reports record that choice.

Reports (rank 0, atomic, in ``trainer.log_dir`` or ``default_root_dir``), schema ``fasvlm.fas_metrics_report/1``:
``split``, ``epoch``, ``global_step``, ``ckpt_path``, ``world_size``, ``convention``, ``grid_density``,
``fpr_targets``, ``source``, ``targets``, ``threshold`` {rule, bpcer_target, value, chosen_on}, ``selection``
{select_on_targets, monitor, selected_on_test_data, checkpoint_monitor, best_model_path, best_model_score},
``domains`` {name: {role, counts {n_frames, n_videos, n_live, n_attack, video_level, n_duplicates_dropped},
paper {fas_metrics output}, honest {fas_metrics output or null}}}, ``mean_over_targets`` {paper, honest}.
Fractions in [0, 1]; an undefined metric (e.g. HTER/AUC of a one-class domain) is NaN, written as null, and means
skip it: ``mean_over_targets.<mode>.covers`` (and the logged ``<split>/mean/<key>_covers``) say how many targets each
mean covers. Also logged per domain: ``bpcer10/20/100`` (BPCER at APCER_AP = 10/5/1 %, ISO/IEC 30107-3) and
``apcer_at_bpcer10/20/100``; the report holds APCER per attack species and APCER_AP in each mode's entry.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from fasvlm.metrics import (
    GRID_DENSITY,
    VIDEO_MEANS,
    FASData,
    FASMetrics,
    fas_metrics,
    honest_threshold,
)

__all__ = ["FASMetricsCallback", "iso_key", "iso_scalars", "loader_names", "write_json_atomic"]

Stage = Literal["val", "test"]
REPORT_SCHEMA = "fasvlm.fas_metrics_report/1"
_RESERVED = ("source", "mean", "mean_targets")
_PAPER_KEYS = ("hter", "eer", "auc", "threshold")
_HONEST_KEYS = ("hter", "apcer", "bpcer", "acer")


def loader_names(trainer: pl.Trainer, stage: Stage) -> tuple[list[str], str]:
    """Names of the evaluation dataloaders (one per ``dataloader_idx``) and the source loader's name.

    From ``trainer.datamodule.{val_names,test_names,source_name}``; without them ``dl{i}``, with ``dl0`` the source.
    """
    n = len(trainer.num_val_batches if stage == "val" else trainer.num_test_batches)
    dm = getattr(trainer, "datamodule", None)
    names = getattr(dm, "val_names" if stage == "val" else "test_names", None)
    source = getattr(dm, "source_name", None)
    if names is None or source is None:
        return [f"dl{i}" for i in range(n)], "dl0"
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(
            f"{type(dm).__name__}.{'val_names' if stage == 'val' else 'test_names'} lists {len(names)} names "
            f"({names}) but the trainer has {n} {stage} dataloaders; give one name per dataloader, in order"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"dataloader names must be unique, got {names}")
    return names, str(source)


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy/torch scalars -> Python, float dict keys -> '0.01'."""
    if isinstance(obj, Mapping):
        return {(f"{k:g}" if isinstance(k, float) else str(k)): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        obj = obj.item() if obj.numel() == 1 else obj.tolist()
        return _json_safe(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and ``os.replace`` (readers never see half)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_json_safe(obj), f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _nanmean(values: list[float]) -> tuple[float, int]:
    """Mean of the defined values (NaN/None = undefined for that domain, skipped) and how many it covers."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return (float(np.mean(vals)) if vals else math.nan), len(vals)


def iso_key(prefix: str, target: float) -> str:
    """``bpcer20`` for BPCER at APCER = 5 % (ISO/IEC 30107-3 naming), else ``bpcer_at_0.03``."""
    n = round(1.0 / target) if target > 0 else 0
    if n > 0 and abs(1.0 / n - target) < 1e-12:
        return f"{prefix}{n}"
    return f"{prefix}_at_{target:g}"


def iso_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The fixed-rate points of a :func:`~fasvlm.metrics.fas_metrics` result as flat keys (``bpcer20``, ...)."""
    out = {iso_key("bpcer", t): float(v) for t, v in metrics["bpcer_at_apcer"].items()}
    out.update({iso_key("apcer_at_bpcer", t): float(v) for t, v in metrics["apcer_at_bpcer"].items()})
    return out


class FASMetricsCallback(Callback):
    """Per-domain FAS metrics in ``fit``/``validate``/``test``; reports on rank 0 (module docstring: keys, modes).

    Args:
        threshold_rule: how the honest threshold is chosen on the source loader: "eer" or "bpcer".
        bpcer_target: the BPCER the "bpcer" rule allows (fraction).
        fpr_targets: operating points for TPR@FPR.
        positive: "attack" (label 1 = attack) or "live" (FLIP's convention, for TPR@FPR parity).
        select_on_targets: log ``val/mean_targets/hter`` and make it :attr:`monitor` (selection on test data, as the
            published code does). Off by default; the reports record it.
        grid_density: threshold grid step 1 / grid_density (the shared code: 10000).
        val_report: file name of the per-validation report in ``trainer.log_dir`` (None: none).
        test_report: file name of the test report in ``trainer.log_dir`` (None: none).
        video_mean: arithmetic of per-video means (:func:`fasvlm.metrics.fas_metrics`): None = each mode's default
            (paper: the field code of ``positive``, i.e. InstructFLIP's float32 ``np.mean`` or FLIP's float32
            ``sum/len``; honest: float64), or "instructflip" / "flip" / "float64" for both modes.
        tpr_rule: TPR@FPR rule: "roc" (the shared code) or "celeba_spoof" (CelebA-Spoof's official rule).
    """

    def __init__(
        self,
        threshold_rule: Literal["eer", "bpcer"] = "eer",
        bpcer_target: float = 0.01,
        fpr_targets: Sequence[float] = (0.01,),
        positive: Literal["attack", "live"] = "attack",
        select_on_targets: bool = False,
        grid_density: int = GRID_DENSITY,
        val_report: str | None = "val_metrics.json",
        test_report: str | None = "test_metrics.json",
        video_mean: Literal["instructflip", "flip", "float64"] | None = None,
        tpr_rule: Literal["roc", "celeba_spoof"] = "roc",
    ) -> None:
        if threshold_rule not in ("eer", "bpcer"):
            raise ValueError(f"threshold_rule must be 'eer' or 'bpcer', got {threshold_rule!r}")
        if not 0.0 <= bpcer_target <= 1.0:
            raise ValueError(f"bpcer_target is a fraction in [0, 1], got {bpcer_target}")
        if positive not in ("attack", "live"):
            raise ValueError(f"positive must be 'attack' or 'live', got {positive!r}")
        self.threshold_rule = threshold_rule
        self.bpcer_target = float(bpcer_target)
        self.fpr_targets = tuple(float(t) for t in fpr_targets)
        self.positive = positive
        self.select_on_targets = bool(select_on_targets)
        self.grid_density = int(grid_density)
        self.val_report = val_report
        self.test_report = test_report
        if video_mean is not None and video_mean not in VIDEO_MEANS:
            raise ValueError(f"video_mean must be None or one of {', '.join(VIDEO_MEANS)}, got {video_mean!r}")
        if tpr_rule not in ("roc", "celeba_spoof"):
            raise ValueError(f"tpr_rule must be 'roc' or 'celeba_spoof', got {tpr_rule!r}")
        self.video_mean = video_mean
        self.tpr_rule = tpr_rule
        self._metrics: dict[str, list[FASMetrics]] = {"val": [], "test": []}
        self.val_threshold: float | None = None  # honest threshold of the last validation (checkpointed)
        self.val_threshold_epoch: int | None = None
        self.last_report: dict[str, dict[str, Any]] = {}  # "val"/"test" -> the report last built

    # ---------------------------------------------------------------------------------------------------- selection
    @property
    def monitor(self) -> str:
        """The key to give ``ModelCheckpoint(monitor=..., mode="min")``."""
        return "val/mean_targets/hter" if self.select_on_targets else "val/source/hter"

    def state_dict(self) -> dict[str, Any]:
        return {"val_threshold": self.val_threshold, "val_threshold_epoch": self.val_threshold_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.val_threshold = state_dict.get("val_threshold")
        self.val_threshold_epoch = state_dict.get("val_threshold_epoch")

    # -------------------------------------------------------------------------------------------------------- hooks
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start("val")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start("test")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._update("val", pl_module, outputs, batch, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update("test", pl_module, outputs, batch, dataloader_idx)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:  # two batches say nothing; start clean for the first real epoch
            self._start("val")
            return
        self._finish("val", trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish("test", trainer, pl_module)

    # ------------------------------------------------------------------------------------------------------ helpers
    def _start(self, stage: Stage) -> None:
        self._metrics[stage] = []

    def _metric(self, stage: Stage, idx: int, device: torch.device) -> FASMetrics:
        metrics = self._metrics[stage]
        while len(metrics) <= idx:
            metrics.append(
                FASMetrics(fpr_targets=self.fpr_targets, positive=self.positive, grid_density=self.grid_density).to(
                    device
                )
            )
        return metrics[idx]

    def _update(self, stage: Stage, pl_module, outputs: Any, batch: Any, dataloader_idx: int) -> None:
        if not isinstance(outputs, Mapping) or "scores" not in outputs or "labels" not in outputs:
            raise KeyError(
                f"FASMetricsCallback: {'validation_step' if stage == 'val' else 'test_step'} must return a dict with "
                "'scores' (B,) = P(attack) and 'labels' (B,) long (label 1 = attack); got "
                f"{type(outputs).__name__}{'' if not isinstance(outputs, Mapping) else ' with keys ' + str(list(outputs))}"
            )
        b = batch if isinstance(batch, Mapping) else {}
        self._metric(stage, dataloader_idx, pl_module.device).update(
            outputs["scores"],
            outputs["labels"],
            video_ids=b.get("video"),
            attack_types=b.get("attack"),
            sample_ids=b.get("sample_id"),
        )

    def _choose_threshold(self, data: FASData) -> float:
        return honest_threshold(data, self.threshold_rule, bpcer_target=self.bpcer_target, positive=self.positive,
                                grid_density=self.grid_density, video_mean=self.video_mean or "float64")

    def _metrics_of(self, data: FASData, mode: str, threshold: float | None) -> dict[str, Any]:
        return fas_metrics(
            data.scores,
            data.labels,
            data.video_ids,
            mode=mode,
            threshold=threshold,
            fpr_targets=self.fpr_targets,
            attack_types=data.attack_types,
            positive=self.positive,
            grid_density=self.grid_density,
            video_mean=self.video_mean,
            tpr_rule=self.tpr_rule,
        )

    def _finish(self, stage: Stage, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        names, source = loader_names(trainer, stage)
        for name in names:
            if name in _RESERVED and name != source:
                raise ValueError(f"a target domain may not be named {name!r} (reserved for aggregate keys)")
        # every rank gathers every loader, in the same order (collective calls)
        gathered = {name: self._metric(stage, i, pl_module.device).gather() for i, name in enumerate(names)}
        self._start(stage)

        # the honest threshold: source loader of this run, else (test) the last validation's
        thr, thr_from = None, None
        src = gathered.get(source)
        if src is not None and len(src) > 0:
            try:
                thr = self._choose_threshold(src)
                thr_from = f"{source} ({'validation' if stage == 'val' else 'test'} loader of this run)"
            except ValueError as err:
                warnings.warn(f"FASMetricsCallback: no honest threshold from {source!r}: {err}", stacklevel=2)
        if stage == "val" and thr is not None:
            self.val_threshold, self.val_threshold_epoch = thr, trainer.current_epoch
        if thr is None and stage == "test" and self.val_threshold is not None:
            thr = self.val_threshold
            thr_from = f"{source} (validation at epoch {self.val_threshold_epoch})"
        if thr is None:
            warnings.warn(
                f"FASMetricsCallback: no source data ({source!r}) to choose the honest threshold on; "
                "honest metrics are skipped",
                stacklevel=2,
            )

        domains: dict[str, dict[str, Any]] = {}
        for name, data in gathered.items():
            if len(data) == 0:
                warnings.warn(f"FASMetricsCallback: {stage} loader {name!r} produced no scores", stacklevel=2)
                continue
            paper = self._metrics_of(data, "paper", None)
            honest = self._metrics_of(data, "honest", thr) if thr is not None else None
            domains[name] = {
                "role": "source" if name == source else "target",
                "counts": {
                    "n_frames": paper["n_frames"],
                    "n_videos": paper["n"],
                    "n_live": paper["n_live"],
                    "n_attack": paper["n_attack"],
                    "video_level": data.video_ids is not None,
                    "n_duplicates_dropped": data.n_duplicates,
                },
                "paper": paper,
                "honest": honest,
            }

        scalars = self._scalars(stage, domains, source, thr)
        if not trainer.sanity_checking:
            # The values come from states already synced over all ranks (identical everywhere): no reduction is
            # needed, so Lightning's advice to pass sync_dist=True for epoch-level logs does not apply here.
            warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
            for key, value in scalars.items():
                pl_module.log(
                    key,
                    value,
                    on_step=False,
                    on_epoch=True,
                    add_dataloader_idx=False,
                    sync_dist=False,
                    prog_bar=key == self.monitor,
                )

        report = self._report(stage, trainer, domains, source, thr, thr_from)
        self.last_report[stage] = report
        filename = self.val_report if stage == "val" else self.test_report
        if filename:
            directory = trainer.log_dir or trainer.default_root_dir  # log_dir broadcasts: every rank calls it
            if trainer.is_global_zero:
                write_json_atomic(os.path.join(directory, filename), report)

    def _scalars(self, stage: Stage, domains: dict, source: str, thr: float | None) -> dict[str, float]:
        out: dict[str, float] = {}
        per_target: dict[str, list[float]] = {}
        for name, d in domains.items():
            alias = "source" if d["role"] == "source" else name
            vals = {k: float(d["paper"][k]) for k in _PAPER_KEYS}
            for t, rate in d["paper"]["tpr_at_fpr"].items():
                vals[f"tpr_at_fpr_{t:g}"] = float(rate)
            vals.update(iso_scalars(d["paper"]))  # threshold-free: the same in both modes
            if d["honest"] is not None:
                vals.update({f"{k}_honest": float(d["honest"][k]) for k in _HONEST_KEYS})
            for k, v in vals.items():
                out[f"{stage}/{alias}/{k}"] = v
                if d["role"] == "target" and k != "threshold":  # a mean of per-domain thresholds means nothing
                    per_target.setdefault(k, []).append(v)
        for k, vs in per_target.items():
            # NaN (undefined for a one-class domain) is skipped; <k>_covers says over how many targets the mean ran
            out[f"{stage}/mean/{k}"], out[f"{stage}/mean/{k}_covers"] = _nanmean(vs)
        if thr is not None:
            out[f"{stage}/threshold_honest"] = float(thr)
        if stage == "val" and self.select_on_targets:
            if "hter" not in per_target:
                raise RuntimeError("select_on_targets=True but the validation has no target-domain loader to select on")
            out["val/mean_targets/hter"] = out["val/mean/hter"]
        return out

    def _report(self, stage, trainer, domains, source, thr, thr_from) -> dict[str, Any]:
        targets = [n for n, d in domains.items() if d["role"] == "target"]
        mean: dict[str, dict[str, float]] = {"paper": {}, "honest": {}}
        for mode, keys in (
            ("paper", ("hter", "eer", "auc", "apcer", "bpcer", "acer")),
            ("honest", (*_HONEST_KEYS, "eer", "auc")),
        ):
            rows = [domains[n][mode] for n in targets if domains[n][mode] is not None]
            if rows:
                covers: dict[str, Any] = {}
                for k in keys:
                    mean[mode][k], covers[k] = _nanmean([r[k] for r in rows])
                tpr, covers["tpr_at_fpr"] = {}, {}
                for t in self.fpr_targets:
                    tpr[t], covers["tpr_at_fpr"][t] = _nanmean([r["tpr_at_fpr"][t] for r in rows])
                mean[mode]["tpr_at_fpr"] = tpr
                for k in iso_scalars(rows[0]):
                    mean[mode][k], covers[k] = _nanmean([iso_scalars(r)[k] for r in rows])
                mean[mode]["n_targets"] = len(rows)
                mean[mode]["covers"] = covers  # how many targets each mean covers (undefined = NaN is skipped)
        ckpt = trainer.checkpoint_callback
        best = getattr(ckpt, "best_model_score", None)
        ckpt_monitor = getattr(ckpt, "monitor", None)
        # a monitor under val/<target>/ or val/mean.../ selects on target (= test) data
        parts = ckpt_monitor.split("/") if isinstance(ckpt_monitor, str) else []
        on_targets = len(parts) >= 3 and parts[0] == "val" and (parts[1] in targets or parts[1].startswith("mean"))
        return {
            "schema": REPORT_SCHEMA,
            "split": stage,
            "trainer_fn": str(trainer.state.fn.value) if trainer.state.fn is not None else None,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "ckpt_path": getattr(trainer, "ckpt_path", None),
            "world_size": trainer.world_size,
            "convention": {
                "positive": self.positive,
                "labels": "1 = attack, 0 = live" if self.positive == "attack" else "FLIP: 1 = live (flipped)",
                "scores": "P(attack)" if self.positive == "attack" else "1 - P(attack) = P(live)",
                "fractions": True,
            },
            "modes": {
                "paper": "shared SSDG/ViTAF/FLIP/InstructFLIP code: threshold = EER point of each domain's own "
                "scores (0..1 step 1/grid_density, then 1.1), HTER = EER",
                "honest": "one threshold chosen on the source loader and applied unchanged to every domain",
            },
            "grid_density": self.grid_density,
            "video_mean": {"paper": domains[next(iter(domains))]["paper"]["video_mean"] if domains else None,
                           "honest": self.video_mean or "float64"},
            "tpr_rule": self.tpr_rule,
            "fpr_targets": list(self.fpr_targets),
            "source": source,
            "targets": targets,
            "threshold": {
                "rule": self.threshold_rule,
                "bpcer_target": self.bpcer_target if self.threshold_rule == "bpcer" else None,
                "value": thr,
                "chosen_on": thr_from,
            },
            "selection": {
                "select_on_targets": self.select_on_targets,
                "monitor": self.monitor,
                "selected_on_test_data": bool(on_targets or (self.select_on_targets and ckpt_monitor is None)),
                "checkpoint_monitor": ckpt_monitor,
                "best_model_path": getattr(ckpt, "best_model_path", None) or None,
                "best_model_score": float(best) if best is not None else None,
            },
            "domains": domains,
            "mean_over_targets": mean,
        }
