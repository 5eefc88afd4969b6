"""SLURM templates (conf/slurm/*.sbatch).

Fast tests run each template with bash outside SLURM, with a fake `srun` that records its argument vector: the
arguments reach `fasvlm fit`/`fasvlm test` intact (no shell re-parsing), with the SLURM-derived options after them.
The slow test (`make test-slurm`, root, FASVLM_SLURM_TEST=1) runs tests/slurm/run_slurm_test.sh: a real one-node
cluster, a train+test job, a SIGUSR1 -> requeue -> resume job, scancel -> resubmission, two concurrent jobs;
FASVLM_SLURM_MULTINODE_TEST=1 runs the two-node one (tests/slurm/multinode, `make test-slurm-multinode`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "conf" / "slurm"
TEMPLATES = sorted(SLURM.glob("*.sbatch"))

_FAKE_SRUN = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["FAKE_SRUN_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
with open(os.environ["FAKE_SRUN_LOG"] + ".env", "a") as f:
    f.write(json.dumps({k: os.environ.get(k) for k in ("FASVLM_RUN_NAME", "FASVLM_RUN_DIR")}) + "\\n")
sys.exit(int(os.environ.get("FAKE_SRUN_FIT_RC", "0")) if "fit" in sys.argv else 0)
"""


def _sbatch_header(path: Path) -> list[str]:
    """The #SBATCH lines sbatch reads: those before the first command line."""
    out = []
    for line in path.read_text().splitlines()[1:]:
        s = line.strip()
        if s and not s.startswith("#"):
            break
        if s.startswith("#SBATCH"):
            out.append(s[len("#SBATCH"):].strip())
    return out


def test_templates_exist():
    assert {p.name for p in TEMPLATES} >= {"single_node.sbatch", "multi_node.sbatch", "cpu_gloo.sbatch"}
    assert (SLURM / "README.md").is_file()


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_header(path):
    subprocess.run(["bash", "-n", str(path)], check=True)
    header = _sbatch_header(path)
    assert "--signal=SIGUSR1@90" in header
    assert "--requeue" in header and "--open-mode=append" in header
    assert any(h.startswith("--ntasks-per-node=") for h in header)
    assert any(h.startswith("--nodes=") for h in header)
    if path.stem != "cpu_gloo":
        gpus = next(h for h in header if h.startswith("--gpus-per-node="))
        tasks = next(h for h in header if h.startswith("--ntasks-per-node="))
        assert gpus.split("=")[1] == tasks.split("=")[1], "one task per GPU"
        assert not any(h.startswith("--gpus-per-task") for h in header)
    text = path.read_text()
    assert "eval " not in text and "bash -c" not in text and "sh -c" not in text
    assert text.splitlines()[1].startswith("# sbatch ") and "conf/slurm/" + path.name in text.splitlines()[1]


def _srun_env(tmp_path: Path) -> list[dict]:
    """The run-directory variables each fake srun call saw."""
    return [json.loads(line) for line in (tmp_path / "srun.jsonl.env").read_text().splitlines()]


def _run_template(path: Path, tmp_path: Path, args: list[str], *, rc: int = 0, **env_extra: str) -> list[list[str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    srun = bindir / "srun"
    srun.write_text(_FAKE_SRUN)
    srun.chmod(0o755)
    log = tmp_path / "srun.jsonl"
    log.unlink(missing_ok=True)
    (tmp_path / "srun.jsonl.env").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "FASVLM_"))}
    env.update(PATH=f"{bindir}:{env['PATH']}", FAKE_SRUN_LOG=str(log), SLURM_JOB_ID="4242", SLURM_JOB_NAME="exp 1",
               SLURM_NTASKS_PER_NODE="4", SLURM_JOB_NUM_NODES="3", SLURM_NTASKS="12", SLURM_JOB_NODELIST="n[1-3]",
               SLURM_CPUS_PER_TASK="6", **env_extra)
    proc = subprocess.run(["bash", str(path), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == rc, proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


# an argument a shell would split, expand or execute if the script re-parsed it
_TRICKY = "a b; touch PWNED $(touch PWNED2) `touch PWNED3` *"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_passes_arguments_intact(path, tmp_path):
    user = ["--config", "conf/quickstart.yaml", "--model.init_args.captions", _TRICKY]
    calls = _run_template(path, tmp_path, user)
    assert len(calls) == 2, calls  # fit, then test
    slurm_opts = ["--trainer.devices", "4", "--trainer.num_nodes", "3"]
    fit, test = calls
    i = fit.index("fit")
    assert fit[i + 1:] == [*user, *slurm_opts, "--ckpt_path", "last"]
    assert fit[:i] == ["--kill-on-bad-exit=1", "fasvlm"]
    j = test.index("test")
    assert test[j + 1:] == [*user, *slurm_opts, "--ckpt_path", "best"]
    assert not list(tmp_path.glob("PWNED*"))
    # the run directory: fasvlm's runs/<method>-<protocol>/<job name>, from the job name, never the job id
    assert _srun_env(tmp_path) == [{"FASVLM_RUN_NAME": "exp 1", "FASVLM_RUN_DIR": None}] * 2


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_does_not_test_after_an_interrupted_fit(path, tmp_path):
    calls = _run_template(path, tmp_path, ["--config", "x.yaml"], rc=143, FAKE_SRUN_FIT_RC="143")
    assert len(calls) == 1 and "fit" in calls[0]  # no `fasvlm test` after fit exited 143 (SIGTERM)


def test_template_options(tmp_path):
    calls = _run_template(SLURM / "cpu_gloo.sbatch", tmp_path, ["--config", "x.yaml"], FASVLM_TEST="0",
                          FASVLM_RUN_DIR="elsewhere/run", FASVLM_BIN="/opt/venv/bin/fasvlm")
    assert len(calls) == 1
    assert calls[0][:3] == ["--kill-on-bad-exit=1", "/opt/venv/bin/fasvlm", "fit"]
    assert _srun_env(tmp_path)[0]["FASVLM_RUN_DIR"] == "elsewhere/run"
    assert "--trainer.default_root_dir" not in calls[0]
    calls = _run_template(SLURM / "single_node.sbatch", tmp_path, ["--config", "x.yaml"], FASVLM_TEST_CKPT="last")
    assert calls[1][-2:] == ["--ckpt_path", "last"]


def test_template_containers(tmp_path):
    calls = _run_template(SLURM / "multi_node.sbatch", tmp_path, ["--config", "x.yaml"],
                          FASVLM_CONTAINER_IMAGE="/img/fasvlm.sqsh", FASVLM_CONTAINER_MOUNTS="/data:/data")
    fit = calls[0]
    assert fit[:5] == ["--kill-on-bad-exit=1", "--container-image=/img/fasvlm.sqsh", "--container-mounts=/data:/data",
                       f"--container-workdir={tmp_path}", "fasvlm"]
    calls = _run_template(SLURM / "single_node.sbatch", tmp_path, ["--config", "x.yaml"], FASVLM_SIF="/img/f.sif")
    fit = calls[0]
    assert fit[:10] == ["--kill-on-bad-exit=1", "apptainer", "exec", "--nv", "--bind", f"{tmp_path}:{tmp_path}",
                        "--pwd", str(tmp_path), "/img/f.sif", "fasvlm"]
    assert fit[10] == "fit"


def test_template_requires_ntasks_per_node(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_JOB_NAME="x", SLURM_JOB_NUM_NODES="1")
    proc = subprocess.run(["bash", str(SLURM / "single_node.sbatch")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "ntasks-per-node" in proc.stderr


@pytest.mark.slow
def test_slurm_cluster_train_and_requeue(tmp_path):
    """The real thing: tests/slurm/run_slurm_test.sh (minutes; root; FASVLM_SLURM_TEST=1, as `make test-slurm` sets)."""
    if os.environ.get("FASVLM_SLURM_TEST") != "1":
        pytest.skip("set FASVLM_SLURM_TEST=1 (make test-slurm) to start a SLURM test cluster")
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster runs munged/slurmctld/slurmd as root")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("no slurmctld and no apt-get to install it")
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "tests" / "slurm" / "run_slurm_test.sh")], capture_output=True,
                          text=True, timeout=1800)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    print(out[-6000:])
    assert proc.returncode == 0, out[-12000:]
    assert re.search(r"PASS: train\+test job and SIGUSR1 -> requeue -> resume job", out)
    print(f"SLURM test: {elapsed:.0f} s")


@pytest.mark.slow
def test_slurm_two_node_cluster_in_network_namespaces(tmp_path):
    """tests/slurm/multinode/run_multinode_test.sh: multi_node.sbatch on two nodes in network namespaces (train+test,
    SIGUSR1 -> requeue -> resume, a lost node -> failure -> resubmission resumes). 8-10 minutes; root;
    FASVLM_SLURM_MULTINODE_TEST=1 (`make test-slurm-multinode` runs the script directly)."""
    if os.environ.get("FASVLM_SLURM_MULTINODE_TEST") != "1":
        pytest.skip("set FASVLM_SLURM_MULTINODE_TEST=1 to start the two-node SLURM test cluster")
    if os.geteuid() != 0:
        pytest.skip("network namespaces, munged, slurmctld and slurmd need root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` (iproute2) to create network namespaces")
    proc = subprocess.run(["bash", str(REPO / "tests" / "slurm" / "multinode" / "run_multinode_test.sh")],
                          capture_output=True, text=True, timeout=2400)
    out = proc.stdout + proc.stderr
    print(out[-6000:])
    assert proc.returncode == 0, out[-12000:]
    assert "PASS: 2-node train+test (metrics = one-process evaluation), SIGUSR1 -> requeue -> resume, lost node" in out
