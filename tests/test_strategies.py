"""conf/strategy/*.yaml: each composes with conf/baseline/tiny.yaml through the real CLI, builds the intended strategy, and a
2-process DDP fit (gloo, CPU) trains and checkpoints."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = sorted((REPO / "conf" / "strategy").glob("*.yaml"))
QUICKSTART = REPO / "conf" / "baseline" / "tiny.yaml"  # cheapest system; the strategy is what is tested


def test_strategy_configs_exist():
    names = {p.stem for p in STRATEGIES}
    assert {"ddp", "ddp_cpu", "deepspeed_zero2", "deepspeed_zero3", "fsdp"} <= names, names


@pytest.mark.parametrize("path", STRATEGIES, ids=lambda p: p.stem)
def test_strategy_file_is_a_trainer_fragment_with_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# fasvlm fit --config ") and f"--config conf/strategy/{path.name}" in first, first
    cfg = yaml.safe_load(path.read_text())
    assert set(cfg) == {"trainer"}, f"{path.name} must only hold trainer settings"
    assert "strategy" in cfg["trainer"]


def _print_config(*configs: Path) -> dict:
    """`fasvlm fit --config ... --print_config` through fasvlm.cli.main: the resolved config as a dict."""
    from fasvlm.cli import main

    argv = ["fit"]
    for c in configs:
        argv += ["--config", str(c)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_config"])
    assert exit_info.value.code in (0, None), out.getvalue()[-2000:]
    # importing deepspeed (resolving DeepSpeedStrategy) logs "[date] [WARNING] [real_accelerator.py...]" to stdout
    text = "\n".join(line for line in out.getvalue().splitlines() if not re.match(r"\[\d{4}-\d\d-\d\d .*\] \[[A-Z]+\]", line))
    return yaml.safe_load(text)


def _build_strategy(strategy_cfg: dict):
    """Instantiate only the strategy object (the GPU strategies refuse a CPU Trainer, not their own construction)."""
    from lightning.pytorch.cli import LightningArgumentParser
    from lightning.pytorch.strategies import Strategy

    parser = LightningArgumentParser()
    parser.add_subclass_arguments(Strategy, "strategy")
    return parser.instantiate_classes(parser.parse_object({"strategy": strategy_cfg})).strategy


@pytest.mark.parametrize("path", STRATEGIES, ids=lambda p: p.stem)
def test_strategy_composes_with_quickstart(path):
    own = yaml.safe_load(path.read_text())["trainer"]
    cfg = _print_config(QUICKSTART, path)
    trainer = cfg["trainer"]
    assert trainer["strategy"]["class_path"] == own["strategy"]["class_path"]
    for key in ("accelerator", "devices", "precision", "num_nodes"):
        if key in own:
            assert trainer[key] == own[key], key
    # the rest of the run still comes from conf/baseline/tiny.yaml
    assert cfg["model"]["class_path"] == "fasvlm.systems.baseline.BaselineSystem"
    assert cfg["data"]["class_path"] == "fasvlm.data_modules.FASDataModule"
    # no directory in the configs: fit names the run from the method and protocol, never from a strategy fragment
    # (issue 14; tests/test_runs.py checks the naming)
    assert trainer["max_epochs"] == 30 and trainer["default_root_dir"] is None


def test_strategy_objects():
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer
    from transformers.models.opt.modeling_opt import OPTDecoderLayer
    from transformers.models.t5.modeling_t5 import T5Block

    def load(name):
        return _build_strategy(yaml.safe_load((REPO / "conf" / "strategy" / f"{name}.yaml").read_text())["trainer"]
                               ["strategy"])

    ddp = load("ddp")
    assert isinstance(ddp, DDPStrategy) and ddp._process_group_backend == "nccl"
    assert ddp._ddp_kwargs["find_unused_parameters"] is False
    ddp_cpu = load("ddp_cpu")
    assert isinstance(ddp_cpu, DDPStrategy) and ddp_cpu._process_group_backend == "gloo"

    for name, stage in (("deepspeed_zero2", 2), ("deepspeed_zero3", 3)):
        ds = load(name)
        assert isinstance(ds, DeepSpeedStrategy)
        assert ds.config["zero_optimization"]["stage"] == stage
        assert ds.exclude_frozen_parameters is True

    fsdp = load("fsdp")
    assert isinstance(fsdp, FSDPStrategy)
    policy = fsdp.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy)
    assert {OPTDecoderLayer, T5Block, CLIPEncoderLayer} <= set(policy._module_classes)
    assert fsdp.kwargs.get("use_orig_params") is True  # frozen and trainable parameters in one FSDP unit
    assert OPTDecoderLayer in set(fsdp._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes)


@pytest.fixture(scope="module")
def ddp_run(synthetic_root, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`fasvlm fit` with conf/strategy/ddp_cpu.yaml: Lightning starts the second process, gloo on CPU, 3 steps."""
    cwd = tmp_path_factory.mktemp("ddp_cpu")
    (cwd / "data").mkdir()
    (cwd / "data" / "synthetic").symlink_to(synthetic_root)  # the config reads data/synthetic/... from the cwd
    run = cwd / "runs" / "ddp"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}  # not inside a SLURM allocation
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "fasvlm.cli", "fit", "--config", str(QUICKSTART),
           "--config", str(REPO / "conf" / "strategy" / "ddp_cpu.yaml"),
           "--trainer.max_steps", "3", "--trainer.default_root_dir", str(run),
           "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
           "--data.init_args.val_fraction", "0.34"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return run, proc


def test_ddp_cpu_fit_two_processes(ddp_run):
    run, proc = ddp_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file(), sorted(p.name for p in run.rglob("*"))
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    assert ckpt["hyper_parameters"]["_class_path"] == "fasvlm.systems.baseline.BaselineSystem"
    # two ranks really took part: the validation report says so, and each rank saw half of the source data
    report = json.loads((run / "val_metrics.json").read_text())
    assert report["world_size"] == 2
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr
    assert "All distributed processes registered. Starting with 2 processes" in proc.stdout + proc.stderr


def test_export_of_a_cli_checkpoint(ddp_run, tmp_path):
    """A checkpoint written by the CLI (class path stored by LightningCLI) exports and rebuilds without --class-path."""
    from fasvlm.tools import export

    run, proc = ddp_run
    assert proc.returncode == 0
    out = tmp_path / "exported"
    assert export.main(["--ckpt", str(run / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["class_path"] == "fasvlm.systems.baseline.BaselineSystem"
    assert config["source"]["global_step"] == 3
    module = export.load_exported(out)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for name, value in module.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][name]), name
