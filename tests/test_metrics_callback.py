"""FASMetricsCallback + FASFiguresCallback through a real Trainer (fit, validate, test) on CPU."""

from __future__ import annotations

import glob
import json
import math
import os

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset

from fasvlm.callbacks import FASFiguresCallback, FASMetricsCallback
from fasvlm.metrics import UndefinedFASMetricWarning, eer_threshold, fas_metrics

GRID = 1000  # a coarser grid keeps the test quick; the maths is the same


class _Frames(Dataset):
    """Frames of ``n_videos`` videos, 2 frames each, frame 0 of every video first: videos straddle batches."""

    def __init__(self, domain: str, n_videos: int, seed: int, shift: float) -> None:
        g = torch.Generator().manual_seed(seed)
        label = (torch.rand(n_videos, generator=g) < 0.5).long()
        label[0], label[1] = 0, 1
        kinds = ["print", "replay", "mask"]
        self.items = []
        for frame in range(2):
            for v in range(n_videos):
                lab = int(label[v])
                self.items.append(
                    {
                        "pixel_values": torch.randn(3, 12, 12, generator=g),
                        "feat": float((2 * lab - 1) * 1.0 + shift + torch.randn((), generator=g) * 1.2),
                        "labels": lab,
                        "video": f"{domain}/v{v}",
                        "domain": domain,
                        "attack": kinds[v % 3] if lab else "live",
                        "sample_id": f"{domain}/v{v}/f{frame}",
                    }
                )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class _DataModule(pl.LightningDataModule):
    def __init__(self, with_names: bool = True) -> None:
        super().__init__()
        self.sets = {
            "src": _Frames("src", 24, 0, 0.0),
            "tgtA": _Frames("tgtA", 20, 1, 0.4),
            "tgtB": _Frames("tgtB", 16, 2, -0.6),
        }
        self.train = _Frames("src", 24, 3, 0.0)
        if with_names:
            self.source_name = "src"
            self.val_names = ["src", "tgtA", "tgtB"]
            self.test_names = ["src", "tgtA", "tgtB"]

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=16, shuffle=True)

    def val_dataloader(self):
        return [DataLoader(self.sets[n], batch_size=16) for n in ("src", "tgtA", "tgtB")]

    def test_dataloader(self):
        return self.val_dataloader()


class _System(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))
        self.b = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.w * feat + self.b)  # P(attack)

    def training_step(self, batch, batch_idx):
        p = self(batch["feat"].float())
        return torch.nn.functional.binary_cross_entropy(p, batch["labels"].float())

    def _eval_step(self, batch):
        return {"scores": self(batch["feat"].float()), "labels": batch["labels"].long()}

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return self._eval_step(batch)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        return self._eval_step(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _expected(model: _System, ds: _Frames):
    with torch.no_grad():
        s = model(torch.tensor([it["feat"] for it in ds.items]).float()).double().numpy()
    y = np.array([it["labels"] for it in ds.items])
    v = np.array([it["video"] for it in ds.items])
    a = np.array([it["attack"] for it in ds.items])
    return s, y, v, a


def _close(a, b):
    if isinstance(a, dict):
        assert set(map(str, a)) == set(map(str, b)), (a, b)
        bb = {str(k): val for k, val in b.items()}
        for k, val in a.items():
            _close(val, bb[str(k)])
    elif a is None or b is None:
        assert (a is None or math.isnan(a)) and (b is None or math.isnan(b)), (a, b)
    elif isinstance(a, str):
        assert a == b
    else:
        assert abs(float(a) - float(b)) <= 1e-6, (a, b)


def _trainer(tmp_path, callbacks, logger=True, **kw) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path,
        logger=TensorBoardLogger(str(tmp_path), name="tb") if logger else False,
        callbacks=callbacks,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **kw,
    )


def test_fit_then_test_writes_reports_scalars_and_figures(tmp_path):
    torch.manual_seed(0)
    metrics_cb = FASMetricsCallback(grid_density=GRID, fpr_targets=(0.01, 0.1))
    figures_cb = FASFiguresCallback(n_worst=4, thumb_size=32, grid_density=GRID)
    ckpt = ModelCheckpoint(monitor=metrics_cb.monitor, mode="min")
    # figures first: no dependence on callback order
    trainer = _trainer(tmp_path, [figures_cb, ckpt, metrics_cb], max_epochs=2, num_sanity_val_steps=2)
    dm, model = _DataModule(), _System()
    trainer.fit(model, datamodule=dm)
    val_report = json.loads((tmp_path / "tb" / "version_0" / "val_metrics.json").read_text())
    assert val_report["split"] == "val" and val_report["epoch"] == 1
    assert ckpt.best_model_path and metrics_cb.val_threshold is not None

    trainer.test(model, datamodule=dm, ckpt_path="best")
    log_dir = trainer.log_dir
    report = json.loads(open(os.path.join(log_dir, "test_metrics.json")).read())

    # --- the report: both modes, every domain, counts, the threshold from this run's source loader
    assert report["schema"] == "fasvlm.fas_metrics_report/1" and report["split"] == "test"
    assert report["source"] == "src" and report["targets"] == ["tgtA", "tgtB"]
    assert report["selection"] == {
        "select_on_targets": False,
        "monitor": "val/source/hter",
        "selected_on_test_data": False,
        "checkpoint_monitor": "val/source/hter",
        "best_model_path": ckpt.best_model_path,
        "best_model_score": pytest.approx(float(ckpt.best_model_score)),
    }
    src = _expected(model, dm.sets["src"])
    thr = eer_threshold(src[0], src[1], src[2], grid_density=GRID)
    assert report["threshold"]["rule"] == "eer" and report["threshold"]["value"] == thr
    assert "src" in report["threshold"]["chosen_on"]
    for name, ds in dm.sets.items():
        s, y, v, a = _expected(model, ds)
        dom = report["domains"][name]
        assert dom["role"] == ("source" if name == "src" else "target")
        assert dom["counts"] == {
            "n_frames": len(ds),
            "n_videos": len(ds) // 2,
            "n_live": int((y == 0).sum()) // 2,
            "n_attack": int((y == 1).sum()) // 2,
            "video_level": True,
            "n_duplicates_dropped": 0,
        }
        paper = fas_metrics(s, y, v, attack_types=a, fpr_targets=(0.01, 0.1), grid_density=GRID)
        honest = fas_metrics(
            s, y, v, mode="honest", threshold=thr, attack_types=a, fpr_targets=(0.01, 0.1), grid_density=GRID
        )
        _close(dom["paper"], paper)
        _close(dom["honest"], honest)
        assert dom["paper"]["hter"] == dom["paper"]["eer"] and set(dom["honest"]["apcer_per_attack"]) <= {
            "print",
            "replay",
            "mask",
        }
    mean_hter = np.mean([report["domains"][n]["honest"]["hter"] for n in ("tgtA", "tgtB")])
    assert report["mean_over_targets"]["honest"]["hter"] == pytest.approx(mean_hter)

    # --- TensorBoard: scalars and figures
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(log_dir, size_guidance={"images": 0, "scalars": 0, "tensors": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    for key in (
        "val/source/hter",
        "val/source/auc",
        "val/tgtA/hter",
        "val/tgtB/tpr_at_fpr_0.01",
        "val/mean/hter",
        "val/mean/hter_honest",
        "val/threshold_honest",
        "test/source/eer",
        "test/tgtA/apcer_honest",
        "test/tgtB/acer_honest",
        "test/mean/auc",
        "test/threshold_honest",
    ):
        assert key in tags["scalars"], key
    assert "val/mean_targets/hter" not in tags["scalars"]
    assert acc.Scalars("test/tgtA/hter")[-1].value == pytest.approx(report["domains"]["tgtA"]["paper"]["hter"])
    assert len(acc.Scalars("val/source/hter")) == 2  # two epochs, no sanity-check entry
    for split in ("val", "test"):
        for name in ("src", "tgtA", "tgtB"):
            for fig in ("roc", "score_hist", "worst"):
                assert f"{split}/{name}/{fig}" in tags["images"], (split, name, fig)
            assert f"{split}/{name}/scores_live" in tags["histograms"]
    for key in ("test/tgtA/bpcer20", "test/tgtA/bpcer100", "test/tgtA/apcer_at_bpcer10", "test/mean/bpcer20"):
        assert key in tags["scalars"], key
    assert acc.Scalars("test/mean/hter_covers")[-1].value == 2
    assert report["mean_over_targets"]["paper"]["covers"]["hter"] == 2
    for split in ("val", "test"):
        for name in ("src", "tgtA", "tgtB"):
            assert f"{split}/{name}/det" in tags["images"]
            assert os.path.getsize(os.path.join(log_dir, "det", f"{split}_{name}.png")) > 1000
    image = acc.Images("test/tgtA/roc")[-1]
    assert image.width > 100 and image.height > 100 and len(image.encoded_image_string) > 1000
    assert any(t.startswith("test/tgtA/apcer_per_attack") for t in tags["tensors"])


def test_validate_without_logger_or_names_and_select_on_targets(tmp_path):
    metrics_cb = FASMetricsCallback(grid_density=GRID, select_on_targets=True, threshold_rule="bpcer", bpcer_target=0.1)
    figures_cb = FASFiguresCallback(grid_density=GRID)  # no TensorBoard logger: must do nothing
    trainer = _trainer(tmp_path, [metrics_cb, figures_cb], logger=False)
    dm = _DataModule(with_names=False)
    model = _System()
    trainer.validate(model, dataloaders=dm.val_dataloader())
    report = json.loads((tmp_path / "val_metrics.json").read_text())
    assert report["source"] == "dl0" and report["targets"] == ["dl1", "dl2"]
    assert report["selection"]["select_on_targets"] and report["selection"]["selected_on_test_data"]
    assert report["selection"]["monitor"] == "val/mean_targets/hter"
    s, y, v, _ = _expected(model, dm.sets["src"])
    from fasvlm.metrics import bpcer_threshold

    assert report["threshold"]["value"] == bpcer_threshold(s, y, 0.1, v, grid_density=GRID)
    assert report["threshold"]["bpcer_target"] == 0.1
    logged = trainer.callback_metrics
    assert "val/mean_targets/hter" in logged and "val/dl1/hter" in logged and "val/source/hter" in logged
    assert float(logged["val/mean_targets/hter"]) == pytest.approx(
        np.mean([report["domains"][n]["paper"]["hter"] for n in ("dl1", "dl2")])
    )
    assert metrics_cb.val_threshold == report["threshold"]["value"]
    assert not glob.glob(str(tmp_path / "**" / "events.out.tfevents*"), recursive=True)

    # a test run without the source loader: the honest threshold comes from the last validation
    class _TargetsOnly(_DataModule):
        def test_dataloader(self):
            return super().test_dataloader()[1:]

    dm_targets = _TargetsOnly()
    dm_targets.test_names = ["tgtA", "tgtB"]
    trainer.test(model, datamodule=dm_targets)
    test_report = json.loads((tmp_path / "test_metrics.json").read_text())
    assert test_report["threshold"]["value"] == metrics_cb.val_threshold
    assert "validation" in test_report["threshold"]["chosen_on"]


def test_step_output_contract_is_checked(tmp_path):
    class _Bad(_System):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            return self(batch["feat"].float())

    trainer = _trainer(tmp_path, [FASMetricsCallback()], logger=False)
    with pytest.raises(KeyError, match="'scores'"):
        trainer.validate(_Bad(), dataloaders=_DataModule(with_names=False).val_dataloader()[0])


def test_one_class_target_is_null_and_left_out_of_the_means(tmp_path):
    """A live-only target: its HTER/EER/AUC are null in the report and the means cover the other target only."""
    dm = _DataModule()
    live_only = dm.sets["tgtB"]
    live_only.items = [it for it in live_only.items if it["labels"] == 0]
    metrics_cb = FASMetricsCallback(grid_density=GRID)
    trainer = _trainer(tmp_path, [metrics_cb], logger=False)
    with pytest.warns(UndefinedFASMetricWarning):
        trainer.validate(_System(), datamodule=dm)
    report = json.loads((tmp_path / "val_metrics.json").read_text())
    dom_b = report["domains"]["tgtB"]["paper"]
    assert dom_b["hter"] is None and dom_b["eer"] is None and dom_b["auc"] is None
    assert dom_b["bpcer_at_apcer"]["0.05"] is None and dom_b["bpcer"] is not None
    mean = report["mean_over_targets"]["paper"]
    assert mean["hter"] == pytest.approx(report["domains"]["tgtA"]["paper"]["hter"])  # not (hter_A + 1.0) / 2
    assert mean["covers"]["hter"] == 1 and mean["covers"]["auc"] == 1 and mean["n_targets"] == 2
    assert mean["covers"]["bpcer"] == 2  # BPCER of a live-only domain is defined
