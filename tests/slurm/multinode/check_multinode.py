"""Multi-node checks of a run written by conf/slurm/multi_node.sbatch (used by run_multinode_test.sh).

    python check_multinode.py train    RUN --job ID --launches 1 --steps 2 --single EVAL1_TEST_METRICS.json ...
    python check_multinode.py requeue  RUN --job ID --launches 2 --steps 1 ...
    python check_multinode.py lostnode RUN --job ID --resumed-job ID2 --max-steps N --kill-step K --log L --resumed-log L2
    common: --probe-dir DIR --node-ns node1=<inode>,node2=<inode> --runs-root DIR

The probes (rank_probe.sh, the job's FASVLM_BIN) say where each task ran: job, restart, step, rank, node, pid, network
namespace. Checks: every job step had rank 0 on node1 and rank 1 on node2, each in the network namespace the test
created for that node (world size 2 across two namespaces); one run directory (nothing else under the runs root, no
logger version sub-directories); one set of TensorBoard event files, written by rank 0 (the pid in each events file
name is a rank-0 task's); in ``train`` mode, test metrics computed over both ranks' shards equal to a one-process
evaluation of the same checkpoint; in ``lostnode`` mode, a clear failure message and a resumption from the checkpoint
written before the node was lost. Exit code 0 when every check holds.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from check_run import train_loss_steps  # noqa: E402  (tests/slurm/check_run.py)

_failures: list[str] = []
# rel/abs tolerance of the DDP-vs-one-process metric comparison: the same samples are scored in different batches
# (rank shards), and float32 matmuls may differ in the last bits with the batch composition
_TOL = 1e-6


def check(cond: bool, what: str) -> bool:
    print(("  ok    " if cond else "  FAIL  ") + what)
    if not cond:
        _failures.append(what)
    return cond


def global_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def read_probes(probe_dir: Path, job: str) -> list[dict]:
    rows = []
    for f in sorted(probe_dir.glob(f"probe-{job}-*.txt")):
        parts = f.read_text().split()
        row = dict(zip(("job", "restart", "step", "procid", "nodeid", "node"), parts[:6], strict=True))
        row.update(p.split("=", 1) for p in parts[6:] if "=" in p)
        rows.append(row)
    return rows


def check_placement(probes: list[dict], node_ns: dict[str, str], job: str, launches: int, steps: int) -> set[int]:
    """Each (restart, step): rank 0 on node1, rank 1 on node2, in those nodes' namespaces; returns rank-0 pids."""
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for row in probes:
        groups.setdefault((row["restart"], row["step"]), {})[row["procid"]] = row
    restarts = sorted({r for r, _ in groups})
    check(len(restarts) == launches, f"job {job}: {launches} launch(es) of the batch script ran tasks (restarts "
                                     f"{restarts})")
    for restart in restarts:
        n = sum(1 for r, _ in groups if r == restart)
        check(n == steps, f"job {job} restart {restart}: {n} job step(s) == {steps}")
    for (restart, step), ranks in sorted(groups.items()):
        where = {p: (r["node"], r["netns"], r.get("addrs")) for p, r in sorted(ranks.items())}
        ok = (
            sorted(ranks) == ["0", "1"]
            and ranks["0"]["node"] == "node1" and ranks["0"]["netns"] == node_ns["node1"]
            and ranks["1"]["node"] == "node2" and ranks["1"]["netns"] == node_ns["node2"]
            and node_ns["node1"] != node_ns["node2"]
        )
        check(ok, f"job {job} restart {restart} step {step}: rank 0 in node1's namespace, rank 1 in node2's ({where})")
    return {int(r["pid"]) for r in probes if r["procid"] == "0"}


def check_run_dir(run: Path, runs_root: Path, rank0_pids: set[int]) -> None:
    others = sorted(p.name for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith("mn-"))
    check(not others, f"no run directories besides the jobs' runs/<job name> under {runs_root} (found {others})")
    nested = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_dir() and p.name not in ("checkpoints", "det"))
    check(not nested, f"one run directory: no sub-directories in {run.name} but checkpoints/ and det/ (found {nested})")
    events = sorted(run.rglob("events.out.tfevents.*"))
    pids = [event_pid(e) for e in events]
    check(bool(events) and all(p in rank0_pids for p in pids),
          f"{len(events)} TensorBoard events file(s), all written by rank 0 (pids {pids}, rank-0 pids "
          f"{sorted(rank0_pids)})")


def event_pid(path: Path) -> int:
    """The writer's pid from events.out.tfevents.<time>.<hostname>.<pid>.<n> (the hostname may hold dots)."""
    return int(path.name.split(".")[-2])


def compare(a, b, path: str = "") -> list[str]:
    """Differences between two JSON values (floats within _TOL)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in set(a) ^ set(b)]
        for k in sorted(set(a) & set(b)):
            out += compare(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in compare(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or not math.isclose(a, b, rel_tol=_TOL, abs_tol=_TOL):
            return [f"{path}: {a} != {b}"]
        return []
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def check_metrics(run: Path, single: Path, proj: Path) -> None:
    ddp = json.loads((run / "test_metrics.json").read_text())
    one = json.loads(single.read_text())
    check(ddp["world_size"] == 2 and one["world_size"] == 1,
          f"test on {ddp['world_size']} ranks (2 nodes) vs one process ({one['world_size']})")
    # the job's path is relative to its working directory (the project directory, parent of runs/)
    check((proj / ddp["ckpt_path"]).resolve() == Path(one["ckpt_path"]).resolve(),
          f"same checkpoint evaluated ({ddp['ckpt_path']})")
    diffs = compare(ddp["domains"], one["domains"]) + compare(ddp["mean_over_targets"], one["mean_over_targets"])
    diffs += compare(ddp["threshold"], one["threshold"])
    counts = {n: d["counts"]["n_frames"] for n, d in ddp["domains"].items()}
    check(not diffs, f"test metrics over both ranks' shards == one-process evaluation: every domain's counts "
                     f"{counts}, paper and honest metrics, threshold (differences: {diffs[:5]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "requeue", "lostnode"])
    parser.add_argument("run", type=Path)
    parser.add_argument("--job", required=True)
    parser.add_argument("--probe-dir", type=Path, required=True)
    parser.add_argument("--node-ns", required=True, help="node1=<inode>,node2=<inode>")
    parser.add_argument("--runs-root", type=Path, required=True)
    parser.add_argument("--launches", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1, help="job steps (srun) per launch")
    parser.add_argument("--single", type=Path, help="test_metrics.json of a one-process evaluation")
    parser.add_argument("--resumed-job")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--kill-step", type=int)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--resumed-log", type=Path)
    args = parser.parse_args(argv)
    node_ns = dict(kv.split("=", 1) for kv in args.node_ns.split(","))

    print(f"checking {args.run} ({args.mode}, multi-node)")
    rank0 = check_placement(read_probes(args.probe_dir, args.job), node_ns, args.job, args.launches, args.steps)
    if args.mode == "train":
        check_metrics(args.run, args.single, args.runs_root.parent)
    if args.mode == "lostnode":
        log = args.log.read_text(errors="replace")
        clear = [m for m in ("DUE TO NODE FAILURE", "Node failure on node2", "Connection closed by peer",
                             "Connection reset by peer") if m in log]
        check(bool(clear), f"the failed job's log says why: {clear}")
        rank0 |= check_placement(read_probes(args.probe_dir, args.resumed_job), node_ns, args.resumed_job, 1, 1)
        resumed = args.resumed_log.read_text(errors="replace")
        restored = re.findall(r"Restoring states from the checkpoint path at (\S+)", resumed)
        if check(len(restored) == 1, f"the resubmitted job resumed from a checkpoint ({restored})"):
            check(Path(restored[0]).name in ("last.ckpt",) or Path(restored[0]).name.startswith("hpc_ckpt_"),
                  f"... the run's newest checkpoint ({Path(restored[0]).name})")
        new_rank0 = {int(r["pid"]) for r in read_probes(args.probe_dir, args.resumed_job) if r["procid"] == "0"}
        firsts = [min(st) for f, st in train_loss_steps(args.run).items() if st and event_pid(f) in new_rank0]
        check(len(firsts) == 1 and args.kill_step <= firsts[0] < args.max_steps,
              f"the resubmitted job logs from step {firsts} on: at or after the checkpoint written before the node "
              f"was lost (step {args.kill_step}), not from 0")
        step = global_step(args.run / "checkpoints" / "last.ckpt")
        check(step == args.max_steps, f"last.ckpt global_step {step} == max_steps {args.max_steps} after resuming")
    check_run_dir(args.run, args.runs_root, rank0)
    if _failures:
        print(f"{len(_failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
