"""``fasvlm sweep``: seeds x grid -> one run directory per run, run locally one after another or as a SLURM job array.

    fasvlm sweep --config conf/baseline/tiny.yaml --seeds 0-2 --grid model.init_args.lr=1e-3,2e-3 \\
        --out runs/sweeps/baseline_lr --trainer.max_epochs 5          # other --key value: passed to every run
    fasvlm sweep ... --slurm conf/slurm/single_node.sbatch [--submit] [--sbatch-arg=--partition=gpu]

Every run gets ``<out>/<key=value,...>-seed<k>`` (``seed<k>`` without a grid), passed explicitly as
``--trainer.default_root_dir`` together with ``--seed_everything k``; the arguments of a run are, in order: the
``--config`` files, the pass-through arguments, the grid values, the seed and run directory. Every ``fit`` writes
``<run>/run_info.json`` (``fasvlm.callbacks.run_info.RunInfoCallback``, added by the CLI: git commit, packages, seed,
manifest hashes, wall time, GPU), which ``fasvlm report`` reads.

* **local** (default): ``fasvlm fit ... --ckpt_path last`` then ``fasvlm test ... --ckpt_path best`` for each run in
  turn. Resumable: a run whose ``test_metrics.json`` exists is finished and skipped; an unfinished one resumes from its
  newest checkpoint (``--ckpt_path last``: nothing on a first launch). The first failing run stops the sweep with a
  non-zero exit code (``--keep-going`` runs the others first).
* **SLURM** (``--slurm TEMPLATE``): writes ``<out>/sweep.sbatch`` from one of the project's templates (conf/slurm/):
  the template's ``#SBATCH`` resources, ``--array=0-(N-1)``, one task per run, and the template's own body, which
  runs fit (``--ckpt_path last``) and test. Requeue-safe as the templates are (SIGUSR1 -> checkpoint -> requeue ->
  resume in the same fixed run directory; Lightning requeues the array task ``<array job>_<task>``), and a task whose
  run already has ``test_metrics.json`` exits at once. ``--submit`` calls ``sbatch`` on it. No scheduler of our own.

``<out>/sweep.json`` records the plan (configs, pass-through, grid, seeds, each run's arguments); a second sweep into
the same directory must have the same plan, otherwise it is refused (runs of two plans never mix in one directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any

__all__ = ["Run", "parse_seeds", "parse_grid", "plan_runs", "write_sbatch", "run_local", "main"]

PLAN_SCHEMA = "fasvlm.sweep/1"
FINISHED = "test_metrics.json"


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its directory, seed, grid values and the arguments of ``fasvlm fit``/``test``."""

    name: str
    dir: str
    seed: int
    overrides: dict[str, str]
    args: list[str]

    def finished(self) -> bool:
        return (Path(self.dir) / FINISHED).is_file()


def parse_seeds(text: str) -> list[int]:
    """``0-4`` -> [0..4]; ``2,3,4`` -> [2, 3, 4]; ``0-1,7`` -> [0, 1, 7]. Duplicates are an error."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            if not lo.isdigit() or (sep and not hi.isdigit()) or (sep and int(hi) < int(lo)):
                raise ValueError
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected a range and/or a list of integers, e.g. 0-4 or 2,3,4") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} names a seed twice")
    return seeds


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["model.init_args.alpha=0.5,0.7"]`` -> {"model.init_args.alpha": ["0.5", "0.7"]} (values stay strings: the
    CLI parses them as it parses any command-line value; a value holding a comma cannot be given here)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("--")
        vals = [v.strip() for v in values.split(",")] if sep else []
        if not key or not vals or any(v == "" for v in vals):
            raise ValueError(f"--grid {item!r}: expected KEY=V1,V2,... with a config key, e.g. "
                             "model.init_args.alpha=0.5,0.7")
        if key in grid:
            raise ValueError(f"--grid names {key!r} twice; give all its values in one --grid {key}=V1,V2")
        if len(set(vals)) != len(vals):
            raise ValueError(f"--grid {item!r} repeats a value")
        grid[key] = vals
    return grid


def _short_names(keys: list[str]) -> dict[str, str]:
    """The last component of each dotted key (``model.init_args.alpha`` -> ``alpha``), the full key where two agree."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _path_safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "._+-=" else "_" for c in value)


def plan_runs(configs: list[str], seeds: list[int], grid: dict[str, list[str]], passthrough: list[str],
              out: Path) -> list[Run]:
    """Expand seeds x grid into runs (grid order as given, seeds innermost)."""
    if not configs:
        raise ValueError("give at least one --config (the method's config, then data/strategy fragments)")
    names = _short_names(list(grid))
    runs = []
    for values in product(*grid.values()) if grid else [()]:
        overrides = dict(zip(grid, values))
        prefix = ",".join(f"{names[k]}={_path_safe(v)}" for k, v in overrides.items())
        for seed in seeds:
            name = f"{prefix}-seed{seed}" if prefix else f"seed{seed}"
            run_dir = out / name
            args = [a for c in configs for a in ("--config", c)] + list(passthrough)
            for key, value in overrides.items():
                args += [f"--{key}", value]
            args += ["--seed_everything", str(seed), "--trainer.default_root_dir", str(run_dir)]
            runs.append(Run(name=name, dir=str(run_dir), seed=seed, overrides=overrides, args=args))
    if len({r.name for r in runs}) != len(runs):
        raise ValueError("two grid values map to the same run directory name; use values that differ in letters or "
                         "digits")
    return runs


def _write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_plan(out: Path, plan: dict[str, Any]) -> None:
    """sweep.json; refuses to replace the plan of another sweep (the runs in ``out`` belong to it)."""
    path = out / "sweep.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path} exists but is not valid JSON ({err}); move it away or choose another --out") \
                from None
        if old.get("runs") != plan["runs"]:
            raise ValueError(f"{path} holds another sweep's plan (different configs, seeds, grid or arguments); "
                             "choose another --out, or delete that sweep directory if its runs are no longer wanted")
        plan = {**plan, "created": old.get("created", plan["created"])}
    _write_text_atomic(path, json.dumps(plan, indent=2) + "\n")


def _fasvlm_command() -> list[str]:
    return [sys.executable, "-m", "fasvlm.cli"]


def run_local(runs: list[Run], *, test: bool = True, keep_going: bool = False) -> int:
    """Run each unfinished run (fit, resuming from its newest checkpoint, then test); 0 when all runs finished."""
    failed: list[str] = []
    for i, run in enumerate(runs):
        tag = f"[sweep {i + 1}/{len(runs)}] {run.dir}"
        if run.finished():
            print(f"{tag}: finished ({FINISHED} exists), skipped", flush=True)
            continue
        steps = [("fit", [*run.args, "--ckpt_path", "last"])]
        if test:
            steps.append(("test", [*run.args, "--ckpt_path", "best"]))
        for sub, args in steps:
            print(f"{tag}: fasvlm {sub}", flush=True)
            rc = subprocess.run([*_fasvlm_command(), sub, *args]).returncode
            if rc != 0:
                print(f"{tag}: fasvlm {sub} failed with exit code {rc}", file=sys.stderr, flush=True)
                failed.append(run.dir)
                break
        if failed and not keep_going:
            break
        if test and not failed and not run.finished():
            print(f"{tag}: test ended without writing {FINISHED}", file=sys.stderr, flush=True)
            failed.append(run.dir)
            if not keep_going:
                break
    if failed:
        print(f"fasvlm sweep: {len(failed)} run(s) failed: {', '.join(failed)}; rerun the same command to resume",
              file=sys.stderr)
        return 1
    print(f"fasvlm sweep: all {len(runs)} runs finished")
    return 0


def _template_parts(template: Path) -> tuple[list[str], str]:
    """The template's #SBATCH lines (less job name, output and array, which the sweep sets) and its body."""
    lines = template.read_text().splitlines()
    sbatch_idx = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    if not sbatch_idx or not lines[0].startswith("#!"):
        raise ValueError(f"{template}: not an sbatch template (expected a '#!' line and '#SBATCH' lines, as in "
                         "conf/slurm/*.sbatch)")
    body = "\n".join(lines[sbatch_idx[-1] + 1:])
    if '"$@"' not in body:
        raise ValueError(f'{template}: the template must pass its arguments ("$@") to fasvlm fit/test, as the '
                         "templates in conf/slurm/ do")
    skip = ("--job-name", "--output", "--array", "-J ", "-o ", "-a ", "--chdir", "-D ")
    header = [lines[i] for i in sbatch_idx if not lines[i].removeprefix("#SBATCH").strip().startswith(skip)]
    return header, body


def write_sbatch(runs: list[Run], template: Path, out: Path, *, job_name: str, test: bool = True) -> Path:
    """``<out>/sweep.sbatch``: an array job over ``runs`` built from ``template`` (one task per run)."""
    header, body = _template_parts(template)
    logs = (out / "logs").resolve()
    logs.mkdir(parents=True, exist_ok=True)
    fasvlm = Path(sys.executable).with_name("fasvlm")
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# Written by `fasvlm sweep` from {template}: one array task per run of {out / 'sweep.json'}.",
        f"# Submit: sbatch {q(str(out / 'sweep.sbatch'))}   (fasvlm sweep --submit does this)",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array=0-{len(runs) - 1}",
        f"#SBATCH --output={logs}/%x-%A_%a.out",
        f"#SBATCH --chdir={Path.cwd()}",
        *header,
        "",
        "set -euo pipefail",
        'task="${SLURM_ARRAY_TASK_ID:?submit as an array job (sbatch --array)}"',
        "case \"$task\" in",
    ]
    for i, run in enumerate(runs):
        lines.append(f"    {i}) run_dir={q(run.dir)}; args=({' '.join(q(a) for a in run.args)}) ;;")
    lines += [
        '    *) echo "fasvlm sweep: no run for array task $task" >&2; exit 2 ;;',
        "esac",
        'if [[ -f "$run_dir/' + FINISHED + '" ]]; then',
        '    echo "fasvlm sweep: $run_dir is finished (' + FINISHED + ' exists); nothing to do"',
        "    exit 0",
        "fi",
        'export FASVLM_RUN_DIR="$run_dir"',
        f"export FASVLM_TEST={1 if test else 0}",
    ]
    if fasvlm.exists():
        lines.append(f'export FASVLM_BIN="${{FASVLM_BIN:-{fasvlm}}}"')
    lines += ['set -- "${args[@]}"', f"# ---- the body of {template} ----", body, ""]
    path = out / "sweep.sbatch"
    _write_text_atomic(path, "\n".join(lines), mode=0o755)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fasvlm sweep", allow_abbrev=False,
        description="Seeds x grid of fasvlm runs, local (sequential, resumable) or a SLURM job array. Any other "
        "--key value argument is passed unchanged to every run's fit and test.",
        epilog="Example: fasvlm sweep --config conf/baseline/tiny.yaml --seeds 0-2 --out runs/sweeps/base")
    p.add_argument("--config", action="append", default=[], help="config file (repeatable; composed in order)")
    p.add_argument("--seeds", default="0", help="seeds: 0-4, 2,3,4 or 0-1,7 (default 0)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config key and its values (repeatable: the product of all grids)")
    p.add_argument("--out", type=Path, default=None,
                   help="sweep directory (default runs/sweeps/<stem of the last --config>)")
    p.add_argument("--slurm", type=Path, default=None, metavar="TEMPLATE",
                   help="write <out>/sweep.sbatch from this conf/slurm template instead of running locally")
    p.add_argument("--submit", action="store_true", help="with --slurm: sbatch the written script")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="with --submit: an extra sbatch option, e.g. --sbatch-arg=--partition=gpu (repeatable)")
    p.add_argument("--job-name", default=None, help="SLURM job name (default fasvlm-sweep-<out name>)")
    p.add_argument("--no-test", action="store_true", help="fit only (then no run is ever 'finished')")
    p.add_argument("--keep-going", action="store_true", help="local: run the other runs after a failure")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their commands; run nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        for a in passthrough:
            if a in ("--seed_everything", "--trainer.default_root_dir") or a.startswith(
                    ("--seed_everything=", "--trainer.default_root_dir=")):
                raise ValueError(f"{a}: the sweep sets the seed (--seeds) and the run directories (--out) itself")
        if passthrough and not passthrough[0].startswith("--"):
            raise ValueError(f"unexpected argument {passthrough[0]!r}: pass-through arguments are --key value pairs")
        if args.submit and args.slurm is None:
            raise ValueError("--submit needs --slurm TEMPLATE")
        for c in args.config:
            if not Path(c).is_file():
                raise ValueError(f"--config {c}: no such file")
        seeds = parse_seeds(args.seeds)
        grid = parse_grid(args.grid)
        out = args.out or Path("runs") / "sweeps" / (Path(args.config[-1]).stem if args.config else "sweep")
        runs = plan_runs(args.config, seeds, grid, passthrough, out)
        if args.slurm is not None and not args.slurm.is_file():
            raise ValueError(f"--slurm {args.slurm}: no such template (see conf/slurm/)")
    except ValueError as err:
        print(f"fasvlm sweep: error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        for run in runs:
            state = "finished" if run.finished() else "to run"
            print(f"{run.dir} ({state}): fasvlm fit {shlex.join(run.args)} --ckpt_path last")
        return 0
    plan = {"schema": PLAN_SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "configs": args.config, "seeds": seeds, "grid": grid, "passthrough": passthrough,
            "runs": [asdict(r) for r in runs]}
    try:
        _write_plan(out, plan)
    except ValueError as err:
        print(f"fasvlm sweep: error: {err}", file=sys.stderr)
        return 2
    if args.slurm is None:
        return run_local(runs, test=not args.no_test, keep_going=args.keep_going)
    try:
        script = write_sbatch(runs, args.slurm, out, job_name=args.job_name or f"fasvlm-sweep-{out.name}",
                              test=not args.no_test)
    except ValueError as err:
        print(f"fasvlm sweep: error: {err}", file=sys.stderr)
        return 2
    todo = sum(not r.finished() for r in runs)
    print(f"wrote {script}: array of {len(runs)} tasks ({todo} unfinished)")
    if not args.submit:
        print(f"submit with: sbatch {shlex.quote(str(script))}")
        return 0
    proc = subprocess.run(["sbatch", "--parsable", *args.sbatch_arg, str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"fasvlm sweep: sbatch failed ({proc.returncode}): {proc.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"submitted array job {proc.stdout.strip().split(';')[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
