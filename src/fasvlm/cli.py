"""The ``fasvlm`` command: LightningCLI (fit/validate/test/predict) plus tool subcommands.

One run directory holds everything of a run::

    <run>/config.yaml          resolved config of `fit` (rewritten on resume); test/validate/predict write
                               <run>/<subcommand>_config.yaml and never touch config.yaml
    <run>/events.out.tfevents.*   TensorBoard (fixed logger version: a requeued job continues the same run)
    <run>/checkpoints/{best,last}.ckpt (+ last.ckpt.prev: the previous good last.ckpt)
    <run>/val_metrics.json, <run>/test_metrics.json

Where the run directory is (:func:`resolve_run_dir`): ``--trainer.default_root_dir`` if given (command line or config),
else ``$FASVLM_RUN_DIR``, else ``runs/<method>-<protocol>/<name>`` where ``<method>`` is the directory of the method
config (``conf/ifas/paper.yaml`` -> ``ifas``; a config outside a method directory: the system's module name),
``<protocol>`` the stem of the config that sets ``data`` (``conf/data/mcio_c.yaml`` -> ``mcio_c``), and ``<name>``
``$FASVLM_RUN_NAME`` (the SLURM templates set it to the job name) or a timestamp for a new ``fit``. ``fit`` points
``runs/<method>-<protocol>/latest`` at the new directory; ``test``/``validate``/``predict`` and ``fit --ckpt_path last``
without a directory use ``latest``. A ``fit`` into a directory that holds a run is refused unless it resumes
(``--ckpt_path last``, experiment-defining keys unchanged) or ``--overwrite`` is given.

Tool subcommands are dispatched before LightningCLI parses anything: ``fasvlm synth``, ``prepare``, ``caption``,
``bench``, ``export``; ``fasvlm predict --model ... --input ...`` scores files (:mod:`fasvlm.tools.predict`), while
``fasvlm predict --config ...`` is LightningCLI's predict on a dataset config.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "TOOLS", "RunError", "resolve_run_dir", "experiment_name", "config_diff", "EXPERIMENT_KEYS"]

# the subcommands run by LightningCLI (each gets its own parser)
SUBCOMMANDS = ("fit", "validate", "test", "predict")
# keys that define an experiment: a resume must not change them (trainer limits, logging, progress may change)
EXPERIMENT_KEYS = ("model", "data", "seed_everything")
# ... except these loader settings, which change speed but not results
_RUNTIME_KEYS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")
# experiment keys added after runs were written, with the value that matches what such a run did: resuming one asks for
# that value (e.g. --data.init_args.device_transforms false) instead of refusing every new value
ADDED_KEYS = {"data.init_args.device_transforms": False}  # issue 20: before it, the whole transform ran on workers


class RunError(Exception):
    """A request the CLI refuses (one line to stderr, exit code 2): nothing was trained, evaluated or overwritten."""

# subcommand -> "module:function" taking argv (list[str]) and returning an exit code
TOOLS: dict[str, tuple[str, str]] = {
    "synth": ("fasvlm.data_modules.synthetic.cli:main", "generate synthetic FAS data in the official layouts"),
    "prepare": ("fasvlm.data_modules.prepare:main", "index a dataset release, sample frames, crop faces -> manifest"),
    "caption": ("fasvlm.captioning.cli:main", "spoof-aware captioning (SCF) and instruction data"),
    "bench": ("fasvlm.tools.bench:main", "measure FLOPs, throughput and MFU of a config"),
    "export": ("fasvlm.tools.export:main", "export trainable weights (safetensors + config) / convert DeepSpeed checkpoints"),
    "demo": ("fasvlm.tools.demo:main", "Gradio app: upload an image or a short video, see the decision"),
    "sweep": ("fasvlm.tools.sweep:main", "seeds x grid of runs: local (sequential, resumable) or a SLURM job array"),
    "report": ("fasvlm.tools.report:main", "tables (Markdown, CSV, LaTeX) and a figure from many runs' test metrics"),
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
    from fasvlm.callbacks.checkpoint import LastCheckpoint
    from fasvlm.callbacks.predictions import PredictionsWriter

    return {"metrics": FASMetricsCallback, "figures": FASFiguresCallback, "predictions": PredictionsWriter,
            "checkpoint": ModelCheckpoint, "last_checkpoint": LastCheckpoint}


def _build_cli_class():
    from lightning.pytorch.cli import LightningCLI

    class FASCLI(LightningCLI):
        """LightningCLI with the project's defaults: metrics callback, checkpointing on source validation, one run dir."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--overwrite", action="store_true",
                                help="fit: replace the run in --trainer.default_root_dir (its checkpoints are deleted)")
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

        def _parse_ckpt_path(self) -> None:
            # LightningCLI replaces the configured model by the checkpoint's own class and arguments when
            # --ckpt_path names a file: a checkpoint of another system would silently be evaluated instead
            sub = self.config.get("subcommand")
            ckpt = self.config[sub].get("ckpt_path") if sub else None
            if ckpt and Path(str(ckpt)).is_file():
                _check_system_class(Path(str(ckpt)), self.config[sub])
            super()._parse_ckpt_path()

        def before_instantiate_classes(self) -> None:
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            trainer = cfg.trainer
            root = resolve_run_dir(self.subcommand, cfg)
            trainer.default_root_dir = str(root)
            # Lightning's DDP launcher re-runs this command in child processes: they must find the same directory
            os.environ["FASVLM_RUN_DIR"] = str(root)
            _limit_cpu_threads(trainer, cfg)
            from jsonargparse import Namespace

            callbacks = list(trainer.callbacks or [])
            if trainer.enable_progress_bar is not False:
                if not any("ProgressBar" in str(getattr(c, "class_path", type(c).__name__)) for c in callbacks):
                    if sys.stdout.isatty():
                        callbacks.append(Namespace(class_path="lightning.pytorch.callbacks.RichProgressBar",
                                                   init_args=Namespace(leave=True)))
                    else:  # SLURM logs, pipes: one line every log_every_n_steps instead of a redrawn bar
                        every = trainer.get("log_every_n_steps") or 50
                        callbacks.append(Namespace(class_path="fasvlm.callbacks.progress.LineProgress",
                                                   init_args=Namespace(every_n_steps=int(every))))
            if cfg.checkpoint.dirpath is None:
                cfg.checkpoint.dirpath = str(Path(root) / "checkpoints")
            if cfg.last_checkpoint.dirpath is None:
                cfg.last_checkpoint.dirpath = cfg.checkpoint.dirpath
            if self.subcommand == "fit":
                callbacks.append(Namespace(class_path="fasvlm.callbacks.checkpoint.SigtermCheckpoint",
                                           init_args=Namespace(dirpath=str(cfg.last_checkpoint.dirpath),
                                                               filename="last")))
                # <run dir>/run_info.json (git commit, packages, seed, manifest hashes, device, wall time per launch)
                # for every run, so `fasvlm report` can describe runs that no sweep started
                if not any("RunInfoCallback" in str(getattr(c, "class_path", type(c).__name__)) for c in callbacks):
                    callbacks.append(Namespace(class_path="fasvlm.callbacks.run_info.RunInfoCallback",
                                               init_args=Namespace(filename="run_info.json")))
            trainer.callbacks = callbacks
            strategy = str(trainer.get("strategy") or "")
            if not trainer.get("plugins") and not any(k in strategy.lower() for k in ("deepspeed", "fsdp")):
                # same-directory temporary file + fsync + rename (DeepSpeed/FSDP write sharded directories)
                trainer.plugins = [Namespace(class_path="fasvlm.callbacks.checkpoint.AtomicCheckpointIO")]
            if trainer.logger is None or trainer.logger is True:
                # fixed version: fit, test and a requeued job all write into the same run directory
                trainer.logger = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                                           init_args=Namespace(save_dir=str(root), name="", version="",
                                                               default_hp_metric=False))
            self.save_config_kwargs = {**self.save_config_kwargs, "overwrite": True,
                                       "config_filename": "config.yaml" if self.subcommand == "fit"
                                       else f"{self.subcommand}_config.yaml"}
            if "verbose" in cfg and self.subcommand == "test":
                cfg.verbose = False  # Lightning's results table repeats the project's (after_test) in other words
            self.untrained = False
            if self.subcommand == "fit":
                self._prepare_fit(cfg, Path(root))
            else:
                self.untrained = _resolve_eval_checkpoint(self.subcommand, cfg, Path(root))
            ckpt = cfg.get("ckpt_path")
            if ckpt and Path(ckpt).is_file():
                _check_system_class(Path(ckpt), cfg)

        def _prepare_fit(self, cfg, root: Path) -> None:
            """Refuse a used directory unless resuming or --overwrite; pick the newest readable checkpoint."""
            ckpt_dir = Path(cfg.checkpoint.dirpath)
            if not _is_primary_process():
                if cfg.get("ckpt_path") == "last":
                    found, _ = _readable_resume_checkpoint(root, ckpt_dir)
                    cfg.ckpt_path = str(found) if found else None
                return
            _lock_run_dir(root)
            from fasvlm.callbacks.checkpoint import remove_stale_temporaries

            for stale in remove_stale_temporaries(ckpt_dir):  # a write killed half-way (the checkpoint is intact)
                print(f"fasvlm fit: removed {stale}, a checkpoint write that did not finish", file=sys.stderr)
            held = _run_files(root, ckpt_dir)
            ckpt = cfg.get("ckpt_path")
            if cfg.get("overwrite"):
                for f in held:
                    if f.suffix in (".ckpt", ".prev") and f.is_file():
                        f.unlink()
                if held:
                    print(f"fasvlm fit: --overwrite: removed the checkpoints of the previous run in {root}",
                          file=sys.stderr)
            elif ckpt == "last":
                stored = root / "config.yaml"
                if stored.is_file():
                    import yaml

                    old = yaml.safe_load(stored.read_text()) or {}
                    new = yaml.safe_load(self._parser(self.subcommand).dump(cfg))
                    diff = config_diff(old, new)
                    if diff:
                        raise RunError(
                            f"fit --ckpt_path last: {root} holds a different experiment ({stored}); keys that differ "
                            "(stored -> now):\n  " + "\n  ".join(diff) + "\nUse the same model/data/seed to "
                            "resume, or start a new run (another --trainer.default_root_dir, or --overwrite).")
            elif ckpt is None and held:
                raise RunError(
                    f"fit: {root} already holds a run ({', '.join(str(p.relative_to(root)) for p in held[:4])}). "
                    "Resume it with --ckpt_path last, pass --overwrite to replace it, or choose another "
                    "--trainer.default_root_dir.")
            if ckpt == "last":
                found, skipped = _readable_resume_checkpoint(root, ckpt_dir)
                for path, why in skipped:
                    print(f"fasvlm fit: skipping unreadable checkpoint {path} ({why})", file=sys.stderr)
                if found is None and skipped:
                    raise RunError(f"fit --ckpt_path last: no readable checkpoint in {root} (tried "
                                   f"{', '.join(str(p) for p, _ in skipped)}); nothing resumed")
                if found is not None:
                    print(f"fasvlm fit: resuming from {found}", file=sys.stderr)
                # None on a job's first launch: nothing to resume yet (training starts from scratch)
                cfg.ckpt_path = str(found) if found else None

        def after_test(self) -> None:
            # trainer.log_dir broadcasts under DDP: every rank must ask for it, only rank 0 prints
            path = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "test_metrics.json"
            if self.trainer.is_global_zero:
                _record_checkpoint(path, self.trainer.ckpt_path, self.untrained)
                _print_metrics_table(path)

        def after_predict(self) -> None:
            if self.untrained and self.trainer.is_global_zero:
                print("fasvlm predict: UNTRAINED model (--ckpt_path none): predictions of random weights",
                      file=sys.stderr)

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


def _launch_rank() -> int:
    """Global rank from the launcher's environment (torchrun, srun, Lightning's DDP children); 0 when unset."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    if os.environ.get("LOCAL_RANK", "").isdigit():
        return int(os.environ["LOCAL_RANK"]) + int(os.environ.get("NODE_RANK", "0") or 0)
    return 0


def _is_primary_process() -> bool:
    """The process that decides about the run directory (the others follow it)."""
    return _launch_rank() == 0


def _config_files(cfg) -> list[Path]:
    return [Path(str(c)) for c in (cfg.get("config") or [])]


def experiment_name(cfg) -> str:
    """``<method>-<protocol>`` from the config files (never from strategy or other fragments).

    method: the directory of the last config that sets ``model`` (``conf/ifas/paper.yaml`` -> ``ifas``), or, for a
    config outside a method directory, the module of the system class (``fasvlm.systems.instructflip...`` ->
    ``instructflip``). protocol: the stem of the last config in a ``data/`` directory (``conf/data/mcio_c.yaml`` ->
    ``mcio_c``, given before or after the method config), else of the last config that sets ``data``
    (``conf/baseline/tiny.yaml`` -> ``tiny``), ``custom`` when data is given on the command line only.
    """
    import yaml

    method = protocol = data_dir_protocol = None
    for path in _config_files(cfg):
        try:
            content = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(content, dict):
            continue
        if "model" in content:
            method = path.parent.name if path.parent.name not in ("conf", "", ".") else None
            method = method or _system_module(cfg)
        if "data" in content:
            protocol = path.stem
            if path.parent.name == "data":  # conf/data/<protocol>.yaml names the protocol wherever it is given
                data_dir_protocol = path.stem
    return f"{method or _system_module(cfg)}-{data_dir_protocol or protocol or 'custom'}"


def _system_module(cfg) -> str:
    model = cfg.get("model")
    class_path = str(model.get("class_path") if hasattr(model, "get") else model or "")
    parts = class_path.split(".")
    return parts[-2] if len(parts) >= 2 else "model"


def resolve_run_dir(subcommand: str | None, cfg) -> Path:
    """The run directory of this command (see the module docstring); creates ``latest`` for a new ``fit``."""
    explicit = cfg.trainer.get("default_root_dir")
    if explicit:
        return Path(str(explicit))
    if os.environ.get("FASVLM_RUN_DIR"):
        return Path(os.environ["FASVLM_RUN_DIR"])
    experiment = Path("runs") / experiment_name(cfg)
    latest = experiment / "latest"
    name = os.environ.get("FASVLM_RUN_NAME")
    if name:
        if "/" in name or name in (".", "..", "latest"):
            raise RunError(f"FASVLM_RUN_NAME={name!r}: a run name is one path component other than 'latest'")
        root = experiment / name
    elif subcommand == "fit" and not (cfg.get("ckpt_path") == "last" and latest.is_dir()):
        if not _is_primary_process():
            raise RunError("fit under a multi-process launcher without a run directory: every process would pick "
                           "its own timestamp. Set FASVLM_RUN_DIR (or FASVLM_RUN_NAME, or "
                           "--trainer.default_root_dir) for all processes")
        root = experiment / time.strftime("%Y%m%d-%H%M%S")
        k = 1
        while root.exists():
            root = experiment / f"{time.strftime('%Y%m%d-%H%M%S')}-{k}"
            k += 1
    elif latest.is_dir():
        root = experiment / os.readlink(latest) if latest.is_symlink() else latest
    else:
        raise RunError(f"{subcommand}: no run of experiment {experiment.name!r} ({latest} does not exist); run "
                       "`fasvlm fit` with the same --config files first, or pass --trainer.default_root_dir")
    if subcommand == "fit" and _is_primary_process():
        root.mkdir(parents=True, exist_ok=True)
        _point_latest(latest, root.name)
    return root


def _point_latest(link: Path, target: str) -> None:
    """``link`` -> ``target`` (relative), replaced atomically; a real file or directory there is never replaced."""
    if link.exists() and not link.is_symlink():
        raise RunError(f"{link} exists and is not a link: move it away (fit keeps `latest` pointing at the newest run)")
    tmp = link.with_name(f".latest.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


_LOCKS: list[Any] = []  # open lock files: held for the life of the process


def _lock_run_dir(root: Path) -> None:
    """An exclusive lock on ``<run>/.fasvlm.lock`` while fit runs: a second fit into the same directory (two jobs
    with one name) stops at once instead of overwriting the first one's checkpoints."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    f = open(root / ".fasvlm.lock", "a+")  # noqa: SIM115 (held until the process ends)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise RunError(f"fit: {root} is in use by another running fit ({f.read().strip() or 'unknown process'}); "
                       "give this run another directory (FASVLM_RUN_NAME / --trainer.default_root_dir)") from None
    except OSError:  # a filesystem without locks (some NFS setups): no protection, but no failure either
        return
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
    f.flush()
    _LOCKS.append(f)


def _run_files(root: Path, ckpt_dir: Path) -> list[Path]:
    """What marks ``root`` as holding a run: its config.yaml and checkpoints."""
    found = [root / "config.yaml"] if (root / "config.yaml").is_file() else []
    if ckpt_dir.is_dir():
        found += sorted(p for p in ckpt_dir.iterdir() if p.name.endswith((".ckpt", ".ckpt.prev")))
    found += sorted(root.glob("hpc_ckpt_*.ckpt"))
    return found


def _readable_resume_checkpoint(root: Path, ckpt_dir: Path):
    from fasvlm.callbacks.checkpoint import checkpoint_candidates, readable_checkpoint

    return readable_checkpoint(checkpoint_candidates(root, ckpt_dir))


def _resolve_eval_checkpoint(subcommand: str, cfg, root: Path) -> bool:
    """validate/test/predict: a checkpoint that exists, or ``none`` said explicitly. True for an untrained model."""
    ckpt = cfg.get("ckpt_path")
    ckpt_dir = Path(cfg.checkpoint.dirpath)
    if ckpt is None:
        raise RunError(f"{subcommand}: pass --ckpt_path best, last or a checkpoint path (or --ckpt_path none to "
                       "evaluate the untrained model on purpose)")
    if str(ckpt).lower() == "none":
        cfg.ckpt_path = None
        print(f"fasvlm {subcommand}: --ckpt_path none: evaluating the UNTRAINED model", file=sys.stderr)
        return True
    if ckpt == "best":
        # "best" only exists in the process that ran fit; a later `fasvlm test` finds it on disk
        best = ckpt_dir / "best.ckpt"
        if not best.exists():  # a file, or a directory for DeepSpeed/FSDP checkpoints
            raise RunError(f"--ckpt_path best: {best} does not exist; run `fasvlm fit` with the same --config files "
                           "(and --trainer.default_root_dir) first, or pass a checkpoint path")
        cfg.ckpt_path = str(best)
    elif ckpt == "last":
        found, skipped = _readable_resume_checkpoint(root, ckpt_dir)
        for path, why in skipped:
            print(f"fasvlm {subcommand}: skipping unreadable checkpoint {path} ({why})", file=sys.stderr)
        if found is None:
            raise RunError(f"--ckpt_path last: no readable checkpoint in {ckpt_dir} (or {root}/hpc_ckpt_*.ckpt); "
                           "run `fasvlm fit` first, or pass a checkpoint path")
        cfg.ckpt_path = str(found)
    elif not Path(str(ckpt)).exists():
        raise RunError(f"--ckpt_path {ckpt}: no such file or directory")
    return False


def _check_system_class(ckpt: Path, cfg) -> None:
    """The checkpoint's system class (LightningCLI stores it as ``hyper_parameters._class_path``) must be the one
    the config builds: Lightning would otherwise load the weights into whatever the checkpoint names."""
    import torch

    model = cfg.get("model")
    configured = str(model.get("class_path") if hasattr(model, "get") else "")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (unreadable: Lightning reports it when it loads the file)
        return
    stored = (state.get("hyper_parameters") or {}).get("_class_path") if isinstance(state, dict) else None
    if stored and configured and stored != configured:
        raise RunError(f"{ckpt} holds a {stored} checkpoint but the config builds {configured}; pass the config "
                       "of the run that wrote it (or that run's checkpoint)")


def config_diff(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for the experiment-defining keys (EXPERIMENT_KEYS, without runtime loader settings)."""

    def no_none(d: Any) -> Any:  # a key set to null == a key left out (dumps differ in that)
        if isinstance(d, dict):
            return {k: no_none(v) for k, v in d.items() if v is not None}
        if isinstance(d, list | tuple):
            return [no_none(v) for v in d]
        return d

    old, new = no_none(old), no_none(new)

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(d, dict):
            out: dict[str, Any] = {}
            for k, v in d.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix[:-1]: d}

    def relevant(key: str) -> bool:
        return key.split(".")[0] in EXPERIMENT_KEYS and key.split(".")[-1] not in _RUNTIME_KEYS

    a = {k: v for k, v in flat({k: old.get(k) for k in EXPERIMENT_KEYS}).items() if relevant(k)}
    b = {k: v for k, v in flat({k: new.get(k) for k in EXPERIMENT_KEYS}).items() if relevant(k)}
    for key, then in ADDED_KEYS.items():
        if key not in a and key in b and any(k.startswith(key.rsplit(".", 1)[0] + ".") for k in a):
            a[key] = then
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)]


def _record_checkpoint(path: Path, ckpt_path: str | None, untrained: bool) -> None:
    """Add which weights were evaluated to the test report (and say so loudly for an untrained model)."""
    if not path.is_file():
        return
    from fasvlm.callbacks import write_json_atomic

    report = json.loads(path.read_text())
    report["checkpoint"] = None if untrained else (str(ckpt_path) if ckpt_path else None)
    report["untrained"] = bool(untrained)
    write_json_atomic(str(path), report)
    if untrained:
        print("fasvlm test: UNTRAINED model (--ckpt_path none): these metrics are of random weights", file=sys.stderr)


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


def _quiet_library_noise() -> None:
    """Drop what Lightning prints on every command and that never concerns a fasvlm user: the advertising tips, the
    "srun is available but not used" hint on SLURM login nodes, a deprecation inside Lightning's own code."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r".*The `srun` command is available on your system but is not used")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")

    class _NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.getMessage()).lstrip().startswith("\N{ELECTRIC LIGHT BULB} Tip")

    for name in ("lightning_utilities.core.rank_zero", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_NoTips())


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in TOOLS:
        return _run_tool(args[0], args[1:])
    if args and args[0] == "predict" and any(a.split("=")[0] in ("--model", "--input") for a in args[1:]):
        # file mode (a user's own images and videos); `fasvlm predict --config ...` stays LightningCLI's
        from fasvlm.tools.predict import main as predict_files

        return predict_files(args[1:])
    _quiet_library_noise()
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from fasvlm.callbacks.checkpoint import SIGTERM_EXIT_CODE, ScheduleHorizonCheck
    from fasvlm.callbacks.data import DataHealthCallback
    from fasvlm.callbacks.requeue import SlurmRequeue
    from fasvlm.callbacks.rng import RNGStateCallback
    from fasvlm.callbacks.throughput import ThroughputCallback
    from fasvlm.data_modules.datamodule import EmptySplitError

    cli_class = _build_cli_class()
    try:
        cli_class(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=argv,  # None: LightningCLI reads sys.argv itself
            save_config_kwargs={"overwrite": True},
            # no prefix matching: `--trainer.max_epoch` is an error, not max_epochs
            parser_kwargs={"description": _DESCRIPTION, "allow_abbrev": False,
                           **{sub: {"allow_abbrev": False} for sub in SUBCOMMANDS}},
            trainer_defaults={
                "callbacks": [LearningRateMonitor(logging_interval="step"), DataHealthCallback(), ThroughputCallback(),
                              RNGStateCallback(), ScheduleHorizonCheck(), SlurmRequeue()],
                "use_distributed_sampler": False,  # FASDataModule shards itself (unpadded eval, resumable train)
            },
            auto_configure_optimizers=False,
        )
    except (RunError, EmptySplitError) as err:
        print(f"fasvlm: {err}", file=sys.stderr)
        while _LOCKS:  # nothing ran: let the next command use the directory at once (also in-process callers)
            _LOCKS.pop().close()
        return 2
    except SIGTERMException:
        # Lightning ends fit on SIGTERM by raising SystemExit() (exit code 0); the checkpoint is written by
        # SigtermCheckpoint. 143 tells the caller (sbatch scripts, shells) that training did not finish.
        return SIGTERM_EXIT_CODE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
