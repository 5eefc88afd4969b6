"""`make gpu-check`: the GPU acceptance kit, one command on a bare GPU machine (or, with GPU_CHECK_DRY=1, on a CPU).

Steps (each timed; the summary lists every skipped test with its reason):
1. install: the carried wheels (``make gpu-wheels``: what the GPU machine lacks, for Python 3.12) and the project with
   ``--no-deps`` into a target directory for the machine's own ``python3``, then put that directory first on
   PYTHONPATH and check that ``fasvlm`` is imported from it. Dry run: the wheels are installed into a throwaway
   directory for Python 3.12 (a check that the folder installs there), the project into the target directory, and
   the tests run on this venv's packages with the project from the target directory.
2. ``fasvlm bench`` of I-FAS (conf/ifas/paper.yaml + conf/data/one_to_eleven.yaml) and InstructFLIP
   (conf/instructflip/paper.yaml + conf/data/unified.yaml) with
   ``--preset real`` (published sizes, random init) on the GPU; dry run: ``--preset tiny`` on CPU. Both results go
   into one JSON beside DESIGN.md's targets. The bench runs before the tests: it needs the GPU to itself, and its
   numbers survive a test run that overruns the budget.
3. ``pytest -m gpu tests/gpu`` (JUnit XML kept; pytest-xdist workers and pytest-timeout where installed).

On a GPU the whole run keeps inside ``--budget`` (540 s: the device tool allows 600 s per command); each step's
timeout is cut to what is left.

Output folder (``--out``, default ``$OUT`` when set, else runs/gpu_check): gpu_check.json (summary), gpu_bench.json,
gpu_tests.xml and gpu_check.log. Exit code 0 only when the install, every test and both benches succeeded; a target
that is not met is reported, not failed (performance is measured, never asserted).

Standard library only: it runs before the project is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_WHEELS = ("setuptools", "wheel", "packaging")  # the project's build requirements (pip's isolated build env)
PY312 = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
         "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
         "--platform", "manylinux2014_x86_64"]
BENCH = {  # each method's paper config with the protocol of its paper's headline table
    "ifas": ["--config", "conf/ifas/paper.yaml", "--config", "conf/data/one_to_eleven.yaml"],
    "instructflip": ["--config", "conf/instructflip/paper.yaml", "--config", "conf/data/unified.yaml",
                     "--infer-batch-size", "256"],
}
# DESIGN.md's performance targets, checked against the GPU bench (reported, never asserted)
TARGETS = {
    "ifas": {"mfu": 0.45, "infer_images_per_s": 800.0},
    "instructflip": {"infer_images_per_s": 8000.0},
}


class Log:
    """Everything printed goes to stdout and to gpu_check.log."""

    def __init__(self, path: Path):
        self.file = path.open("w", encoding="utf-8")

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        self.file.write(text + "\n")
        self.file.flush()


def run(cmd: list[str], log: Log, *, env: dict[str, str], timeout: float, cwd: Path = REPO) -> tuple[int, str]:
    """Run ``cmd`` (no shell), echo and log its output; (exit code, output). 124 when it ran past ``timeout``, after
    its whole process group (pytest workers, the fits they start) was killed."""
    log(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        out, code = (out or "") + f"\n[gpu-check] timed out after {timeout:.0f} s", 124
    log(out.rstrip())
    return code, out


def wheels_in(folder: Path) -> tuple[list[Path], list[Path]]:
    """(runtime wheels, build wheels) of the carried folder."""
    wheels = sorted(folder.glob("*.whl"))
    build = [w for w in wheels if w.name.split("-")[0].lower() in BUILD_WHEELS]
    return [w for w in wheels if w not in build], build


SITE_MARKER = ".fasvlm-gpu-check"


def fresh_dir(path: Path) -> Path:
    """An empty directory at ``path``; an existing one is emptied only if this script made it (marker file)."""
    if path.exists():
        if not (path / SITE_MARKER).is_file() and (not path.is_dir() or any(path.iterdir())):
            raise SystemExit(f"gpu-check: {path} exists and was not made by gpu-check (no {SITE_MARKER}); "
                             "pass another --site or remove it")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / SITE_MARKER).write_text("install target of tests/gpu/gpu_check.py, rebuilt on every run\n")
    return path


def install(args, log: Log, env: dict[str, str], py: str) -> dict:
    """Install the carried wheels and the project (``--no-deps``) into ``args.site``; returns what was done."""
    pip = [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
           "--disable-pip-version-check"]
    runtime, build = wheels_in(args.wheels) if args.wheels.is_dir() else ([], [])
    report: dict = {"site": str(args.site), "wheels": [w.name for w in runtime]}
    if not args.wheels.is_dir() and not args.dry:
        raise SystemExit(f"gpu-check: no wheel folder {args.wheels}: run `make gpu-wheels` on a machine with PyPI "
                         "access and carry the folder (device tool: carry=['.whl-gpu'])")
    fresh_dir(args.site)
    if runtime:
        target = fresh_dir(args.site.parent / (args.site.name + "-py312-check")) if args.dry else args.site
        extra = PY312 if args.dry else []
        code, _ = run([*pip, "--upgrade", "--target", str(target), *extra, *map(str, runtime)], log, env=env,
                      timeout=300)
        if code != 0:
            raise SystemExit(f"gpu-check: installing the wheels of {args.wheels} failed (exit {code})")
        report["wheels_installed_into"] = str(target)
        if args.dry:
            shutil.rmtree(target, ignore_errors=True)
    elif not args.dry:
        raise SystemExit(f"gpu-check: {args.wheels} holds no wheels; run `make gpu-wheels`")
    # the project: built by pip (PEP 517) with setuptools/wheel from the carried folder, no index, from a copy of the
    # sources (setuptools builds in-tree and keeps build/lib, whose stale modules a later wheel build would ship)
    src = Path(tempfile.mkdtemp(prefix="fasvlm-gpu-src-"))
    for name in ("pyproject.toml", "setup.cfg", "README.md", "LICENSE", "src", "data_modules", "callbacks"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
    project = [*pip[:4], "-q", "--no-deps", "--no-compile", "--no-cache-dir", "--disable-pip-version-check",
               "--target", str(args.site)]
    if build:
        project += ["--no-index", "--find-links", str(args.wheels)]
    else:  # no build wheels carried: build with the setuptools this python already has
        project += ["--no-index", "--no-build-isolation"]
    code, _ = run([*project, str(src)], log, env=env, timeout=300)
    shutil.rmtree(src, ignore_errors=True)
    if code != 0:
        raise SystemExit(f"gpu-check: installing the project into {args.site} failed (exit {code})")
    return report


def versions(py: str, env: dict[str, str], log: Log) -> dict:
    """Where fasvlm is imported from and the versions that matter (one python call)."""
    code = ("import json, importlib, importlib.metadata as m, torch\n"
            "out = {'fasvlm_file': importlib.import_module('fasvlm').__file__, 'python': __import__('sys').version,"
            " 'cuda': torch.cuda.is_available(),"
            " 'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}\n"
            "for name in ('torch', 'lightning', 'transformers', 'peft', 'torchmetrics', 'jsonargparse', 'deepspeed',"
            " 'timm', 'pydantic'):\n"
            "    try: out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: out[name] = None\n"
            "print(json.dumps(out))\n")
    rc, out = run([py, "-c", code], log, env=env, timeout=120)
    if rc != 0:
        raise SystemExit("gpu-check: the installed project does not import (see the log)")
    return json.loads(out.strip().splitlines()[-1])


def junit_summary(path: Path) -> dict:
    """passed / failed / skipped (with reasons) from pytest's JUnit XML."""
    result: dict = {"passed": [], "failed": [], "skipped": []}
    if not path.is_file():
        return result
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            node = case.find("failure") if case.find("failure") is not None else case.find("error")
            result["failed"].append({"test": name, "message": (node.get("message") or "")[:500]})
        elif skipped is not None:
            result["skipped"].append({"test": name, "reason": skipped.get("message", "")})
        else:
            result["passed"].append(name)
    return result


def bench(method: str, args, log: Log, env: dict[str, str], py: str, timeout: float) -> dict:
    cmd = [py, "-m", "fasvlm.cli", "bench", *BENCH[method], "--random-data"]
    if args.dry:  # tiny size on CPU: the trainer settings of the GPU configs are replaced
        cmd += ["--preset", "tiny", "--device", "cpu", "--steps", "2", "--warmup", "1", "--infer-batches", "1",
                "--batch-size", "4", "--infer-batch-size", "4", "--trainer.accelerator", "cpu",
                "--trainer.precision", "32-true"]
    else:
        cmd += ["--preset", "real", "--steps", str(args.bench_steps), "--warmup", "3", "--infer-batches", "10"]
    code, out = run(cmd, log, env=env, timeout=timeout)
    if code != 0:
        return {"error": f"exit {code}", "output_tail": out[-2000:]}
    try:
        result = json.loads(out[out.index("{\n"):out.rindex("}") + 1])
    except ValueError:
        return {"error": "no JSON in the output", "output_tail": out[-2000:]}
    keep = ("device", "preset", "precision", "batch_size", "steps", "train_samples_per_s", "infer_images_per_s",
            "mfu", "infer_mfu", "peak_mem_bytes", "flops_per_sample", "infer_flops_per_image", "peak_flops",
            "peak_flops_source", "dataloader_wait_frac", "data", "config", "ifas_scoring_flops_per_image")
    row = {k: result.get(k) for k in keep}
    row["train_images_per_s"] = row["train_samples_per_s"]  # one image per sample in both methods
    row["peak_mem_gib"] = round(row["peak_mem_bytes"] / 2**30, 2) if row.get("peak_mem_bytes") else None
    if not args.dry:
        row["targets"] = {k: {"target": v, "measured": row.get(k), "met": (row.get(k) or 0) >= v}
                          for k, v in TARGETS[method].items()}
    return row


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # atomic


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry", action="store_true", default=os.environ.get("GPU_CHECK_DRY") == "1",
                   help="CPU, tiny size, skipping what needs CUDA (default: GPU_CHECK_DRY=1)")
    p.add_argument("--wheels", type=Path, default=REPO / ".whl-gpu", help="folder of `make gpu-wheels`")
    p.add_argument("--site", type=Path, default=None, help="install target (default: /tmp/fasvlm-gpu-site, dry: "
                   "/tmp/fasvlm-gpu-site-dry)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "runs" / "gpu_check"))
    p.add_argument("--workers", type=int, default=None, help="pytest-xdist workers (GPU default 4 when xdist is "
                   "installed; dry run: none)")
    p.add_argument("--bench-steps", type=int, default=10)
    p.add_argument("--test-timeout", type=float, default=300, help="seconds for the whole pytest run")
    p.add_argument("--bench-timeout", type=float, default=150, help="seconds for each method's bench")
    p.add_argument("--budget", type=float, default=None, help="seconds for everything (default: 540 on a GPU, "
                   "inside the device tool's 600 s per command; none in the dry run)")
    p.add_argument("--skip-bench", action="store_true")
    args = p.parse_args(argv)
    args.site = (args.site or Path(tempfile.gettempdir()) / ("fasvlm-gpu-site-dry" if args.dry else
                                                             "fasvlm-gpu-site")).resolve()
    args.wheels = args.wheels.resolve()
    if args.budget is None and not args.dry:
        args.budget = 540.0
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "gpu_check.log")
    # the machine's python3 on a GPU machine; the venv's python in the dry run (the Makefile picks it)
    py = sys.executable
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PYTHONPATH")}
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PIP_NO_INPUT="1")
    if args.dry:
        env["GPU_CHECK_DRY"] = "1"
    else:
        env.setdefault("DS_ACCELERATOR", "cuda")  # DeepSpeed built here on CPU: no guessing of the accelerator there
    summary: dict = {"mode": "dry (CPU, tiny size)" if args.dry else "gpu", "host": platform.node(), "steps": {}}
    t_all = time.perf_counter()

    def remaining() -> float:
        """Seconds left of --budget (each step's timeout is cut to it, so the reports are always written)."""
        return max(30.0, args.budget - (time.perf_counter() - t_all)) if args.budget else float("inf")

    t0 = time.perf_counter()
    summary["install"] = install(args, log, env, py)
    env["PYTHONPATH"] = str(args.site)
    summary["versions"] = versions(py, env, log)
    if not summary["versions"]["fasvlm_file"].startswith(str(args.site)):
        raise SystemExit(f"gpu-check: fasvlm was imported from {summary['versions']['fasvlm_file']}, not from the "
                         f"installed copy in {args.site}")
    if not args.dry and not summary["versions"]["cuda"]:
        raise SystemExit("gpu-check: torch sees no CUDA device; on a CPU machine run GPU_CHECK_DRY=1 make gpu-check")
    summary["steps"]["install_s"] = round(time.perf_counter() - t0, 1)

    bench_ok = True
    if not args.skip_bench:
        t0 = time.perf_counter()
        results = {m: bench(m, args, log, env, py, min(args.bench_timeout, remaining())) for m in BENCH}
        bench_ok = not any("error" in r for r in results.values())
        if not args.dry:  # DESIGN.md's reference peak is the measured bf16 matmul rate; bench's MFU uses the spec sheet
            rc, out = run([py, "-c", "import torch; from fasvlm.perf import measured_matmul_rate; "
                           "print(measured_matmul_rate(torch.device('cuda')))"], log, env=env, timeout=60)
            measured = float(out.strip().splitlines()[-1]) if rc == 0 else None
            for r in results.values():
                if "error" not in r and measured:
                    r["measured_bf16_matmul_flops"] = measured
                    r["mfu_vs_measured_matmul"] = r["flops_per_sample"] * r["train_samples_per_s"] / measured
                    if "mfu" in r["targets"]:
                        t = r["targets"]["mfu"]["target"]
                        r["targets"]["mfu_vs_measured_matmul"] = {"target": t, "measured": r["mfu_vs_measured_matmul"],
                                                                  "met": r["mfu_vs_measured_matmul"] >= t}
        bench_json = {"device": summary["versions"]["device"], "mode": summary["mode"], **results}
        write_json(args.out / "gpu_bench.json", bench_json)
        summary["bench"] = str(args.out / "gpu_bench.json")
        summary["steps"]["bench_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    xml = args.out / "gpu_tests.xml"
    # src/ is not on sys.path (pytest adds the test folders, `python -m` the repo root, which holds no `fasvlm`), so
    # `import fasvlm` in the tests and in their `python -m fasvlm.cli` subprocesses finds the installed copy
    cmd = [py, "-m", "pytest", "tests/gpu", "-m", "gpu", "-p", "no:cacheprovider", "-rA", "-q",
           f"--junitxml={xml}", "-o", "junit_family=xunit2"]
    workers = args.workers if args.workers is not None else (0 if args.dry else 4)
    if workers and subprocess.run([py, "-c", "import xdist"], env=env, capture_output=True).returncode == 0:
        cmd += ["-n", str(workers)]
    if subprocess.run([py, "-c", "import pytest_timeout"], env=env, capture_output=True).returncode == 0:
        cmd += [f"--timeout={int(args.test_timeout * 0.8)}"]  # one hanging test fails alone, the report survives
    code, _ = run(cmd, log, env=env, timeout=min(args.test_timeout, remaining()))
    summary["tests"] = {"exit_code": code, **junit_summary(xml)}
    summary["steps"]["tests_s"] = round(time.perf_counter() - t0, 1)

    summary["steps"]["total_s"] = round(time.perf_counter() - t_all, 1)
    tests = summary["tests"]
    ok = code == 0 and not tests["failed"] and bench_ok
    summary["ok"] = ok
    write_json(args.out / "gpu_check.json", summary)

    log(f"\n=== gpu-check ({summary['mode']}) on {summary['versions']['device']}: "
        f"{len(tests['passed'])} passed, {len(tests['failed'])} failed, {len(tests['skipped'])} skipped; "
        f"steps {summary['steps']}")
    for s in tests["skipped"]:
        log(f"SKIPPED {s['test']}: {s['reason']}")
    for f in tests["failed"]:
        log(f"FAILED {f['test']}: {f['message'][:300]}")
    if not args.skip_bench:
        for m, r in results.items():
            if "error" in r:
                log(f"BENCH {m}: FAILED ({r['error']})")
                continue
            line = (f"BENCH {m}: train {r['train_samples_per_s']:.1f} samples/s, MFU {r['mfu']:.1%}, infer "
                    f"{r['infer_images_per_s']:.1f} images/s, peak {r['peak_mem_gib']} GiB")
            for k, t in r.get("targets", {}).items():
                line += f"; {k} target {t['target']}: {'met' if t['met'] else 'NOT met'}"
            log(line)
    log(f"gpu-check: {'OK' if ok else 'FAILED'}; summary {args.out / 'gpu_check.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
