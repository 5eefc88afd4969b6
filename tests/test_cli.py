"""The `fasvlm` command: help, every YAML through --print_config, a 3-step fit, resume from last, DDP, test report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from fasvlm.cli import main

# conf/caption holds `fasvlm caption` tool configs (printed through that tool in tests/test_scf.py); conf/ablation
# fragments are printed composed with their method's config in tests/test_ablation.py
CONFIGS = sorted(p.relative_to(REPO) for p in (REPO / "conf").rglob("*.yaml")
                 if "caption" not in p.parts and "ablation" not in p.parts)
BASE = "conf/baseline/tiny.yaml"  # the cheapest system: these tests exercise the CLI, not a method


def _needs_base(path: Path) -> bool:
    """Fragments (conf/data, conf/strategy) complete a method config; they do not stand alone."""
    content = yaml.safe_load((REPO / path).read_text()) or {}
    return "model" not in content


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_config_prints_through_the_cli(config, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    args = ["fit", "--config", BASE] if _needs_base(config) else ["fit"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--config", str(config), "--print_config"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    # libraries may print to stdout on import (DeepSpeed's accelerator notice): parse from the config's first key
    printed = yaml.safe_load(out[out.index("seed_everything:"):])
    assert printed["model"]["class_path"].startswith("fasvlm.")
    assert printed["data"]["class_path"] in {"fasvlm.data_modules.FASDataModule",
                                             "fasvlm.data_modules.conversations.ConversationDataModule"}


def test_help_lists_tool_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("fit", "validate", "test", "predict", "synth", "prepare"):
        assert word in out
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "fasvlm.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"fasvlm {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synthetic_root) -> Path:
    """A directory laid out like the repo root: data/synthetic -> the generated tiny synthetic data."""
    work = tmp_path_factory.mktemp("work")
    (work / "data").mkdir()
    (work / "data" / "synthetic").symlink_to(synthetic_root)
    return work


FAST = ["--config", str(REPO / BASE), "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "8",
        "--trainer.enable_progress_bar", "false"]


def _global_step(ckpt: Path) -> int:
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


def test_fit_three_steps_then_test_and_resume(workdir):
    run = workdir / "runs" / "three"
    # constant LR: a resume may then extend max_steps (a cosine/onecycle schedule built for 3 steps refuses to, issue 14)
    constant = ["--model.init_args.scheduler", "constant"]
    _run(["fit", *FAST, *constant, "--trainer.max_steps", "3", "--trainer.default_root_dir", str(run)], workdir)
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert _global_step(run / "checkpoints" / "last.ckpt") == 3
    assert list(run.glob("events.out.tfevents.*"))

    # resume continues from the saved step
    # (the callback named again on the command line, as older sweeps did, is not added twice)
    _run(["fit", *FAST, *constant, "--trainer.max_steps", "5", "--trainer.default_root_dir", str(run), "--ckpt_path",
          "last", "--trainer.callbacks+=fasvlm.callbacks.run_info.RunInfoCallback"], workdir)
    assert _global_step(run / "checkpoints" / "last.ckpt") == 5
    # every fit writes run_info.json (not only sweep runs): one session per launch
    info = json.loads((run / "run_info.json").read_text())
    assert [(s["global_step_start"], s["global_step_end"]) for s in info["sessions"]] == [(0, 3), (3, 5)]
    assert info["schema"] == "fasvlm.run_info/1" and info["packages"]["fasvlm"]

    _run(["test", *FAST, *constant, "--trainer.default_root_dir", str(run), "--ckpt_path", "best"], workdir)
    report = json.loads((run / "test_metrics.json").read_text())
    assert set(report["domains"]) >= {"celeba_spoof", "synth_lowlight", "synth_phonecam"}
    for entry in report["domains"].values():
        assert 0.0 <= entry["paper"]["auc"] <= 1.0 and "hter" in entry["honest"]

    # the figures of the test run are in the TensorBoard event files of the run directory
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images, scalars = set(), set()
    for events in run.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        images |= set(acc.Tags()["images"])
        scalars |= set(acc.Tags()["scalars"])
    for domain in ("celeba_spoof", "synth_lowlight", "synth_phonecam"):
        assert any(t.startswith(f"test/{domain}/") and "roc" in t for t in images), sorted(images)
        assert f"test/{domain}/auc" in scalars


def test_ddp_two_cpu_processes(workdir):
    run = workdir / "runs" / "ddp"
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(run)]
    _run(["fit", *FAST, "--trainer.max_steps", "3", *ddp], workdir)
    assert _global_step(run / "checkpoints" / "last.ckpt") == 3
    proc = _run(["test", *FAST, *ddp, "--ckpt_path", "last"], workdir)
    assert (run / "test_metrics.json").is_file()
    assert proc.stdout.count("FAS test metrics") == 1  # the table is printed by rank 0 only
