"""`fasvlm sweep`: expansion and run directories, the SLURM array script, and a local sweep that resumes after a kill."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from fasvlm.tools.sweep import main, parse_grid, parse_seeds, plan_runs, write_sbatch


def test_seeds_and_grid_parse():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("2,3,4") == [2, 3, 4]
    assert parse_seeds("0-1,7") == [0, 1, 7]
    for bad in ("a", "3-1", "0,0", "-1", ""):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    assert parse_grid(["model.init_args.alpha=0.5,0.7", "--data.init_args.batch_size=8"]) == {
        "model.init_args.alpha": ["0.5", "0.7"], "data.init_args.batch_size": ["8"]}
    for bad in (["alpha"], ["alpha="], ["=1,2"], ["a=1,1"], ["a=1", "a=2"]):
        with pytest.raises(ValueError, match="--grid"):
            parse_grid(bad)


def test_runs_get_their_own_directories_and_explicit_seed_and_root(tmp_path):
    runs = plan_runs(["a.yaml", "b.yaml"], [0, 1], parse_grid(["model.init_args.alpha=0.5,0.7", "x.lr=1e-3"]),
                     ["--trainer.max_epochs", "2"], tmp_path / "sw")
    assert [r.name for r in runs] == ["alpha=0.5,lr=1e-3-seed0", "alpha=0.5,lr=1e-3-seed1",
                                      "alpha=0.7,lr=1e-3-seed0", "alpha=0.7,lr=1e-3-seed1"]
    r = runs[3]
    assert r.dir == str(tmp_path / "sw" / "alpha=0.7,lr=1e-3-seed1")
    assert r.args == ["--config", "a.yaml", "--config", "b.yaml", "--trainer.max_epochs", "2",
                      "--model.init_args.alpha", "0.7", "--x.lr", "1e-3", "--seed_everything", "1",
                      "--trainer.default_root_dir", r.dir]
    assert [x.name for x in plan_runs(["a.yaml"], [3], {}, [], tmp_path)] == ["seed3"]


def test_another_plan_in_the_same_directory_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("seed_everything: 0\n")
    args = ["--config", "c.yaml", "--out", "sw", "--slurm", str(REPO / "conf/slurm/cpu_gloo.sbatch")]
    assert main([*args, "--seeds", "0-1"]) == 0
    assert main([*args, "--seeds", "0-1"]) == 0  # the same plan again: fine (resume)
    assert main([*args, "--seeds", "0-2"]) == 2
    assert "holds another sweep's plan" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "sw" / "sweep.json").read_text())["runs"]) == 2


def _fake_bin(tmp_path: Path) -> Path:
    """`srun` that runs its command, `fasvlm` that records its arguments one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\nexec "$@"\n')
    (bin_dir / "fasvlm").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" >> {tmp_path}/calls.txt\necho ---- >> '
                                    f"{tmp_path}/calls.txt\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("template", ["cpu_gloo.sbatch", "single_node.sbatch"])
def test_sbatch_array_runs_the_task_of_its_index(tmp_path, template, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = plan_runs(["conf/x.yaml"], [0, 1, 2], {}, ["--model.init_args.note", "a b $HOME 'q'"], Path("sw"))
    script = write_sbatch(runs, REPO / "conf/slurm" / template, Path("sw"), job_name="fasvlm-sweep-test")
    text = script.read_text()
    assert "#SBATCH --array=0-2" in text and "#SBATCH --requeue" in text and "#SBATCH --job-name=fasvlm-sweep-test" in text
    assert text.count("#SBATCH --job-name") == 1 and text.count("#SBATCH --output") == 1
    bin_dir = _fake_bin(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "7",
           "SLURM_JOB_NAME": "sweep",  # set by SLURM for every job; the templates name runs after it (issue 14)
           "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n0",
           "FASVLM_BIN": str(bin_dir / "fasvlm")}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    fit, test, _ = (tmp_path / "calls.txt").read_text().split("----\n")
    fit, test = fit.splitlines(), test.splitlines()
    assert fit[0] == "fit" and test[0] == "test"
    # then the template's own: devices, nodes; --ckpt_path last (the run directory reaches fasvlm as the run's own
    # --trainer.default_root_dir and as FASVLM_RUN_DIR, issue 14's templates no longer append it)
    assert fit[1:-2 - 4] == runs[1].args
    assert "a b $HOME 'q'" in fit  # passed through intact, never re-parsed by a shell
    assert fit[fit.index("--seed_everything") + 1] == "1"
    assert fit[-2:] == ["--ckpt_path", "last"] and test[-2:] == ["--ckpt_path", "best"]
    assert fit[fit.index("--trainer.default_root_dir") + 1] == "sw/seed1"
    assert "--trainer.default_root_dir" not in fit[len(runs[1].args) + 1:]

    # a finished run (test_metrics.json) is not run again, e.g. after a requeue
    (tmp_path / "calls.txt").unlink()
    Path("sw/seed1").mkdir(parents=True, exist_ok=True)
    Path("sw/seed1/test_metrics.json").write_text("{}")
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "is finished" in proc.stdout
    assert not (tmp_path / "calls.txt").exists()
    env["SLURM_ARRAY_TASK_ID"] = "5"
    assert subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=60).returncode == 2


_FAKE_FASVLM = """
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
sub, run = args[0], Path(args[args.index("--trainer.default_root_dir") + 1])
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps([sub, run.name, args[-2:]]) + "\\n")
if os.environ.get("FAIL_AT") == f"{sub}:{run.name}":
    sys.exit(3)
run.mkdir(parents=True, exist_ok=True)
if sub == "test":
    (run / "test_metrics.json").write_text("{}")
"""


def test_local_mode_skips_finished_runs_and_stops_at_a_failure(tmp_path, monkeypatch):
    """run_local's bookkeeping with a stand-in for `fasvlm` (the real CLI: the slow test below)."""
    from fasvlm.tools import sweep

    fake = tmp_path / "fake_fasvlm.py"
    fake.write_text(_FAKE_FASVLM)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setattr(sweep, "_fasvlm_command", lambda: [sys.executable, str(fake)])
    monkeypatch.setenv("CALLS", str(calls))
    runs = plan_runs(["c.yaml"], [0, 1, 2], {}, [], tmp_path / "sw")

    def log() -> list:
        out = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
        calls.unlink(missing_ok=True)
        return out

    monkeypatch.setenv("FAIL_AT", "fit:seed1")
    assert sweep.run_local(runs) == 1  # stops at the first failure: seed2 not attempted
    assert log() == [["fit", "seed0", ["--ckpt_path", "last"]], ["test", "seed0", ["--ckpt_path", "best"]],
                     ["fit", "seed1", ["--ckpt_path", "last"]]]
    monkeypatch.delenv("FAIL_AT")
    assert sweep.run_local(runs) == 0  # seed0 finished: skipped; seed1 resumes (--ckpt_path last)
    assert log() == [["fit", "seed1", ["--ckpt_path", "last"]], ["test", "seed1", ["--ckpt_path", "best"]],
                     ["fit", "seed2", ["--ckpt_path", "last"]], ["test", "seed2", ["--ckpt_path", "best"]]]
    assert sweep.run_local(runs) == 0 and log() == []  # all finished: nothing runs
    (tmp_path / "sw" / "seed2" / "test_metrics.json").unlink()
    monkeypatch.setenv("FAIL_AT", "test:seed2")
    assert sweep.run_local(runs, keep_going=True) == 1
    assert log() == [["fit", "seed2", ["--ckpt_path", "last"]], ["test", "seed2", ["--ckpt_path", "best"]]]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synthetic_root) -> Path:
    work = tmp_path_factory.mktemp("sweepwork")
    (work / "data").mkdir()
    (work / "data" / "synthetic").symlink_to(synthetic_root)
    return work


# one epoch of 2 training steps, one validation batch (best.ckpt for the test): about the sweep, not the model
TINY = ["--config", str(REPO / "conf/baseline/tiny.yaml"), "--data.init_args.num_workers", "0",
        "--data.init_args.batch_size", "8", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _sweep(workdir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fasvlm.cli", "sweep", *TINY, "--seeds", "0-2", "--out",
                             "runs/sw", *extra], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow  # 3 runs x (fit + test) through the real CLI, killed and resumed: ~3 min on 2 busy cores
def test_local_sweep_resumes_after_a_kill_and_reports(workdir, tmp_path):
    sw = workdir / "runs" / "sw"
    proc = _sweep(workdir)
    deadline = time.monotonic() + 600
    # kill the whole sweep (its fit/test children too) once run 0 finished and run 1 started
    while not ((sw / "seed0" / "test_metrics.json").is_file() and (sw / "seed1").is_dir()):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished0 = (sw / "seed0" / "test_metrics.json").stat().st_mtime_ns
    assert not (sw / "seed2" / "test_metrics.json").exists()

    proc = _sweep(workdir)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "seed0: finished (test_metrics.json exists), skipped" in out
    assert "seed1: fasvlm fit" in out and "seed2: fasvlm fit" in out
    assert (sw / "seed0" / "test_metrics.json").stat().st_mtime_ns == finished0  # not rerun
    for k in range(3):
        run = sw / f"seed{k}"
        assert (run / "test_metrics.json").is_file()
        info = json.loads((run / "run_info.json").read_text())
        assert info["seed"] == k and info["packages"]["torch"] and info["device"]["hostname"]
        assert info["git"] is None or len(info["git"]["commit"]) == 40
        assert info["sessions"][-1]["wall_s"] > 0 and info["wall_s"] > 0
    assert len(json.loads((sw / "seed0" / "run_info.json").read_text())["sessions"]) == 1

    # `fasvlm report` on these runs: one group (they differ only by seed), mean ± std = the hand computation
    from fasvlm.tools.report import main as report

    out_dir = tmp_path / "report"
    assert report([str(sw / "seed*"), "--out", str(out_dir), "--no-figure"]) == 0
    import csv

    rows = list(csv.DictReader((out_dir / "report.csv").open()))
    assert {r["group"] for r in rows} == {"BaselineSystem"}
    metrics = [json.loads((sw / f"seed{k}" / "test_metrics.json").read_text())["domains"] for k in range(3)]
    for target in ("synth_lowlight", "synth_phonecam"):
        hand = [m[target]["paper"]["auc"] for m in metrics]
        row = next(r for r in rows if r["mode"] == "paper" and r["target"] == target and r["metric"] == "auc")
        assert float(row["mean"]) == pytest.approx(statistics.mean(hand), abs=1e-12)
        assert float(row["std"]) == pytest.approx(statistics.stdev(hand), abs=1e-12)
