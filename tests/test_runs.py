"""Issue 14: runs that never lose work or report a wrong result, through the real CLI (one test per finding; the
slow ones, with SIGTERM, crashes and full disks, are in tests/test_runs_faults.py).

Each test names the finding it pins and fails on the behaviour the finding describes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from fasvlm.cli import main

BASE = str(REPO / "conf/baseline/tiny.yaml")
FAST = ["--data.init_args.num_workers", "0", "--data.init_args.batch_size", "8", "--trainer.num_sanity_val_steps", "0",
        "--trainer.check_val_every_n_epoch", "1000"]


def fasvlm(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    full_env.pop("FASVLM_RUN_DIR", None)
    full_env.pop("FASVLM_RUN_NAME", None)
    return subprocess.run([sys.executable, "-m", "fasvlm.cli", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, f"expected a refusal (2), got {proc.returncode}\n{proc.stderr[-4000:]}"
    err = proc.stderr
    for needle in needles:
        assert needle in err, f"{needle!r} not in:\n{err[-3000:]}"
    return err


@pytest.fixture
def cli(monkeypatch, capsys):
    """The real CLI in this process (refusals happen before any training; saves a Python start per call)."""

    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("FASVLM_RUN_DIR", "")  # the CLI exports the directory it picked; undone after the test
        monkeypatch.delenv("FASVLM_RUN_NAME", raising=False)
        capsys.readouterr()
        code = main(args)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synthetic_root) -> Path:
    work = tmp_path_factory.mktemp("runs")
    (work / "data").mkdir()
    (work / "data" / "synthetic").symlink_to(synthetic_root)
    # a trainer-only fragment given last, as conf/strategy/*.yaml are: it must not name the run
    (work / "deepspeed_zero2.yaml").write_text("trainer:\n  log_every_n_steps: 1\n")
    return work


@pytest.fixture(scope="module")
def trained(workdir) -> subprocess.CompletedProcess:
    """One fit with no run directory given: 3 steps, last.ckpt every 2 steps (finding 5), stdout not a terminal."""
    return ok(fasvlm(["fit", "--config", BASE, "--config", str(workdir / "deepspeed_zero2.yaml"), *FAST,
                      "--trainer.max_steps", "3", "--last_checkpoint.every_n_train_steps", "2"], workdir))


def _run_dir(workdir: Path) -> Path:
    return (workdir / "runs" / "baseline-tiny" / "latest").resolve()


def _step(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])


# -- finding 1: synth deleted what it did not write ---------------------------------------------------------------


def test_synth_refuses_to_replace_data_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "celeba_spoof" / "Data" / "my_real_image.jpg"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"user data")
    (tmp_path / "README.txt").write_text("the user's notes")
    assert main(["synth", "--out", str(tmp_path), "--preset", "tiny", "--workers", "1", "--no-progress"]) == 2
    assert "not written by `fasvlm synth`" in capsys.readouterr().err
    assert mine.read_bytes() == b"user data" and (tmp_path / "README.txt").read_text() == "the user's notes"


def test_synth_replaces_its_own_output(synthetic_root):
    # the session's generated release is marked as ours: a second run may replace exactly the listed names
    listed = set((synthetic_root / ".fasvlm-synth").read_text().split())
    assert {"celeba_spoof", "README.txt", ".complete"} <= listed


# -- finding 2: run directories with an identity ------------------------------------------------------------------


def test_run_directory_from_method_and_protocol_with_latest_link(workdir, trained):
    experiment = workdir / "runs" / "baseline-tiny"  # not runs/deepspeed_zero2 (the last --config's stem)
    assert not (workdir / "runs" / "deepspeed_zero2").exists()
    latest = experiment / "latest"
    assert latest.is_symlink() and (experiment / os.readlink(latest)).is_dir()
    run = _run_dir(workdir)
    assert run.parent == experiment.resolve() and run.name[:8].isdigit()  # <timestamp>
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()


def test_fit_into_a_used_directory_is_refused(workdir, trained, cli):
    run = _run_dir(workdir)
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    proc = cli(["fit", "--config", BASE, *FAST, "--trainer.max_steps", "2", "--trainer.default_root_dir",
                   str(run)], workdir)
    refused(proc, "already holds a run", "--ckpt_path last", "--overwrite")
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before


def test_resume_of_another_experiment_is_refused_with_a_diff(workdir, trained, cli):
    run = _run_dir(workdir)
    config = (run / "config.yaml").read_bytes()
    proc = cli(["fit", "--config", BASE, *FAST, "--trainer.max_steps", "6", "--model.init_args.lr", "0.5",
                   "--ckpt_path", "last"], workdir)  # no directory: resumes runs/baseline-tiny/latest
    refused(proc, "different experiment", "model.init_args.lr: 0.002 -> 0.5")
    assert (run / "config.yaml").read_bytes() == config
    assert _step(run / "checkpoints" / "last.ckpt") == 3


# -- finding 3: evaluation without a checkpoint; test/predict overwrote config.yaml --------------------------------


def test_evaluation_requires_an_existing_checkpoint(workdir, trained, tmp_path, cli):
    refused(cli(["test", "--config", BASE, *FAST], workdir), "pass --ckpt_path", "--ckpt_path none")
    (tmp_path / "data").symlink_to(workdir / "data")
    refused(cli(["test", "--config", BASE, *FAST, "--ckpt_path", "last"], tmp_path), "no run of experiment")
    empty = tmp_path / "empty_run"
    refused(cli(["predict", "--config", BASE, *FAST, "--ckpt_path", "best", "--trainer.default_root_dir", str(empty)],
                tmp_path), "best.ckpt does not exist")
    refused(cli(["test", "--config", BASE, *FAST, "--ckpt_path", "last", "--trainer.default_root_dir", str(empty)],
                tmp_path), "no readable checkpoint")
    assert not (empty / "test_metrics.json").exists()


def test_test_uses_latest_and_writes_its_own_config(workdir, trained):
    run = _run_dir(workdir)
    config = (run / "config.yaml").read_bytes()
    proc = ok(fasvlm(["test", "--config", BASE, *FAST, "--ckpt_path", "last"], workdir))
    assert (run / "config.yaml").read_bytes() == config  # the record of training is untouched
    assert (run / "test_config.yaml").is_file()
    report = json.loads((run / "test_metrics.json").read_text())
    assert report["untrained"] is False and report["checkpoint"].endswith("checkpoints/last.ckpt")
    # finding "noise": one results table (the project's), no Lightning table, no tips
    assert proc.stdout.count("FAS test metrics") == 1
    assert "test/threshold_honest" not in proc.stdout and "Tip:" not in proc.stdout + proc.stderr


# -- finding 5: every_n_train_steps lost the end-of-training state ----------------------------------------------------


def test_end_of_training_reaches_last_ckpt_with_every_n_train_steps(workdir, trained):
    assert _step(_run_dir(workdir) / "checkpoints" / "last.ckpt") == 3  # not 2, the last multiple of N
    # non-terminal output: plain progress lines instead of a redrawn bar
    assert "[epoch end" in trained.stdout and "step 3/3" in trained.stdout


# -- finding 7: checkpoint of another system class; prefix-matched options ------------------------------------------


def test_checkpoint_of_another_system_class_is_refused(workdir, trained, cli):
    ckpt = _run_dir(workdir) / "checkpoints" / "last.ckpt"
    proc = cli(["test", "--config", str(REPO / "conf/instructflip/tiny.yaml"), *FAST, "--ckpt_path", str(ckpt),
                   "--trainer.default_root_dir", str(workdir / "runs" / "other")], workdir)
    refused(proc, "fasvlm.systems.baseline.BaselineSystem", "fasvlm.systems.instructflip.InstructFLIPSystem")


def test_option_prefixes_are_not_accepted(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", BASE, "--trainer.max_epoch", "3", "--print_config"])
    assert exc.value.code == 2
    assert "--trainer.max_epoch" in capsys.readouterr().err


# -- finding 8: exports import only registered systems ----------------------------------------------------------------


def test_export_loads_only_registered_systems(tmp_path):
    from fasvlm.systems import SYSTEMS, system_class
    from fasvlm.tools import export

    assert "fasvlm.systems.baseline.BaselineSystem" in SYSTEMS
    assert system_class("fasvlm.systems.baseline.BaselineSystem").__name__ == "BaselineSystem"
    (tmp_path / export.CONFIG_FILE).write_text(json.dumps({
        "format": export.EXPORT_FORMAT, "class_path": "subprocess.Popen",
        "hyper_parameters": {"args": ["touch", str(tmp_path / "pwned")]}}))
    with pytest.raises(ValueError, match="not a registered fasvlm system"):
        export.load_exported(tmp_path)
    assert not (tmp_path / "pwned").exists()


# -- finding 9: a split with no readable file; truncated videos --------------------------------------------------------


def test_split_without_any_file_fails_fast_with_one_line(workdir, tmp_path, cli):
    moved = tmp_path / "moved"
    shutil.copytree(workdir / "data" / "synthetic" / "celeba_spoof", moved,
                    ignore=shutil.ignore_patterns("*.jpg", "*.png"))  # labels and boxes, no images
    sources = f"[{{name: celeba_spoof, dataset: celeba_spoof, root: {moved}, split: train}}]"
    proc = cli(["fit", "--config", BASE, *FAST, "--trainer.max_steps", "2", "--data.init_args.sources", sources,
                "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false"], workdir)
    err = refused(proc, "split 'train': none of its", "not mounted")
    assert "Traceback" not in err and "skipping unreadable image" not in proc.stdout + err


def test_truncated_video_is_listed_in_failures_csv(synthetic_root, tmp_path):
    import csv

    import cv2
    import numpy as np

    release = tmp_path / "replay_attack"
    shutil.copytree(synthetic_root / "replay_attack", release)
    victim = sorted(release.rglob("*.mov"))[0]
    avi = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    rng = np.random.default_rng(0)
    for _ in range(30):
        writer.write(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    writer.release()
    data = avi.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # the header says 30 frames, about 15 decode
    out = tmp_path / "prepared"
    assert main(["prepare", "--dataset", "replay_attack", "--root", str(release), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "failures.csv").open()))
    hits = [r for r in rows if r["path"] == str(victim)]
    assert hits and hits[0]["reason"].startswith("truncated video: header 30 frames"), rows
