"""The ``fasvlm`` command: LightningCLI (fit/validate/test/predict) plus tool subcommands.

One run directory holds everything of a run (``trainer.default_root_dir``, by default ``runs/<config name>``)::

    <run>/config.yaml          resolved config (overwritten on requeue/resume)
    <run>/events.out.tfevents.*   TensorBoard (fixed logger version: a requeued job continues the same run)
    <run>/checkpoints/{best,last}.ckpt
    <run>/val_metrics.json, <run>/test_metrics.json

Tool subcommands are dispatched before LightningCLI parses anything: ``fasvlm synth``, ``prepare``, ``caption``,
``bench``, ``export``; ``fasvlm predict --model ... --input ...`` scores files (:mod:`fasvlm.tools.predict`), while
``fasvlm predict --config ...`` is LightningCLI's predict on a dataset config.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

__all__ = ["main", "TOOLS"]

# subcommand -> "module:function" taking argv (list[str]) and returning an exit code
TOOLS: dict[str, tuple[str, str]] = {
    "synth": ("fasvlm.data_modules.synthetic.cli:main", "generate synthetic FAS data in the official layouts"),
    "prepare": ("fasvlm.data_modules.prepare:main", "index a dataset release, sample frames, crop faces -> manifest"),
    "caption": ("fasvlm.captioning.cli:main", "spoof-aware captioning (SCF) and instruction data"),
    "bench": ("fasvlm.tools.bench:main", "measure FLOPs, throughput and MFU of a config"),
    "export": ("fasvlm.tools.export:main", "export trainable weights (safetensors + config) / convert DeepSpeed checkpoints"),
    "demo": ("fasvlm.tools.demo:main", "Gradio app: upload an image or a short video, see the decision"),
}

_DESCRIPTION = "fasvlm: vision-language face anti-spoofing with PyTorch Lightning.\n\nTool subcommands:\n" + "\n".join(
    f"  {name:<9} {help_}" for name, (_, help_) in TOOLS.items()
) + "\n(run `fasvlm <tool> --help`)."


def _run_tool(name: str, argv: list[str]) -> int:
    target, _ = TOOLS[name]
    module_name, func = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            print(f"fasvlm {name}: not available in this version", file=sys.stderr)
            return 2
        raise
    return int(getattr(module, func)(argv) or 0)


def callback_groups() -> dict[str, type]:
    """The callbacks FASCLI adds, by config key (``metrics:``, ``checkpoint:`` ... in the YAML configs)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from fasvlm.callbacks import FASFiguresCallback, FASMetricsCallback
    from fasvlm.callbacks.predictions import PredictionsWriter

    return {"metrics": FASMetricsCallback, "figures": FASFiguresCallback, "predictions": PredictionsWriter,
            "checkpoint": ModelCheckpoint, "last_checkpoint": ModelCheckpoint}


def _build_cli_class():
    from lightning.pytorch.cli import LightningCLI

    class FASCLI(LightningCLI):
        """LightningCLI with the project's defaults: metrics callback, checkpointing on source validation, one run dir."""

        def add_arguments_to_parser(self, parser) -> None:
            for key, cls in callback_groups().items():
                parser.add_lightning_class_args(cls, key)
            # best.ckpt: model selection on the source validation set (never on target test data by default)
            parser.set_defaults({
                "checkpoint.filename": "best",
                "checkpoint.monitor": "val/source/hter",
                "checkpoint.mode": "min",
                "checkpoint.save_last": False,
                "checkpoint.save_top_k": 1,
                "checkpoint.enable_version_counter": False,
                "checkpoint.auto_insert_metric_name": False,
            })
            # last.ckpt: the latest state, always (Lightning's save_last writes only when the monitored top-k
            # checkpoint is written too). Set last_checkpoint.every_n_train_steps to bound work lost to a crash.
            parser.set_defaults({
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.save_last": False,
                "last_checkpoint.enable_version_counter": False,
                # also at the end of an epoch cut short by max_steps, so the final state is never lost
                "last_checkpoint.save_on_train_epoch_end": True,
            })

        def before_instantiate_classes(self) -> None:
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            trainer = cfg.trainer
            if not trainer.default_root_dir:
                configs = cfg.get("config") or []
                stem = Path(str(configs[-1])).stem if configs else "default"
                trainer.default_root_dir = str(Path("runs") / stem)
            root = trainer.default_root_dir
            _limit_cpu_threads(trainer, cfg)
            if trainer.enable_progress_bar is not False:
                from jsonargparse import Namespace

                callbacks = list(trainer.callbacks or [])
                if not any("ProgressBar" in str(getattr(c, "class_path", type(c).__name__)) for c in callbacks):
                    callbacks.append(Namespace(class_path="lightning.pytorch.callbacks.RichProgressBar",
                                               init_args=Namespace(leave=True)))
                trainer.callbacks = callbacks
            if cfg.checkpoint.dirpath is None:
                cfg.checkpoint.dirpath = str(Path(root) / "checkpoints")
            if cfg.last_checkpoint.dirpath is None:
                cfg.last_checkpoint.dirpath = cfg.checkpoint.dirpath
            if trainer.logger is None or trainer.logger is True:
                from jsonargparse import Namespace

                # fixed version: fit, test and a requeued job all write into the same run directory
                trainer.logger = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                                           init_args=Namespace(save_dir=root, name="", version="",
                                                               default_hp_metric=False))
            ckpt = cfg.get("ckpt_path")
            if self.subcommand == "fit" and ckpt == "last":
                # None on a job's first launch: nothing to resume yet (no "no last checkpoint" warning)
                cfg.ckpt_path = _newest_resume_checkpoint(Path(root), Path(cfg.checkpoint.dirpath))
            if self.subcommand in ("validate", "test", "predict") and ckpt == "best":
                # "best" only exists in the process that ran fit; a later `fasvlm test` finds it on disk
                best = Path(cfg.checkpoint.dirpath) / "best.ckpt"
                if not best.exists():  # a file, or a directory for DeepSpeed/FSDP checkpoints
                    raise FileNotFoundError(f"--ckpt_path best: {best} does not exist; run `fasvlm fit` with the same "
                                            "--config and --trainer.default_root_dir first, or pass a checkpoint path")
                cfg.ckpt_path = str(best)

        def after_test(self) -> None:
            # trainer.log_dir broadcasts under DDP: every rank must ask for it, only rank 0 prints
            path = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "test_metrics.json"
            if self.trainer.is_global_zero:
                _print_metrics_table(path)

    return FASCLI


def _limit_cpu_threads(trainer, cfg) -> None:
    """On CPU runs, leave one core per dataloader worker: torch's intra-op threads plus the workers must not
    oversubscribe the cores (measured on 2 cores: 0.12 s per I-FAS-tiny step with 1 thread, 1.3 s with 2 threads and
    2 workers). An explicit OMP_NUM_THREADS wins."""
    import os

    if os.environ.get("OMP_NUM_THREADS") or str(trainer.get("accelerator")) not in ("cpu",):
        return
    import torch

    workers = (cfg.get("data") or {}).get("init_args", {}).get("num_workers", 0) or 0
    devices = trainer.get("devices")
    processes = devices if isinstance(devices, int) and devices > 0 else 1
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes - int(workers)))


def _newest_resume_checkpoint(root: Path, ckpt_dir: Path) -> str | None:
    """The newest of ``last.ckpt`` and Lightning's SLURM ``hpc_ckpt_*.ckpt`` (written on SIGUSR1 before a requeue).

    Lightning's own ``ckpt_path="last"`` ignores HPC checkpoints, and loads them only when ``ckpt_path`` is None; so a
    requeued ``fasvlm fit ... --ckpt_path last`` would restart from an older ``last.ckpt``. None when neither exists
    (Lightning then starts from scratch, as on a job's first launch).
    """
    candidates = [p for p in [ckpt_dir / "last.ckpt", *root.glob("hpc_ckpt_*.ckpt")] if p.exists()]
    return str(max(candidates, key=_mtime)) if candidates else None


def _mtime(path: Path) -> float:
    """Modification time of a checkpoint file, or of the newest file inside a DeepSpeed/FSDP checkpoint directory."""
    if path.is_dir():
        return max((f.stat().st_mtime for f in path.rglob("*") if f.is_file()), default=path.stat().st_mtime)
    return path.stat().st_mtime


def _print_metrics_table(path: Path) -> None:
    """Per-domain table of the paper-mode and honest-mode metrics written by FASMetricsCallback."""
    if not path.is_file():
        return
    from rich.console import Console
    from rich.table import Table

    report = json.loads(path.read_text())
    table = Table(title=f"FAS test metrics ({path})")
    for col in ("domain", "n", "AUC", "HTER (paper)", "EER", "TPR@FPR=1%", "HTER (honest)", "APCER", "BPCER", "ACER"):
        table.add_column(col, justify="right" if col != "domain" else "left")
    for domain, entry in report.get("domains", {}).items():
        paper, honest = entry.get("paper", {}), entry.get("honest", {})
        tpr = paper.get("tpr_at_fpr", {})
        tpr1 = next(iter(tpr.values()), float("nan")) if isinstance(tpr, dict) else tpr

        def pct(v):
            return "-" if v is None else f"{100 * float(v):.2f}"

        table.add_row(domain, str(paper.get("n", entry.get("n", ""))), pct(paper.get("auc")), pct(paper.get("hter")),
                      pct(paper.get("eer")), pct(tpr1), pct(honest.get("hter")), pct(honest.get("apcer")),
                      pct(honest.get("bpcer")), pct(honest.get("acer")))
    Console(width=max(Console().width, 132)).print(table)  # full columns in logs and CI too
    print(f"(percent; full report: {path})")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in TOOLS:
        return _run_tool(args[0], args[1:])
    if args and args[0] == "predict" and any(a.split("=")[0] in ("--model", "--input") for a in args[1:]):
        # file mode (a user's own images and videos); `fasvlm predict --config ...` stays LightningCLI's
        from fasvlm.tools.predict import main as predict_files

        return predict_files(args[1:])
    from lightning.pytorch.callbacks import LearningRateMonitor

    from fasvlm.callbacks.data import DataHealthCallback
    from fasvlm.callbacks.rng import RNGStateCallback
    from fasvlm.callbacks.throughput import ThroughputCallback

    cli_class = _build_cli_class()
    cli_class(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,  # None: LightningCLI reads sys.argv itself
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": _DESCRIPTION},
        trainer_defaults={
            "callbacks": [LearningRateMonitor(logging_interval="step"), DataHealthCallback(), ThroughputCallback(),
                          RNGStateCallback()],
            "use_distributed_sampler": False,  # FASDataModule shards itself (unpadded eval, resumable train)
        },
        auto_configure_optimizers=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
