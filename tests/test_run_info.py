"""RunInfoCallback: run_info.json with git, packages, seed, manifest hashes, device and wall time per fit launch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import lightning.pytorch as pl
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

from fasvlm.callbacks import RunInfoCallback


@dataclass
class _Spec:
    name: str
    manifest: str | None = None
    root: str | None = None
    split: str = "train"


class _DataModule(BoringDataModule):
    def __init__(self, sources, targets):
        super().__init__()
        self.sources, self.targets, self.val_sources = sources, targets, None


def _fit(tmp_path, dm, max_steps):
    trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=max_steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, callbacks=[RunInfoCallback()])
    trainer.fit(BoringModel(), datamodule=dm)


def test_run_info_records_what_a_table_needs(tmp_path):
    manifest = tmp_path / "manifest.parquet"
    manifest.write_bytes(b"not really parquet, but hashed all the same")
    dm = _DataModule([_Spec("src", manifest=str(manifest))], [_Spec("tgt", root="data/raw/tgt", split="test")])
    pl.seed_everything(7)
    _fit(tmp_path, dm, 2)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["schema"] == "fasvlm.run_info/1" and info["seed"] == 7
    assert info["packages"]["torch"] and info["packages"]["lightning"]
    git = info["git"]
    assert git is None or (len(git["commit"]) == 40 and isinstance(git["dirty"], bool))
    assert info["data"] == [
        {"role": "source", "name": "src", "manifest": str(manifest),
         "sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(), "root": None, "split": "train"},
        {"role": "target", "name": "tgt", "manifest": None, "sha256": None, "root": "data/raw/tgt", "split": "test"},
    ]
    assert info["device"]["gpu"] is None and info["device"]["accelerator"] == "CPUAccelerator"
    (session,) = info["sessions"]
    assert session["global_step_start"] == 0 and session["global_step_end"] == 2 and session["wall_s"] > 0
    assert info["wall_s"] == session["wall_s"]

    # a second launch into the same run (resume, requeue) appends a session; wall time is their sum
    _fit(tmp_path, dm, 3)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert len(info["sessions"]) == 2
    assert info["wall_s"] == round(sum(s["wall_s"] for s in info["sessions"]), 3)
