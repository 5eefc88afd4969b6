"""conf/ablation: every fragment composes with its method's config through the real CLI, and trains one epoch at tiny
size (one batch per epoch: the test is about the switch reaching the model and the step running, not about accuracy)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from fasvlm.cli import main

FRAGMENTS = sorted(p.relative_to(REPO) for p in (REPO / "conf" / "ablation").rglob("*.yaml"))
TINY = {"ifas": "conf/ifas/tiny.yaml", "instructflip": "conf/instructflip/tiny.yaml"}


def _method(fragment: Path) -> str:
    return fragment.parts[2]  # conf/ablation/<method>/<file>.yaml


def test_every_method_has_ablations():
    assert {_method(f) for f in FRAGMENTS} == set(TINY)
    for f in FRAGMENTS:
        text = (REPO / f).read_text()
        assert text.startswith("# fasvlm fit --config"), f"{f}: the header starts with the command that runs it"
        assert "Source:" in text, f"{f}: the header names its paper source"


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=str)
def test_fragment_prints_through_the_cli(fragment, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", TINY[_method(fragment)], "--config", str(fragment), "--print_config"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    printed = yaml.safe_load(out[out.index("seed_everything:"):])
    wanted = yaml.safe_load((REPO / fragment).read_text())
    assert printed["model"]["class_path"] == wanted["model"]["class_path"]
    for key, value in wanted["model"]["init_args"].items():
        got = printed["model"]["init_args"][key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value, key
    for key, value in (wanted.get("trainer") or {}).items():
        assert printed["trainer"][key] == value


# `make test` trains the fragments that switch modules on or off (each a different code path); the ones that change a
# size or a loss weight (the same code path with other numbers) train in the `slow` set (make test-all)
_STRUCTURAL = {"no_scf", "no_gac", "standard_lm", "vision_only", "content_only", "content_style"}
TRAIN = [f if f.stem in _STRUCTURAL else pytest.param(f, marks=pytest.mark.slow) for f in FRAGMENTS]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synthetic_root) -> Path:
    work = tmp_path_factory.mktemp("ablation")
    (work / "data").mkdir()
    (work / "data" / "synthetic").symlink_to(synthetic_root)
    return work


@pytest.mark.parametrize("fragment", TRAIN, ids=str)
def test_tiny_variant_trains_one_epoch(fragment, workdir, tiny_clip_dir, monkeypatch):
    import torch

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = workdir / "runs" / fragment.stem
    method = _method(fragment)
    extra = ["--model.init_args.vision", str(tiny_clip_dir)] if method == "ifas" else []
    if fragment.stem.startswith("t5_"):
        extra += ["--model.init_args.t5", "tiny"]  # the size itself needs real weights; tiny exercises the rest
    main(["fit", "--config", str(REPO / TINY[method]), "--config", str(REPO / fragment), *extra,
          "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
          "--trainer.num_sanity_val_steps", "0",
          # max_steps too: after a fragment with a trainer section, jsonargparse reads limit_train_batches "1" as 1.0
          # (all batches); max_steps is an int
          "--trainer.max_steps", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4",
          "--trainer.default_root_dir", str(run)])
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 1
    wanted = yaml.safe_load((REPO / fragment).read_text())["model"]["init_args"]
    for key, value in wanted.items():
        if key == "t5":
            continue
        got = ckpt["hyper_parameters"][key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value, key
