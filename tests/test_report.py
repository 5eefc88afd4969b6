"""`fasvlm report`: grouping by config, mean ± std against a hand computation, Markdown/CSV/LaTeX/PNG, --compare."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
import yaml

from fasvlm.tools.report import main

TARGETS = ("casia_fasd", "msu_mfsd")


def _write_run(run: Path, *, lr: float, seed: int, values: dict[str, dict[str, float]]) -> None:
    """A run directory as fit + test leave it: config.yaml (resolved) and test_metrics.json (fractions)."""
    run.mkdir(parents=True)
    config = {"seed_everything": seed,
              "trainer": {"default_root_dir": str(run), "max_epochs": 3,
                          "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                                     "init_args": {"save_dir": str(run)}}},
              "model": {"class_path": "fasvlm.systems.baseline.BaselineSystem", "init_args": {"lr": lr}},
              "checkpoint": {"dirpath": str(run / "checkpoints")}, "ckpt_path": None}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    domains = {"celeba_spoof": {"role": "source", "paper": {"auc": 0.5, "hter": 0.5, "tpr_at_fpr": {"0.01": 0.0}},
                                "honest": None}}
    for t, v in values.items():
        domains[t] = {"role": "target",
                      "paper": {"auc": v["auc"], "hter": v["hter"], "eer": v["hter"], "tpr_at_fpr": {"0.01": v["tpr"]}},
                      "honest": {"hter": v["hter_h"], "apcer": v["apcer"], "bpcer": v["bpcer"], "acer": v["acer"]}}
    (run / "test_metrics.json").write_text(json.dumps({"schema": "fasvlm.fas_metrics_report/1", "domains": domains}))


def _values(seed: int, lr: float) -> dict[str, dict[str, float]]:
    out = {}
    for i, t in enumerate(TARGETS):
        base = 0.05 * (i + 1) + 0.01 * seed + (0.1 if lr > 0.001 else 0.0)
        out[t] = {"auc": 1 - base, "hter": base, "tpr": 1 - 2 * base, "hter_h": base + 0.02, "apcer": base + 0.03,
                  "bpcer": base + 0.01, "acer": base + 0.02}
    return out


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for lr in (0.001, 0.002):
        for seed in (0, 1, 4):
            _write_run(root / f"lr={lr}-seed{seed}", lr=lr, seed=seed, values=_values(seed, lr))
    for seed, dirty in ((0, False), (1, True)):  # run_info.json of two runs (the third has none)
        (root / f"lr=0.001-seed{seed}" / "run_info.json").write_text(json.dumps(
            {"seed": seed, "git": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": dirty},
             "device": {"gpu": "NVIDIA H100 80GB HBM3"}, "wall_s": 100.0 + seed}))
    (root / "lr=0.003-seed0").mkdir()  # unfinished: no test_metrics.json
    return root


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_mean_std_equal_a_hand_computation(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([str(runs / "*"), "--out", str(out)]) == 0
    for name in ("report.md", "report.csv", "report.tex", "report.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 run(s) without test_metrics.json skipped" in capsys.readouterr().err

    rows = _csv_rows(out / "report.csv")
    groups = {r["group"] for r in rows}
    assert groups == {"lr=0.001", "lr=0.002"}  # grouped by the one config key that differs; seeds collapsed
    seeds = (0, 1, 4)
    for lr in (0.001, 0.002):
        vals = {s: _values(s, lr) for s in seeds}
        for t in TARGETS:
            for metric, key, mode in (("hter", "hter", "paper"), ("auc", "auc", "paper"), ("tpr", "tpr", "paper"),
                                      ("acer", "acer", "honest"), ("hter", "hter_h", "honest")):
                hand = [vals[s][t][key] for s in seeds]
                row = next(r for r in rows if r["group"] == f"lr={lr}" and r["mode"] == mode and r["target"] == t
                           and r["metric"] == metric)
                assert float(row["mean"]) == pytest.approx(statistics.mean(hand), abs=1e-12)
                assert float(row["std"]) == pytest.approx(statistics.stdev(hand), abs=1e-12)
                assert row["n"] == "3" and row["seeds"] == "0 1 4"
        # Average: mean over targets per seed, then mean ± std over seeds
        per_seed = [statistics.mean(vals[s][t]["hter"] for t in TARGETS) for s in seeds]
        row = next(r for r in rows if r["group"] == f"lr={lr}" and r["mode"] == "paper" and r["target"] == "average"
                   and r["metric"] == "hter")
        assert float(row["mean"]) == pytest.approx(statistics.mean(per_seed), abs=1e-12)
        assert float(row["std"]) == pytest.approx(statistics.stdev(per_seed), abs=1e-12)
    # the source domain is not a target: not in the tables
    assert not any(r["target"] == "celeba_spoof" for r in rows)

    md = (out / "report.md").read_text()
    assert "Paper-compatible mode" in md and "Honest mode" in md
    hand = [_values(s, 0.001)["casia_fasd"]["hter"] for s in seeds]
    cell = f"{100 * statistics.mean(hand):.2f} ± {100 * statistics.stdev(hand):.2f}"
    assert f"| lr=0.001 | casia_fasd | 3 | {100 * statistics.mean([1 - h for h in hand]):.2f}" in md
    assert cell in md
    assert "| lr=0.001 | 0 1 4 | 0123456789, 0123456789-dirty, ? | ?, NVIDIA H100 80GB HBM3 | 100 |" in md
    assert "| lr=0.002 | 0 1 4 | ? | ? | ? |" in md
    tex = (out / "report.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and "Honest mode" in tex
    assert r"casia\_fasd" in tex and r"$\pm$" in tex


def test_population_std_option(runs, tmp_path):
    out = tmp_path / "r0"
    assert main([str(runs / "lr=0.001-*"), "--out", str(out), "--ddof", "0", "--no-figure"]) == 0
    row = next(r for r in _csv_rows(out / "report.csv") if r["mode"] == "paper" and r["target"] == "casia_fasd"
               and r["metric"] == "hter")
    hand = [_values(s, 0.001)["casia_fasd"]["hter"] for s in (0, 1, 4)]
    assert float(row["std"]) == pytest.approx(statistics.pstdev(hand), abs=1e-12)
    assert not (out / "report.png").exists()


def test_compare_rows_name_their_source(runs, tmp_path):
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump([
        {"source": {"paper": "Example (2025)", "table": "3", "row": "Ours"}, "mode": "paper", "target": "casia_fasd",
         "metrics": {"hter": 1.25, "auc": 99.5}},
    ]))
    out = tmp_path / "cmp"
    assert main([str(runs / "*"), "--out", str(out), "--compare", str(published), "--no-figure"]) == 0
    md = (out / "report.md").read_text()
    assert "| published: Example (2025), Table 3, row Ours | casia_fasd |  | 99.50 | 1.25 | – |" in md
    row = next(r for r in _csv_rows(out / "report.csv") if r["group"].startswith("published") and r["metric"] == "hter")
    assert float(row["mean"]) == pytest.approx(0.0125) and row["source"] == "Example (2025), Table 3, row Ours"


def test_compare_refuses_an_entry_without_its_source(runs, tmp_path, capsys):
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump([{"source": {"paper": "Example (2025)", "table": "3"}, "mode": "paper",
                                          "target": "average", "metrics": {"hter": 1.0}}]))
    assert main([str(runs / "*"), "--out", str(tmp_path / "x"), "--compare", str(published)]) == 2
    assert "does not name its source" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_no_finished_run_is_an_error(tmp_path, capsys):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    assert main([str(tmp_path / "runs" / "*"), "--out", str(tmp_path / "out")]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_latex_compiles(runs, tmp_path):
    """The booktabs output compiles with pdflatex (Debian texlive-latex-base + booktabs; CI installs them)."""
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but pdflatex is missing: .ci/run installs texlive-latex-base")
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-base)")
    out = tmp_path / "tex"
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump([{"source": {"paper": "A & B_1 (100%)", "table": "2", "row": "x#y"},
                                          "mode": "honest", "target": "average", "metrics": {"acer": 3.0}}]))
    assert main([str(runs / "*"), "--out", str(out), "--no-figure", "--compare", str(published)]) == 0
    doc = out / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[utf8]{inputenc}\n"
                   "\\begin{document}\n\\input{report.tex}\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=out,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (out / "doc.pdf").stat().st_size > 0
