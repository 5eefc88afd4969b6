"""Checks of a run directory written by conf/slurm/cpu_gloo.sbatch (used by run_slurm_test.sh).

    python check_run.py train   RUN_DIR --max-steps N
    python check_run.py requeue RUN_DIR --max-steps N --log JOB_LOG
    python check_run.py step    CKPT            (prints the checkpoint's global_step)

Exit code 0 when every check holds; each failed check is printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

_failures: list[str] = []


def check(cond: bool, what: str) -> bool:
    print(("  ok    " if cond else "  FAIL  ") + what)
    if not cond:
        _failures.append(what)
    return cond


def global_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def train_loss_steps(run: Path) -> dict[Path, list[int]]:
    """train/loss steps of each TensorBoard events file directly in the run directory."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    out = {}
    for f in sorted(run.glob("events.out.tfevents.*")):
        steps = []
        for event in EventFileLoader(str(f)).Load():
            for value in event.summary.value:
                if value.tag == "train/loss":
                    tensor_util.make_ndarray(value.tensor)  # a readable scalar
                    steps.append(int(event.step))
        out[f] = steps
    return out


def check_common(run: Path, max_steps: int, world_size: int, tested: bool) -> None:
    last = run / "checkpoints" / "last.ckpt"
    if check(last.is_file(), f"{last} exists"):
        step = global_step(last)
        check(step == max_steps, f"last.ckpt global_step {step} == max_steps {max_steps}")
    check((run / "checkpoints" / "best.ckpt").is_file(), "best.ckpt exists")
    check((run / "config.yaml").is_file(), "config.yaml (resolved config) in the run directory")
    metrics = run / "test_metrics.json"
    if tested and check(metrics.is_file(), f"{metrics} exists"):
        report = json.loads(metrics.read_text())
        domains = report.get("domains", {})
        check(len(domains) >= 3, f"test metrics for {len(domains)} target domains ({', '.join(domains)})")
        check(report.get("world_size") == world_size, f"test ran on {report.get('world_size')} ranks == {world_size}")
    val = run / "val_metrics.json"
    if check(val.is_file(), f"{val} exists"):
        check(json.loads(val.read_text()).get("world_size") == world_size, f"validation ran on {world_size} ranks")
    subdirs = [p.name for p in run.iterdir() if p.is_dir() and p.name not in ("checkpoints", "det")]  # det/: DET-curve figures
    check(not subdirs, f"no logger version sub-directories in the run directory (found {subdirs})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "requeue", "step"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)

    if args.mode == "step":
        print(global_step(args.path))
        return 0

    run = args.path
    print(f"checking {run} ({args.mode})")
    check_common(run, args.max_steps, args.world_size, tested=args.mode == "train")
    steps_by_file = train_loss_steps(run)
    all_steps = sorted({s for steps in steps_by_file.values() for s in steps})
    if args.mode == "train":
        check(all_steps == list(range(args.max_steps)),
              f"train/loss logged at every step 0..{args.max_steps - 1} (got {len(all_steps)} distinct steps, "
              f"max {max(all_steps) if all_steps else None})")

    if args.mode == "requeue":
        hpc = sorted(run.glob("hpc_ckpt_*.ckpt"))
        if check(len(hpc) >= 1, f"the SIGUSR1 checkpoint exists ({[p.name for p in hpc]})"):
            hpc_step = global_step(hpc[0])
            check(0 < hpc_step < args.max_steps, f"{hpc[0].name} saved mid-training: 0 < step {hpc_step} < "
                                                 f"{args.max_steps}")
            log = args.log.read_text(errors="replace")
            launches = re.findall(r"job \d+ \(restart (\d+)\)", log)
            check(launches[:2] == ["0", "1"], f"the batch script ran twice, restart 0 then 1 (got {launches})")
            check("fasvlm: SIGUSR1: saved" in log, "the SIGUSR1 requeue (callbacks/requeue.py) saved and requeued")
            # the requeued launch resumes from the newest checkpoint: hpc_ckpt_1.ckpt, or a last.ckpt that the old
            # launch wrote after the handler (Lightning ignores SIGTERM under auto-requeue, so the old processes keep
            # training until SLURM's SIGKILL, KillWait seconds later, and may reach an epoch end first)
            second = log.split("(restart 1)", 1)[-1]
            restored = re.findall(r"Restoring states from the checkpoint path at (\S+)", second)
            source = Path(restored[0]).name if restored else None
            check(source in (hpc[0].name, "last.ckpt"), f"the requeued fit resumed from {source} "
                                                       f"(expected {hpc[0].name} or a newer last.ckpt)")
            old_files = {f: st for f, st in steps_by_file.items() if st and min(st) < hpc_step}
            new_files = {f: st for f, st in steps_by_file.items() if st and min(st) >= hpc_step}
            firsts = [min(st) if st else None for st in steps_by_file.values()]
            if check(len(new_files) == 1, f"one events file of the resumed launch in the same run directory "
                                          f"(first step per file: {firsts})"):
                resumed = next(iter(new_files.values()))
                first = resumed[0]
                first_launch = log.split("(restart 1)", 1)[0]
                sigterm = re.findall(r"SIGTERM: saved \S+ at step (\d+)", first_launch)
                if source == hpc[0].name:
                    check(first == hpc_step, f"the resumed launch logs from the signal step {hpc_step} (got {first})")
                    expected_last = args.max_steps - 1
                elif sigterm:
                    # after the requeue SLURM sent SIGTERM to the old processes: fasvlm saved last.ckpt at the end of
                    # a training batch (a mid-epoch state, no logging-step shift) and exited 143 (issue 14)
                    check(first == int(sigterm[0]), f"the resumed launch logs from the SIGTERM checkpoint's step "
                                                    f"{sigterm[0]} (got {first})")
                    expected_last = args.max_steps - 1
                else:
                    # Lightning adds 1 to its logging step when it restarts from a checkpoint written at the end of
                    # a training epoch (loops/training_epoch_loop.py reset()): the step axis shifts by one
                    expected_last = args.max_steps
                    print(f"  note  resumed from a last.ckpt written after the signal; TensorBoard steps {first}.. "
                          f"(Lightning's +1 logging-step shift for epoch-end checkpoints)")
                check(resumed == list(range(first, expected_last + 1)),
                      f"the resumed launch logs every step {first}..{expected_last} (got {resumed[0]}..{resumed[-1]}, "
                      f"{len(resumed)} steps)")
                before = {st for steps in old_files.values() for st in steps}
                missing = sorted(set(range(min(first, hpc_step))) - before)
                # at most the step in flight when the handler closed the logger is lost
                check(missing in ([], [hpc_step - 1]), f"steps before the resume logged by the first launch "
                                                       f"(missing {missing})")
    if _failures:
        print(f"{len(_failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
