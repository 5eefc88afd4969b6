"""``fasvlm report``: many runs' ``test_metrics.json`` -> per-target and average tables with mean ± std over seeds.

    fasvlm report 'runs/sweeps/baseline/*' --out reports/baseline [--compare published.yaml] [--fpr 0.01]

Each run directory must hold ``config.yaml`` (written by ``fit``) and ``test_metrics.json`` (written by ``test``);
runs without the latter are unfinished and skipped (counted). Runs whose resolved configs differ only by the seed
(``seed_everything``) and by their own paths (run directory, checkpoint directory, logger directory) form one group;
the table gives, per group and target domain, mean ± std over the group's seeds, and an *Average* row: the mean over
target domains computed per seed first, then mean ± std over seeds (how the papers average over their runs).

Two tables, one per metric mode (DESIGN.md, "Metrics"), each naming its mode in the caption:

* **paper**: AUC, HTER, TPR@FPR (the field's shared code: threshold at each target's own EER point, HTER = EER);
* **honest**: HTER, APCER, BPCER, ACER (one threshold from the source validation set, ISO/IEC 30107-3 APCER).

Outputs in ``--out``: ``report.md`` (also printed; ends with a provenance table per group from the runs'
``run_info.json``: seeds, git commits with a ``-dirty`` mark, GPU types, mean wall time), ``report.csv`` (long format: one row per group, mode, target,
metric, with the per-seed values), ``report.tex`` (booktabs tables to ``\\input`` into a paper: needs
``\\usepackage{booktabs}``) and ``report.png`` (per-target HTER bars with ± std error bars, one panel per mode;
matplotlib). Numbers are percent; std is the sample standard deviation (``--ddof 1``, the default) over seeds.

``--compare published.yaml`` adds published numbers as rows of their own. Every entry names its source, and an entry
without paper, table and row is refused (leave a number out rather than guess it)::

    - source: {paper: "InstructFLIP (ACM MM 2025)", table: "2a", row: "InstructFLIP"}
      mode: paper                 # paper or honest
      target: casia_fasd          # a target domain name of our runs, or "average"
      metrics: {hter: 1.23, auc: 99.1}    # percent; only the metrics the source reports
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["RunResult", "Cell", "load_run", "group_runs", "summarize", "render_markdown", "render_latex",
           "write_csv", "plot", "load_published", "main"]

AVERAGE = "average"
MODES: dict[str, tuple[str, ...]] = {"paper": ("auc", "hter", "tpr"), "honest": ("hter", "apcer", "bpcer", "acer")}
CAPTIONS = {
    "paper": "Paper-compatible mode: threshold at each target's own EER point (the field's shared SSDG/FLIP/InstructFLIP "
             "code), so HTER = EER",
    "honest": "Honest mode: one threshold chosen on the source validation set, applied unchanged to every target; "
              "APCER = worst attack type (ISO/IEC 30107-3)",
}
_PATH_KEYS = ("seed_everything", "ckpt_path", "trainer.default_root_dir", "checkpoint.dirpath",
              "last_checkpoint.dirpath")


def _label(metric: str, fpr: float) -> str:
    return {"auc": "AUC", "hter": "HTER", "apcer": "APCER", "bpcer": "BPCER", "acer": "ACER",
            "tpr": f"TPR@FPR={100 * fpr:g}%"}[metric]


@dataclass
class RunResult:
    """One finished run: where it is, its seed, its resolved config (flattened) and its per-target metrics."""

    dir: Path
    seed: int | None
    config: dict[str, Any]
    # metrics[mode][target][metric] = fraction in [0, 1] or NaN
    metrics: dict[str, dict[str, dict[str, float]]]
    targets: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # run_info.json (RunInfoCallback), when the run has one


@dataclass
class Cell:
    values: list[float]
    ddof: int = 1

    @property
    def n(self) -> int:
        return sum(not math.isnan(v) for v in self.values)

    @property
    def mean(self) -> float:
        vals = [v for v in self.values if not math.isnan(v)]
        return float(np.mean(vals)) if vals else math.nan

    @property
    def std(self) -> float:
        vals = [v for v in self.values if not math.isnan(v)]
        return float(np.std(vals, ddof=self.ddof)) if len(vals) > self.ddof else math.nan


@dataclass
class Group:
    label: str
    runs: list[RunResult] = field(default_factory=list)
    published: str | None = None  # source of a --compare row


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists of dicts (e.g. ``trainer.callbacks``) as ``a.b.0.c`` keys, so that a run's own paths
    inside a list (a callback's ``dirpath``) can be told apart from its identity."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, list) and any(isinstance(v, dict) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: obj}


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def load_run(run: Path, fpr: float) -> RunResult:
    """Read ``config.yaml`` and ``test_metrics.json`` of a run directory (ValueError naming the file on bad input)."""
    cfg_path, met_path = run / "config.yaml", run / "test_metrics.json"
    if not cfg_path.is_file():
        raise ValueError(f"{cfg_path}: missing (written by `fasvlm fit`); report groups runs by their resolved config")
    try:
        config = yaml.safe_load(cfg_path.read_text()) or {}
        report = json.loads(met_path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ValueError(f"{run}: cannot read config.yaml/test_metrics.json ({err})") from None
    domains = report.get("domains")
    if not isinstance(domains, dict):
        raise ValueError(f"{met_path}: expected a fasvlm test report with a 'domains' mapping (schema "
                         f"fasvlm.fas_metrics_report/1), got keys {sorted(report)}")
    targets = [n for n, d in domains.items() if d.get("role", "target") == "target"]
    key = f"{fpr:g}"
    metrics: dict[str, dict[str, dict[str, float]]] = {"paper": {}, "honest": {}}
    for name in targets:
        paper, honest = domains[name].get("paper") or {}, domains[name].get("honest") or {}
        tpr = paper.get("tpr_at_fpr") or {}
        if paper and key not in tpr:
            raise ValueError(f"{met_path}: no TPR at FPR {key} for {name} (the report has {sorted(tpr)}); pass --fpr "
                             "with one of those")
        metrics["paper"][name] = {"auc": _num(paper.get("auc")), "hter": _num(paper.get("hter")),
                                  "tpr": _num(tpr.get(key))}
        metrics["honest"][name] = {k: _num(honest.get(k)) for k in MODES["honest"]}
    seed = config.get("seed_everything")
    info: dict[str, Any] = {}
    if (run / "run_info.json").is_file():
        try:
            info = json.loads((run / "run_info.json").read_text())
        except ValueError as err:
            raise ValueError(f"{run / 'run_info.json'}: not valid JSON ({err})") from None
    if seed is None:
        seed = info.get("seed")
    flat = _flatten(config)
    # the run's own paths (as written at fit time, often relative to where fit ran) are not part of its identity
    root = (config.get("trainer") or {}).get("default_root_dir")
    run_paths = {str(run), str(run.resolve()), *([str(root).rstrip("/")] if root else [])}
    ident = {k: v for k, v in flat.items() if k not in _PATH_KEYS and not (
        isinstance(v, str) and any(v == p or v.startswith(p + os.sep) for p in run_paths))}
    return RunResult(dir=run, seed=None if seed is None else int(seed), config=ident, metrics=metrics,
                     targets=targets, info=info)


def group_runs(runs: list[RunResult]) -> list[Group]:
    """Runs whose identity configs are equal form one group; labelled by the keys in which groups differ."""
    keyed: dict[str, list[RunResult]] = {}
    for r in runs:
        keyed.setdefault(json.dumps(r.config, sort_keys=True, default=str), []).append(r)
    members = list(keyed.values())
    all_keys = sorted({k for g in members for k in g[0].config})
    differing = [k for k in all_keys if len({json.dumps(g[0].config.get(k), default=str) for g in members}) > 1]
    groups = []
    for rs in members:
        rs.sort(key=lambda r: (r.seed is None, r.seed, str(r.dir)))
        seen: dict[int | None, Path] = {}
        for r in rs:
            if r.seed is not None and r.seed in seen:
                print(f"fasvlm report: warning: seed {r.seed} twice in one group ({seen[r.seed]}, {r.dir}); both kept",
                      file=sys.stderr)
            seen.setdefault(r.seed, r.dir)
        if differing:
            label = ", ".join(f"{k.rsplit('.', 1)[-1]}={rs[0].config.get(k)}" for k in differing)
        else:
            label = str(rs[0].config.get("model.class_path", "runs")).rsplit(".", 1)[-1]
        groups.append(Group(label=label, runs=rs))
    return groups


def summarize(group: Group, mode: str, ddof: int = 1) -> dict[str, dict[str, Cell]]:
    """target -> metric -> Cell over the group's seeds, plus ``average`` (mean over targets per seed first)."""
    targets = list(dict.fromkeys(t for r in group.runs for t in r.targets))
    out: dict[str, dict[str, Cell]] = {}
    for t in targets:
        out[t] = {m: Cell([r.metrics[mode].get(t, {}).get(m, math.nan) for r in group.runs], ddof)
                  for m in MODES[mode]}
    per_seed_avg = {m: [] for m in MODES[mode]}
    for r in group.runs:
        for m in MODES[mode]:
            vals = [r.metrics[mode][t][m] for t in r.targets if not math.isnan(r.metrics[mode][t][m])]
            per_seed_avg[m].append(float(np.mean(vals)) if vals else math.nan)
    out[AVERAGE] = {m: Cell(v, ddof) for m, v in per_seed_avg.items()}
    return out


def load_published(path: Path) -> list[dict[str, Any]]:
    """Entries of a --compare YAML; each must name its source (paper, table, row), a mode, a target and metrics."""
    try:
        entries = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"--compare {path}: cannot read ({err})") from None
    expected = ("a list of {source: {paper, table, row}, mode: paper|honest, target: <domain>|average, "
                "metrics: {hter: <percent>, ...}}")
    if not isinstance(entries, list):
        raise ValueError(f"--compare {path}: expected {expected}")
    for i, e in enumerate(entries):
        src = e.get("source") if isinstance(e, dict) else None
        if not isinstance(src, dict) or any(not str(src.get(k) or "").strip() for k in ("paper", "table", "row")):
            raise ValueError(f"--compare {path}: entry {i} does not name its source (paper, table and row are all "
                             "required; leave a number out rather than guess its source)")
        if e.get("mode") not in MODES:
            raise ValueError(f"--compare {path}: entry {i}: mode must be one of {sorted(MODES)}, got {e.get('mode')!r}")
        metrics = e.get("metrics")
        if not isinstance(metrics, dict) or not metrics or set(metrics) - set(MODES[e["mode"]]):
            raise ValueError(f"--compare {path}: entry {i}: metrics must be a non-empty subset of "
                             f"{list(MODES[e['mode']])} for mode {e['mode']}, got {metrics!r}")
        if not e.get("target"):
            raise ValueError(f"--compare {path}: entry {i}: target (a domain name or 'average') is missing")
    return entries


def _published_rows(entries: list[dict[str, Any]], mode: str) -> dict[str, dict[str, dict[str, float]]]:
    """source label -> target -> metric -> fraction."""
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for e in entries:
        if e["mode"] != mode:
            continue
        s = e["source"]
        label = f"published: {s['paper']}, Table {s['table']}, row {s['row']}"
        rows.setdefault(label, {})[str(e["target"])] = {m: float(v) / 100.0 for m, v in e["metrics"].items()}
    return rows


def _fmt(cell: Cell | float | None, digits: int, latex: bool = False) -> str:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return "–" if not latex else "--"
    if isinstance(cell, float):
        return f"{100 * cell:.{digits}f}"
    if math.isnan(cell.mean):
        return "–" if not latex else "--"
    if math.isnan(cell.std):
        return f"{100 * cell.mean:.{digits}f}"
    pm = r" $\pm$ " if latex else " ± "
    return f"{100 * cell.mean:.{digits}f}{pm}{100 * cell.std:.{digits}f}"


def _table_rows(groups: list[Group], published: list[dict[str, Any]], mode: str, ddof: int, digits: int,
                latex: bool = False) -> list[list[str]]:
    rows: list[list[str]] = []
    for g in groups:
        summary = summarize(g, mode, ddof)
        n = len(g.runs)
        for t, cells in summary.items():
            name = "Average" if t == AVERAGE else t
            rows.append([g.label, name, str(n), *(_fmt(cells[m], digits, latex) for m in MODES[mode])])
    for label, targets in _published_rows(published, mode).items():
        for t, vals in targets.items():
            rows.append([label, "Average" if t == AVERAGE else t, "",
                         *(_fmt(vals.get(m, math.nan), digits, latex) for m in MODES[mode])])
    return rows


def _caption(mode: str, groups: list[Group], ddof: int) -> str:
    seeds = sorted({len(g.runs) for g in groups})
    return (f"{CAPTIONS[mode]}. Percent; mean ± std (ddof={ddof}) over n seeds per group (n = "
            f"{', '.join(map(str, seeds))}); Average = mean over targets per seed, then over seeds.")


def render_markdown(groups: list[Group], published: list[dict[str, Any]], *, fpr: float, ddof: int = 1,
                    digits: int = 2) -> str:
    out = []
    for mode in MODES:
        head = ["group", "target", "n", *(_label(m, fpr) for m in MODES[mode])]
        out.append(f"**{mode} mode.** {_caption(mode, groups, ddof)}\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] * 3 + ["---:"] * len(MODES[mode])) + "|")
        for row in _table_rows(groups, published, mode, ddof, digits):
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        out.append("")
    out += ["**Runs** (from each run's run_info.json; '?' where a run has none).\n",
            "| group | seeds | git commit | GPU | wall time per run (s, mean) |", "|---|---|---|---|---:|"]
    for g in groups:
        out.append("| " + " | ".join([g.label, " ".join(str(r.seed) for r in g.runs), *_provenance(g)]) + " |")
    out.append("")
    return "\n".join(out)


def _provenance(group: Group) -> list[str]:
    """Commits (``-dirty`` when the tree had changes), GPU types and mean wall time of a group's runs."""
    commits, gpus, walls = set(), set(), []
    for r in group.runs:
        git = r.info.get("git") if r.info else None
        commits.add(f"{git['commit'][:10]}{'-dirty' if git.get('dirty') else ''}" if git else "?")
        device = r.info.get("device") if r.info else None
        gpus.add((device.get("gpu") or "cpu") if device else "?")
        if r.info.get("wall_s"):
            walls.append(float(r.info["wall_s"]))
    return [", ".join(sorted(commits)), ", ".join(sorted(gpus)), f"{np.mean(walls):.0f}" if walls else "?"]


_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPE.get(c, c) for c in text)


def render_latex(groups: list[Group], published: list[dict[str, Any]], *, fpr: float, ddof: int = 1,
                 digits: int = 2) -> str:
    """booktabs tables (needs ``\\usepackage{booktabs}``), one per mode; groups separated by ``\\midrule``."""
    out = ["% written by fasvlm report; needs \\usepackage{booktabs}"]
    for mode in MODES:
        cols = MODES[mode]
        caption = _tex(_caption(mode, groups, ddof)).replace("±", r"$\pm$")
        out += [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}",
                rf"\label{{tab:fasvlm-{mode}}}",
                r"\begin{tabular}{llr" + "r" * len(cols) + "}", r"\toprule",
                " & ".join(["Group", "Target", "$n$", *(_tex(_label(m, fpr)) for m in cols)]) + r" \\",
                r"\midrule"]
        previous = None
        for row in _table_rows(groups, published, mode, ddof, digits, latex=True):
            if previous is not None and row[0] != previous:
                out.append(r"\midrule")
            cells = [_tex(row[0]) if row[0] != previous else "", _tex(row[1]), row[2], *row[3:]]
            out.append(" & ".join(cells) + r" \\")
            previous = row[0]
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def write_csv(groups: list[Group], published: list[dict[str, Any]], fp: io.TextIOBase, *, ddof: int = 1) -> None:
    """Long format: group, mode, target, metric, mean, std, n, seeds, values, source (fractions, not percent)."""
    w = csv.writer(fp, lineterminator="\n")
    w.writerow(["group", "mode", "target", "metric", "mean", "std", "n", "seeds", "values", "source"])
    for g in groups:
        seeds = " ".join(str(r.seed) for r in g.runs)
        for mode in MODES:
            for t, cells in summarize(g, mode, ddof).items():
                for m, c in cells.items():
                    w.writerow([g.label, mode, t, m, _csv_num(c.mean), _csv_num(c.std), c.n, seeds,
                                " ".join(_csv_num(v) for v in c.values), "ours"])
    for mode in MODES:
        for label, targets in _published_rows(published, mode).items():
            for t, vals in targets.items():
                for m, v in vals.items():
                    w.writerow([label, mode, t, m, _csv_num(v), "", "", "", "", label.removeprefix("published: ")])


def _csv_num(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def plot(groups: list[Group], path: Path, *, ddof: int = 1) -> None:
    """Per-target HTER bars (± std over seeds) of every group, one panel per mode (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(t for g in groups for r in g.runs for t in r.targets)) + [AVERAGE]
    fig, axes = plt.subplots(1, len(MODES), figsize=(max(6.0, 1.2 * len(targets) * len(MODES) + 2), 4), squeeze=False)
    width = 0.8 / max(1, len(groups))
    for ax, mode in zip(axes[0], MODES):
        for i, g in enumerate(groups):
            s = summarize(g, mode, ddof)
            means = [100 * s[t]["hter"].mean if t in s else np.nan for t in targets]
            stds = [100 * s[t]["hter"].std if t in s else np.nan for t in targets]
            x = np.arange(len(targets)) + (i - (len(groups) - 1) / 2) * width
            ax.bar(x, means, width, yerr=np.nan_to_num(stds), capsize=3, label=g.label)
        ax.set_xticks(np.arange(len(targets)), [("Average" if t == AVERAGE else t) for t in targets], rotation=30,
                      ha="right")
        ax.set_ylabel("HTER (%)")
        ax.set_title(f"{mode} mode: HTER, mean ± std over seeds")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fasvlm report", allow_abbrev=False,
                                description="Tables (Markdown, CSV, LaTeX booktabs) and a figure from runs' "
                                "test_metrics.json; runs differing only by seed are grouped (mean ± std).")
    p.add_argument("runs", nargs="+", help="run directories or glob patterns (quote them: 'runs/sweeps/x/*')")
    p.add_argument("--out", type=Path, default=Path("reports") / "report", help="output directory")
    p.add_argument("--compare", type=Path, default=None, help="published numbers (YAML; every entry names its source)")
    p.add_argument("--fpr", type=float, default=0.01, help="FPR of the TPR@FPR column (one of the report's targets)")
    p.add_argument("--ddof", type=int, default=1, choices=(0, 1), help="std: 1 sample (default), 0 population")
    p.add_argument("--digits", type=int, default=2, help="decimals of the percent values")
    p.add_argument("--no-figure", action="store_true", help="skip report.png")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    dirs: list[Path] = []
    for pattern in args.runs:
        matches = sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).exists() else [])
        dirs += [Path(m) for m in matches if Path(m).is_dir()]
    dirs = list(dict.fromkeys(dirs))
    unfinished = [d for d in dirs if not (d / "test_metrics.json").is_file()]
    try:
        runs = [load_run(d, args.fpr) for d in dirs if d not in unfinished]
        published = load_published(args.compare) if args.compare else []
    except ValueError as err:
        print(f"fasvlm report: error: {err}", file=sys.stderr)
        return 2
    if unfinished:
        print(f"fasvlm report: {len(unfinished)} run(s) without test_metrics.json skipped (unfinished): "
              f"{', '.join(map(str, unfinished[:5]))}{' ...' if len(unfinished) > 5 else ''}", file=sys.stderr)
    if not runs:
        print(f"fasvlm report: error: no finished run (a directory with test_metrics.json and config.yaml) matches "
              f"{args.runs}", file=sys.stderr)
        return 2
    groups = group_runs(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    md = render_markdown(groups, published, fpr=args.fpr, ddof=args.ddof, digits=args.digits)
    _write_text_atomic(args.out / "report.md", md)
    buf = io.StringIO()
    write_csv(groups, published, buf, ddof=args.ddof)
    _write_text_atomic(args.out / "report.csv", buf.getvalue())
    _write_text_atomic(args.out / "report.tex",
                       render_latex(groups, published, fpr=args.fpr, ddof=args.ddof, digits=args.digits))
    if not args.no_figure:
        plot(groups, args.out / "report.png", ddof=args.ddof)
    print(md)
    print(f"{len(runs)} runs in {len(groups)} group(s); wrote {args.out}/report.{{md,csv,tex"
          f"{'' if args.no_figure else ',png'}}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
