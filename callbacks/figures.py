"""TensorBoard figures of each evaluation domain: ROC curve, score histograms, APCER per attack type, worst samples.

Independent of :class:`~fasvlm.callbacks.FASMetricsCallback`: it keeps its own synced
:class:`~fasvlm.metrics.FASMetrics` per dataloader and recomputes what it draws. Figures are drawn with PIL/numpy, the DET
curve with matplotlib (Agg canvas, no pyplot state), and written with the TensorBoard ``SummaryWriter`` of the first
``TensorBoardLogger``; without one the callback does nothing. Per ``<split>/<domain>/`` (``split`` = val or test,
``domain`` = the dataloader's name):

* ``roc`` (image): video-level ROC with AUC and the TPR at the first FPR target;
* ``det`` (image): the ISO/IEC 30107-3 DET curve (APCER against BPCER on normal-deviate axes, drawn with
  matplotlib), APCER over all attacks and APCER_AP (worst species) with BPCER10/20/100 marked; also written as
  ``det/<split>_<domain>.png`` in the run's log directory (``det_png=True``) for the report;
* ``score_hist`` (image): live vs attack score histograms with the domain's own EER threshold (paper mode, blue) and
  the honest threshold chosen on the source loader (orange); also ``scores_live``/``scores_attack`` histograms and a
  ``pr_curve``;
* ``apcer_per_attack`` (text): APCER per attack type and BPCER at the honest threshold;
* ``worst`` (image): the ``n_worst`` frames (over all ranks) whose score is furthest on the wrong side, captioned.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageDraw, ImageFont

from fasvlm.callbacks.metrics import loader_names
from fasvlm.metrics import (
    GRID_DENSITY,
    FASData,
    FASMetrics,
    det_curve_points,
    fas_metrics,
    honest_threshold,
    roc_curve_points,
    video_level,
)

__all__ = ["FASFiguresCallback"]

Stage = Literal["val", "test"]
_SID_BYTES = 64
_LIVE, _ATTACK = (46, 160, 67), (214, 39, 40)
_EER_COLOUR, _HONEST_COLOUR = (31, 119, 180), (255, 127, 14)


# ----------------------------------------------------------------------------------------------------------------------
# Rendering (PIL): every function returns an (H, W, 3) uint8 array
# ----------------------------------------------------------------------------------------------------------------------


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


class _Axes:
    """A plot area mapping data [x0, x1] x [y0, y1] onto a PIL image, with a frame and tick labels."""

    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], xlim, ylim) -> None:
        self.draw, self.box, self.xlim, self.ylim = draw, box, xlim, ylim

    def px(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        fx = (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        fy = (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return left + fx * (right - left), bottom - fy * (bottom - top)

    def frame(self, xticks: Sequence[float], yticks: Sequence[float], xlabel: str, ylabel: str) -> None:
        left, top, right, bottom = self.box
        d, font = self.draw, _font()
        d.rectangle(self.box, outline=(0, 0, 0))
        for x in xticks:
            px, _ = self.px(x, self.ylim[0])
            d.line([(px, bottom), (px, bottom + 4)], fill=(0, 0, 0))
            d.text((px - 8, bottom + 6), f"{x:g}", fill=(0, 0, 0), font=font)
        for y in yticks:
            _, py = self.px(self.xlim[0], y)
            d.line([(left - 4, py), (left, py)], fill=(0, 0, 0))
            d.text((4, py - 6), f"{y:g}", fill=(0, 0, 0), font=font)
        d.text(((left + right) // 2 - 3 * len(xlabel), bottom + 20), xlabel, fill=(0, 0, 0), font=font)
        d.text((4, top - 16), ylabel, fill=(0, 0, 0), font=font)


def render_roc(
    fpr: np.ndarray, tpr: np.ndarray, title: str, fpr_target: float | None = None, size: int = 360
) -> np.ndarray:
    """ROC curve (FPR on x, TPR on y) with the chance diagonal and the FPR target marked."""
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    ax = _Axes(d, (44, 36, size - 14, size - 40), (0.0, 1.0), (0.0, 1.0))
    for i in range(20):  # dashed diagonal
        a, b = i / 20, (i + 0.5) / 20
        d.line([ax.px(a, a), ax.px(b, b)], fill=(150, 150, 150))
    if fpr_target is not None and 0.0 < fpr_target < 1.0:
        d.line([ax.px(fpr_target, 0.0), ax.px(fpr_target, 1.0)], fill=(200, 200, 200))
    d.line([ax.px(float(x), float(y)) for x, y in zip(fpr, tpr)], fill=_EER_COLOUR, width=2)
    ax.frame((0, 0.5, 1), (0, 0.5, 1), "FPR", "TPR")
    d.text((44, 6), title, fill=(0, 0, 0), font=_font())
    return np.asarray(img)


def render_histogram(
    live: np.ndarray,
    attack: np.ndarray,
    thresholds: Mapping[str, tuple[float, tuple]],
    title: str,
    xlabel: str,
    bins: int = 20,
    width: int = 480,
    height: int = 300,
) -> np.ndarray:
    """Histograms (fraction of each class per bin) of live and attack scores in [0, 1], threshold lines on top."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    h_live = np.histogram(np.clip(live, 0, 1), edges)[0] / max(live.size, 1)
    h_att = np.histogram(np.clip(attack, 0, 1), edges)[0] / max(attack.size, 1)
    top = max(float(h_live.max(initial=0)), float(h_att.max(initial=0)), 1e-6)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    ax = _Axes(d, (44, 50, width - 14, height - 40), (0.0, 1.0), (0.0, top * 1.1))
    w = 1.0 / bins
    for i in range(bins):  # live on the left half of each bin, attack on the right
        for j, (h, colour) in enumerate(((h_live[i], _LIVE), (h_att[i], _ATTACK))):
            if h > 0:
                x0, y0 = ax.px(edges[i] + j * w / 2, float(h))
                x1, y1 = ax.px(edges[i] + (j + 1) * w / 2, 0.0)
                d.rectangle((x0, y0, x1 - 1, y1), fill=colour)
    legend_x = 50
    for label, (value, colour) in thresholds.items():
        if value is None or not math.isfinite(value):
            continue
        x = min(max(value, 0.0), 1.0)
        d.line([ax.px(x, 0.0), ax.px(x, top * 1.1)], fill=colour, width=2)
        text = f"{label} = {value:.4f}"
        d.text((legend_x, 22), text, fill=colour, font=_font())
        legend_x += 7 * len(text) + 20
    ax.frame((0, 0.25, 0.5, 0.75, 1), (0, round(top, 2)), xlabel, "fraction")
    d.text((44, 6), f"{title}   live n={live.size} (green)  attack n={attack.size} (red)", fill=(0, 0, 0), font=_font())
    return np.asarray(img)


_DET_TICKS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.4)


def render_det(det: Mapping[str, np.ndarray], title: str, marks: Mapping[float, float] | None = None,
               size_in: float = 4.0, dpi: int = 100) -> np.ndarray:
    """DET curve (ISO/IEC 30107-3): APCER (x) against BPCER (y) on normal-deviate (probit) axes, as (H, W, 3) uint8.

    ``det`` is :func:`fasvlm.metrics.det_curve_points`'s output; ``marks`` {APCER level: BPCER} are drawn as points
    (BPCER10/20/100). Rates of 0 or 1 are clipped to [1e-4, 1 - 1e-4] for the probit scale, which has no 0 or 1.
    """
    from statistics import NormalDist

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    probit = np.vectorize(NormalDist().inv_cdf)

    def z(x):
        return probit(np.clip(np.asarray(x, dtype=np.float64), 1e-4, 1 - 1e-4))

    fig = Figure(figsize=(size_in, size_in), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(z(det["apcer"]), z(det["bpcer"]), color="#1f77b4", lw=1.5, label="APCER (all attacks)")
    if not np.array_equal(det["apcer"], det["apcer_ap"]):
        ax.plot(z(det["apcer_ap"]), z(det["bpcer"]), color="#d62728", lw=1.2, ls="--", label="APCER_AP (worst)")
    for level, bpcer in (marks or {}).items():
        if math.isfinite(bpcer):
            ax.plot(z(level), z(bpcer), "o", color="#ff7f0e", ms=4)
            ax.annotate(f"BPCER{round(1 / level)}={bpcer:.3f}", (float(z(level)), float(z(bpcer))), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ticks = z(_DET_TICKS)
    ax.set_xticks(ticks, [f"{100 * t:g}" for t in _DET_TICKS])
    ax.set_yticks(ticks, [f"{100 * t:g}" for t in _DET_TICKS])
    lim = (float(z(5e-4)), float(z(0.6)))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("APCER (%)")
    ax.set_ylabel("BPCER (%)")
    ax.grid(True, lw=0.4, alpha=0.6)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _write_png_atomic(path: str, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image through a temporary file and ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".det.", suffix=".png", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(image).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def render_grid(images: np.ndarray, captions: Sequence[str], cols: int = 4) -> np.ndarray:
    """(N, 3, S, S) uint8 images in a captioned grid."""
    n, _, s, _ = images.shape
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    cap_h, cell_w = 28, max(s, 110) + 6
    img = Image.new("RGB", (cols * cell_w, rows * (s + cap_h + 6)), "white")
    d = ImageDraw.Draw(img)
    for i in range(n):
        r, c = divmod(i, cols)
        x, y = c * cell_w + 3, r * (s + cap_h + 6) + 3
        img.paste(Image.fromarray(images[i].transpose(1, 2, 0)), (x, y))
        for k, line in enumerate(captions[i].split("\n")[:2]):
            d.text((x, y + s + 2 + 12 * k), line[-((cell_w - 6) // 6) :], fill=(0, 0, 0), font=_font())
    return np.asarray(img)


def _thumbnails(pixel_values: torch.Tensor, size: int) -> torch.Tensor:
    """(k, 3, H, W) normalised images -> (k, 3, size, size) uint8, min-max per image (approximate un-normalising)."""
    x = pixel_values.detach().float()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = x[:, :3]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-8)
    return (x * 255).round().clamp(0, 255).to(torch.uint8).cpu()


def _encode(names: Sequence[str], k: int) -> torch.Tensor:
    out = torch.zeros(k, _SID_BYTES, dtype=torch.uint8)
    for i, name in enumerate(names[:k]):
        raw = str(name).encode("utf-8")[:_SID_BYTES]
        out[i, : len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    return out


def _decode(row: torch.Tensor) -> str:
    return bytes(row.tolist()).rstrip(b"\x00").decode("utf-8", errors="replace")


class _Worst:
    """The k frames scored furthest on the wrong side, as fixed-size CPU tensors (so that ranks can all_gather)."""

    def __init__(self, k: int, size: int) -> None:
        self.k, self.size = k, size
        self.err = torch.full((k,), -1.0)  # -1 = empty slot
        self.score = torch.zeros(k)
        self.label = torch.zeros(k, dtype=torch.long)
        self.images = torch.zeros(k, 3, size, size, dtype=torch.uint8)
        self.sid = torch.zeros(k, _SID_BYTES, dtype=torch.uint8)

    def update(
        self, scores: torch.Tensor, labels: torch.Tensor, pixel_values: torch.Tensor, sample_ids: Sequence[str] | None
    ) -> None:
        s = scores.detach().float().reshape(-1).cpu()
        y = labels.detach().long().reshape(-1).cpu()
        err = torch.where(y == 1, 1.0 - s, s)  # distance to the wrong side, in P(attack)
        top = torch.topk(err, min(self.k, err.numel())).indices
        ids = [str(sample_ids[i]) if sample_ids is not None else f"#{int(i)}" for i in top.tolist()]
        self._merge(
            err[top],
            s[top],
            y[top],
            _thumbnails(pixel_values[top.to(pixel_values.device)], self.size),
            _encode(ids, top.numel()),
        )

    def _merge(self, err, score, label, images, sid) -> None:
        err = torch.cat([self.err, err])
        keep = torch.topk(err, self.k).indices
        self.err = err[keep]
        self.score = torch.cat([self.score, score])[keep]
        self.label = torch.cat([self.label, label])[keep]
        self.images = torch.cat([self.images, images])[keep]
        self.sid = torch.cat([self.sid, sid])[keep]

    def gathered(self, pl_module: pl.LightningModule) -> _Worst:
        """The worst k over all ranks (collective: every rank must call it)."""
        world = pl_module.trainer.world_size
        if world == 1:
            return self
        dev = pl_module.device
        parts = pl_module.all_gather(
            {
                "err": self.err.to(dev),
                "score": self.score.to(dev),
                "label": self.label.to(dev),
                "images": self.images.to(dev),
                "sid": self.sid.to(dev),
            }
        )
        out = _Worst(self.k, self.size)
        out._merge(
            *(parts[k].reshape(-1, *parts[k].shape[2:]).cpu() for k in ("err", "score", "label", "images", "sid"))
        )
        return out


# ----------------------------------------------------------------------------------------------------------------------
# Callback
# ----------------------------------------------------------------------------------------------------------------------


class FASFiguresCallback(Callback):
    """ROC, score histograms, APCER-per-attack table and worst samples per domain in TensorBoard (module docstring).

    Args:
        n_worst: frames shown per domain in ``worst`` (0: none).
        thumb_size: side of each worst-sample thumbnail (pixels).
        on_validation: draw at the end of each validation (not during the sanity check).
        on_test: draw at the end of each test.
        threshold_rule / bpcer_target: the honest threshold, chosen on the source loader of the same run (as
            :class:`FASMetricsCallback` does).
        positive: "attack" or "live" (FLIP convention); the ROC and histograms use that convention's scores.
        fpr_target: FPR operating point marked on the ROC.
        hist_bins: histogram bins over [0, 1].
        grid_density: threshold grid step 1 / grid_density.
        det_png: also write each DET curve to ``<log_dir>/det/<split>_<domain>.png``.
        video_mean: per-video mean arithmetic, as in :class:`FASMetricsCallback` (None: each mode's default).
    """

    def __init__(
        self,
        n_worst: int = 8,
        thumb_size: int = 96,
        on_validation: bool = True,
        on_test: bool = True,
        threshold_rule: Literal["eer", "bpcer"] = "eer",
        bpcer_target: float = 0.01,
        positive: Literal["attack", "live"] = "attack",
        fpr_target: float = 0.01,
        hist_bins: int = 20,
        grid_density: int = GRID_DENSITY,
        det_png: bool = True,
        video_mean: Literal["instructflip", "flip", "float64"] | None = None,
    ) -> None:
        if threshold_rule not in ("eer", "bpcer"):
            raise ValueError(f"threshold_rule must be 'eer' or 'bpcer', got {threshold_rule!r}")
        if positive not in ("attack", "live"):
            raise ValueError(f"positive must be 'attack' or 'live', got {positive!r}")
        self.n_worst = int(n_worst)
        self.thumb_size = int(thumb_size)
        self.enabled = {"val": bool(on_validation), "test": bool(on_test)}
        self.threshold_rule = threshold_rule
        self.bpcer_target = float(bpcer_target)
        self.positive = positive
        self.fpr_target = float(fpr_target)
        self.hist_bins = int(hist_bins)
        self.grid_density = int(grid_density)
        self.det_png = bool(det_png)
        self.video_mean = video_mean
        self._metrics: dict[str, list[FASMetrics]] = {"val": [], "test": []}
        self._worst: dict[str, list[_Worst]] = {"val": [], "test": []}

    @staticmethod
    def _tensorboard(trainer: pl.Trainer) -> TensorBoardLogger | None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger
        return None

    def _active(self, stage: Stage, trainer: pl.Trainer) -> bool:
        # the same answer on every rank (the logger configuration is), so the collective calls stay matched
        return self.enabled[stage] and not trainer.sanity_checking and self._tensorboard(trainer) is not None

    # -------------------------------------------------------------------------------------------------------- hooks
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset("val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset("test")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._active("val", trainer):
            self._update("val", pl_module, outputs, batch, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._active("test", trainer):
            self._update("test", pl_module, outputs, batch, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._active("val", trainer):
            self._draw("val", trainer, pl_module)
        self._reset("val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self._active("test", trainer):
            self._draw("test", trainer, pl_module)
        self._reset("test")

    # ------------------------------------------------------------------------------------------------------ helpers
    def _reset(self, stage: Stage) -> None:
        self._metrics[stage] = []
        self._worst[stage] = []

    def _slot(self, stage: Stage, idx: int, device: torch.device) -> tuple[FASMetrics, _Worst]:
        metrics, worst = self._metrics[stage], self._worst[stage]
        while len(metrics) <= idx:
            metrics.append(FASMetrics(positive=self.positive, grid_density=self.grid_density).to(device))
            worst.append(_Worst(self.n_worst, self.thumb_size))
        return metrics[idx], worst[idx]

    def _update(self, stage: Stage, pl_module, outputs: Any, batch: Any, dataloader_idx: int) -> None:
        if not isinstance(outputs, Mapping) or "scores" not in outputs or "labels" not in outputs:
            raise KeyError(
                "FASFiguresCallback: validation_step/test_step must return a dict with 'scores' (B,) = "
                "P(attack) and 'labels' (B,)"
            )
        b = batch if isinstance(batch, Mapping) else {}
        metric, worst = self._slot(stage, dataloader_idx, pl_module.device)
        metric.update(
            outputs["scores"],
            outputs["labels"],
            video_ids=b.get("video"),
            attack_types=b.get("attack"),
            sample_ids=b.get("sample_id"),
        )
        pixels = b.get("pixel_values")
        if self.n_worst > 0 and isinstance(pixels, torch.Tensor):
            worst.update(outputs["scores"], outputs["labels"], pixels, b.get("sample_id"))

    def _threshold(self, data: FASData) -> float | None:
        try:
            return honest_threshold(data, self.threshold_rule, bpcer_target=self.bpcer_target, positive=self.positive,
                                    grid_density=self.grid_density, video_mean=self.video_mean or "float64")
        except ValueError as err:
            warnings.warn(f"FASFiguresCallback: no honest threshold: {err}", stacklevel=2)
            return None

    def _draw(self, stage: Stage, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        names, source = loader_names(trainer, stage)
        slots = [self._slot(stage, i, pl_module.device) for i in range(len(names))]
        datas = [m.gather() for m, _ in slots]  # collective, same order on every rank
        worsts = [w.gathered(pl_module) for _, w in slots]  # collective
        log_dir = (trainer.log_dir or trainer.default_root_dir) if self.det_png else None  # broadcasts: all ranks
        if not trainer.is_global_zero:
            return
        writer = self._tensorboard(trainer).experiment
        step = trainer.global_step
        src = dict(zip(names, datas)).get(source)
        thr_honest = self._threshold(src) if src is not None and len(src) > 0 else None
        score_name = "P(attack)" if self.positive == "attack" else "P(live) = 1 - P(attack)"
        for name, data, worst in zip(names, datas, worsts):
            if len(data) == 0:
                continue
            tag = f"{stage}/{name}"
            role = "source" if name == source else "target"
            vm = self.video_mean
            s, y, _ = video_level(data.scores, data.labels, data.video_ids, positive=self.positive,
                                  video_mean=vm or ("instructflip" if self.positive == "attack" else "flip"))
            is_attack = (y == 1) if self.positive == "attack" else (y == 0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one-class domains: NaN AUC is expected in figures
                paper = fas_metrics(
                    data.scores,
                    data.labels,
                    data.video_ids,
                    positive=self.positive,
                    fpr_targets=(self.fpr_target,),
                    grid_density=self.grid_density,
                    video_mean=vm,
                    attack_types=data.attack_types,
                )
            if 0 < int(y.sum()) < y.size:
                det = det_curve_points(data.scores, data.labels, data.video_ids, data.attack_types,
                                       positive=self.positive, video_mean=paper["video_mean"])
                det_img = render_det(det, f"{name} ({role}) DET", paper["bpcer_at_apcer"])
                writer.add_image(f"{tag}/det", det_img, step, dataformats="HWC")
                if log_dir is not None:
                    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
                    _write_png_atomic(os.path.join(log_dir, "det", f"{stage}_{safe}.png"), det_img)
                fpr, tpr, _ = roc_curve_points(s, y)
                title = (
                    f"{name} ({role}) AUC={paper['auc']:.4f} "
                    f"TPR@FPR={self.fpr_target:g}: {paper['tpr_at_fpr'][self.fpr_target]:.3f}"
                )
                writer.add_image(f"{tag}/roc", render_roc(fpr, tpr, title, self.fpr_target), step, dataformats="HWC")
                writer.add_pr_curve(f"{tag}/pr_curve", torch.from_numpy(y), torch.from_numpy(s), step)
            lines = {"EER thr (paper)": (paper["eer_threshold"], _EER_COLOUR)}
            if thr_honest is not None:
                lines["honest thr"] = (thr_honest, _HONEST_COLOUR)
            hist = render_histogram(
                s[~is_attack],
                s[is_attack],
                lines,
                f"{name} ({role}) HTER={paper['hter']:.4f}",
                score_name,
                self.hist_bins,
            )
            writer.add_image(f"{tag}/score_hist", hist, step, dataformats="HWC")
            if (~is_attack).any():
                writer.add_histogram(f"{tag}/scores_live", s[~is_attack], step, bins="auto")
            if is_attack.any():
                writer.add_histogram(f"{tag}/scores_attack", s[is_attack], step, bins="auto")
            if thr_honest is not None:
                writer.add_text(f"{tag}/apcer_per_attack", self._apcer_table(data, thr_honest, name), step)
            filled = worst.err >= 0
            if filled.any():
                captions = [
                    f"{'attack' if int(lab) == 1 else 'live'} p={float(sc):.3f}\n{_decode(sid)}"
                    for sc, lab, sid in zip(worst.score[filled], worst.label[filled], worst.sid[filled])
                ]
                grid = render_grid(worst.images[filled].numpy(), captions)
                writer.add_image(f"{tag}/worst", grid, step, dataformats="HWC")
        writer.flush()

    def _apcer_table(self, data: FASData, thr: float, name: str) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = fas_metrics(
                data.scores,
                data.labels,
                data.video_ids,
                mode="honest",
                threshold=thr,
                attack_types=data.attack_types,
                positive=self.positive,
                grid_density=self.grid_density,
                video_mean=self.video_mean,
            )
        _, _, types = video_level(data.scores, data.labels, data.video_ids, data.attack_types, positive=self.positive,
                                  video_mean=m["video_mean"])
        rows = [
            f"Honest threshold {thr:.4f} (chosen on the source loader), domain `{name}`",
            "",
            "| attack type | n | APCER |",
            "|---|---:|---:|",
        ]
        per = m.get("apcer_per_attack", {})
        for attack, value in sorted(per.items(), key=lambda kv: -kv[1]):
            count = int((types == attack).sum()) if types is not None else 0
            rows.append(f"| {attack} | {count} | {value:.4f} |")
        rows.append(f"| **APCER_AP (worst species)** | {m['n_attack']} | {m['apcer_ap']:.4f} |")
        rows.append(f"| **BPCER** (live) | {m['n_live']} | {m['bpcer']:.4f} |")
        rows.append(f"| **ACER** | | {m['acer']:.4f} |")
        rows.append("")
        rows.append("BPCER at fixed APCER_AP (ISO/IEC 30107-3; threshold-free): " + ", ".join(
            f"BPCER{round(1 / t)} = {v:.4f}" for t, v in m["bpcer_at_apcer"].items()))
        return "\n".join(rows)
