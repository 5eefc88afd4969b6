"""``fasvlm predict --model ... --input ...``: score a user's own images and videos, with no dataset config.

::

    fasvlm predict --model runs/quickstart --input photos/ clip.mp4 --out scored/

``--model`` is a run directory (its ``checkpoints/best.ckpt``, else ``last.ckpt``), a checkpoint file, an export
directory (``fasvlm export``: ``model.safetensors`` + ``config.json``) or an ``.onnx`` file written by ``fasvlm export
--onnx`` (its ``config.json`` beside it gives the preprocessing and the threshold). ``--input`` takes image and video
files, folders (searched recursively) and glob patterns.

Per input: the frames (an image is one frame; a video gives ``--frames`` frames sampled uniformly, as the protocols
do), the faces in each frame (``fasvlm.data_modules.faces.detect_faces``: the pipeline ``prepare`` uses, ``--detector
auto`` = dlib with the ``faces`` extra, else Haar; ``--faces largest`` keeps the largest, ``all`` every face), the crop
the training transform takes (square box + margin, or ``--align five_point``: the similarity-aligned chip), resized
and normalised as the model's image spec says, batched inference, and one row per face:

    input, frame (videos; null for images), face (index), score = P(attack), decision (live/attack at the threshold),
    threshold, threshold_source, box [x, y, w, h], detector (dlib, haar, ..., or "none" for the flagged centre crop)

plus, for a video, one aggregate row (``frame: null``, ``face: null``, mean score of its frames' first face, decision,
``n_frames``). I-FAS rows add ``explanation``: the interpretation generated after the judgment that the decision
implies ("No" for attack, "Yes" for live), so the written judgment always agrees with the decision (the rule: the
judgment is the decision at the run's threshold, not argmax of P(Yes) vs P(No)). InstructFLIP rows add
``cue_attack_share`` (share of the cue map above 0.5: the published cue target is all-0 for live, all-1 for attack)
and ``cue_mean``.

The decision threshold is the run's honest threshold, chosen on the source validation set during training and stored
in the checkpoint (``threshold_source: "source validation, epoch N"``); ``--threshold`` overrides it; with neither, 0.5
(``threshold_source: "default 0.5"``).

Outputs in ``--out`` (refused when it already holds predictions, unless ``--overwrite``): ``predictions.jsonl``,
``predictions.csv``, ``errors.csv`` (input, error: unreadable files, videos with no decodable frame, no face with
``--no-face skip``) and ``report.html`` (thumbnail, aligned crop, score, decision, explanation or cue-map overlay per
row; sortable by score). Files that fail never stop the batch. Exit code 0 when every input was scored, 3 when some
failed (listed in errors.csv), 1 when none was scored.
"""

from __future__ import annotations

import argparse
import base64
import csv
import glob
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "build_parser", "LoadedModel", "load_model", "collect_inputs", "predict_files", "write_report",
           "write_outputs", "overlay", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EXIT_PARTIAL = 3


# ---------------------------------------------------------------------------------------------------------------------
# the model, whatever form it comes in


@dataclass
class LoadedModel:
    """A scorer with its preprocessing and decision threshold.

    ``run(pixel_values float32 (B, 3, S, S)) -> dict`` gives ``score`` (B,) = P(attack) and, when the method has them,
    ``cue_map`` (B, C, g, g). ``explain(pixel_values, judgments)`` (I-FAS only) generates the interpretation after
    the given judgments.
    """

    method: str
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    margin: float
    threshold: float
    threshold_source: str
    source: str
    backend: str  # "torch" | "onnxruntime"
    system: Any = None
    session: Any = None

    def run(self, pixel_values) -> dict[str, np.ndarray]:
        if self.backend == "onnxruntime":
            (score,) = self.session.run(["p_attack"], {"pixel_values": np.ascontiguousarray(pixel_values.numpy())})
            return {"score": np.asarray(score, dtype=np.float64)}
        import torch

        with torch.no_grad():
            out = self.system(pixel_values)
        if isinstance(out, dict):
            res = {"score": out["score"].float().cpu().numpy().astype(np.float64)}
            if out.get("cue_map") is not None:
                res["cue_map"] = out["cue_map"].float().cpu().numpy()
            return res
        return {"score": out.float().cpu().numpy().astype(np.float64)}

    @property
    def can_explain(self) -> bool:
        return self.backend == "torch" and hasattr(getattr(self.system, "model", None), "generate") and hasattr(
            getattr(self.system, "model", None), "prompt")

    def explain(self, pixel_values, judgments: list[str], max_new_tokens: int) -> list[str]:
        import torch

        model = self.system.model
        with torch.no_grad():
            new = model.generate(pixel_values, judgments=judgments, max_new_tokens=max_new_tokens)
        texts = model.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [t.strip().lstrip(".").strip() for t in texts]


def _system_from_checkpoint(path: Path):
    """The LightningModule of a checkpoint: its class from the project's registry, weights with weights_only=True."""
    from fasvlm.systems import system_class
    from fasvlm.tools.export import load_checkpoint

    ckpt = load_checkpoint(path)
    hp = dict(ckpt.get("hyper_parameters") or {})
    class_path = hp.pop("_class_path", None)
    hp.pop("_instantiator", None)
    if class_path is None:
        raise ValueError(f"{path}: the checkpoint stores no class path (trained without `fasvlm fit`); export it "
                         "with `fasvlm export --ckpt ... --class-path ...` and pass the export directory")
    system = system_class(class_path)(**hp)
    system.load_state_dict(ckpt["state_dict"], strict=False)
    return system.eval(), ckpt


def load_model(path: str | Path, *, threshold: float | None = None, margin: float | None = None,
               device: str = "cpu") -> LoadedModel:
    """A run directory, checkpoint, export directory or .onnx file -> :class:`LoadedModel` (module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--model {path} does not exist; give a run directory (runs/<run>), a checkpoint "
                                "(.ckpt), an export directory (fasvlm export) or an .onnx file")
    info: dict[str, Any] = {}
    if path.suffix == ".onnx":
        config_path = path.with_name("config.json")
        if not config_path.is_file():
            raise FileNotFoundError(f"{path}: no config.json beside it; `fasvlm export --onnx` writes the ONNX model "
                                    "into the export directory with its config (preprocessing, threshold)")
        import onnxruntime as ort

        config = json.loads(config_path.read_text())
        info = _export_info(config)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        model = LoadedModel(backend="onnxruntime", session=session, source=str(path), **info)
    elif path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        from fasvlm.tools.export import load_exported

        config = json.loads((path / "config.json").read_text())
        info = _export_info(config)
        model = LoadedModel(backend="torch", system=load_exported(path), source=str(path), **info)
    else:
        if path.is_dir():
            ckpt_dir = path / "checkpoints"
            candidates = [ckpt_dir / "best.ckpt", ckpt_dir / "last.ckpt"]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise FileNotFoundError(f"{path}: neither {candidates[0]} nor {candidates[1]} exists; is this a run "
                                        "directory of `fasvlm fit`? (an export directory holds config.json and "
                                        "model.safetensors)")
            path = found
        system, ckpt = _system_from_checkpoint(path)
        from fasvlm.tools.export import checkpoint_threshold

        stored = checkpoint_threshold(ckpt)
        thr, thr_source = stored["value"], stored["source"]
        spec = system.image_spec
        stored_margin = (ckpt.get("FASDataModule") or {}).get("margin")
        model = LoadedModel(method=type(system).__name__, size=int(spec.size), mean=tuple(spec.mean),
                            std=tuple(spec.std), margin=float(stored_margin if stored_margin is not None else 0.2),
                            threshold=thr if thr is not None else 0.5,
                            threshold_source=thr_source or "default 0.5 (no threshold stored in the checkpoint)",
                            source=str(path), backend="torch", system=system)
    if threshold is not None:
        model.threshold, model.threshold_source = float(threshold), "--threshold"
    if margin is not None:
        model.margin = float(margin)
    if model.backend == "torch" and device != "cpu":
        model.system.to(device)
    return model


def _export_info(config: dict) -> dict[str, Any]:
    pre = config.get("preprocessing") or {}
    thr = config.get("threshold") or {}
    if not pre:
        raise ValueError("the export's config.json has no 'preprocessing' (written by an older fasvlm export); "
                         "re-export the checkpoint with this version")
    value = thr.get("value")
    return dict(method=str(config.get("class_path", "?")).rsplit(".", 1)[-1], size=int(pre["size"]),
                mean=tuple(pre["mean"]), std=tuple(pre["std"]), margin=float(pre.get("margin", 0.2)),
                threshold=float(value) if value is not None else 0.5,
                threshold_source=thr.get("source") or "default 0.5 (no threshold in the export)")


# ---------------------------------------------------------------------------------------------------------------------
# inputs, frames, faces


def collect_inputs(specs: Sequence[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files from files, folders (recursive, image/video suffixes) and glob patterns; (files, errors)."""
    from fasvlm.data_modules.video import VIDEO_SUFFIXES

    suffixes = IMAGE_SUFFIXES + tuple(VIDEO_SUFFIXES)
    files: list[Path] = []
    errors: list[dict[str, str]] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
            if not found:
                errors.append({"input": spec, "error": f"folder holds no image or video ({', '.join(suffixes)})"})
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True) if Path(m).is_file())
            if not matches:
                errors.append({"input": spec, "error": "no such file, folder or glob match"})
            files.extend(matches)
    seen, unique = set(), []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique, errors


def _frames(path: Path, n_frames: int) -> list[tuple[int | None, np.ndarray]]:
    """[(frame index or None for an image, RGB uint8 (H, W, 3))]; raises on unreadable media."""
    from fasvlm.data_modules.video import is_video_path, read_video_frames, uniform_indices

    if is_video_path(path):
        _, frames = read_video_frames(path, lambda n: uniform_indices(n, n_frames))
        return sorted(frames.items())
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return [(None, np.asarray(img.convert("RGB")))]


class _FaceFinder:
    """The face pipeline of ``prepare`` (:func:`fasvlm.data_modules.faces.detect_faces`: dlib with the ``faces``
    extra, else OpenCV's Haar cascade), largest face first; ``policy`` "largest" keeps one face per frame."""

    def __init__(self, policy: str, detector: str = "auto"):
        from fasvlm.data_modules import faces

        faces.make_detector(detector)  # unknown names and a missing extra fail before any file is read
        self.policy, self.detector, self._faces = policy, detector, faces

    def __call__(self, image: np.ndarray) -> list:
        found = self._faces.detect_faces(image, self.detector)
        return found[:1] if self.policy == "largest" else found


# ---------------------------------------------------------------------------------------------------------------------
# scoring


@dataclass
class _Item:
    input: str
    frame: int | None
    face: int | None
    box: list[float] | None
    detector: str
    pixels: Any  # normalised tensor (3, S, S)
    crop: np.ndarray  # uint8 crop as the model sees it, for the report
    thumb: np.ndarray | None  # small view of the whole frame (first face of each frame only)
    extra: dict[str, Any] = field(default_factory=dict)


def _crop_items(path: Path, frames, finder: _FaceFinder, model: LoadedModel, no_face: str,
                align: str = "none") -> Iterator[_Item]:
    from PIL import Image

    from fasvlm.data_modules.faces import align_face
    from fasvlm.data_modules.transforms import FaceTransform, square_box

    tf = FaceTransform(model.size, model.mean, model.std, train=False, margin=model.margin)
    for index, rgb in frames:
        image = Image.fromarray(rgb)
        found = finder(rgb)
        if not found and no_face == "skip":
            continue
        thumb = np.asarray(_thumbnail(image, 160))
        for k, face in enumerate(found or [None]):
            box = None if face is None else tuple(float(v) for v in face.box)
            detector = "none" if face is None else face.detector
            if align == "five_point" and face is not None and face.landmarks is not None:
                # the aligned chip is the whole model input (as prepare --align five_point stores it)
                chip = align_face(rgb, face, size=model.size)
                pixels, crop, detector = tf(chip, None, None), np.asarray(chip), detector + "+five_point"
            else:
                pixels = tf(image, box, None)
                x1, y1, x2, y2 = square_box(box, image.width, image.height, model.margin)
                crop = np.asarray(image.crop(tuple(round(v) for v in (x1, y1, x2, y2))).resize((model.size,) * 2))
            yield _Item(input=str(path), frame=index, face=None if face is None else k,
                        box=None if box is None else [round(v, 1) for v in box], detector=detector, pixels=pixels,
                        crop=crop, thumb=thumb if k == 0 else None)


def _thumbnail(image, side: int):
    img = image.copy()
    img.thumbnail((side, side))
    return img


def _decision(score: float, threshold: float) -> str:
    return "attack" if score >= threshold else "live"


def predict_files(model: LoadedModel, files: Sequence[Path], *, frames: int = 8, faces: str = "largest",
                  no_face: str = "center", batch_size: int = 32, explain: bool = True, max_new_tokens: int = 48,
                  progress: bool = True, detector: str = "auto", align: str = "none") -> tuple[list[dict], list[dict], list[_Item]]:
    """Score ``files``; returns (rows, errors, items-with-report-images). Failures never stop the batch."""
    import torch

    finder = _FaceFinder(faces, detector)
    rows: list[dict] = []
    errors: list[dict] = []
    items: list[_Item] = []
    pending: list[_Item] = []

    def flush() -> None:
        if not pending:
            return
        pixels = torch.stack([it.pixels for it in pending])
        if model.backend == "torch":
            pixels = pixels.to(next(model.system.parameters()).device)
        out = model.run(pixels)
        scores = out["score"]
        judgments = []
        for i, it in enumerate(pending):
            s = float(scores[i])
            it.extra.update(score=s, decision=_decision(s, model.threshold))
            if "cue_map" in out:
                cue = out["cue_map"][i].mean(0)  # (g, g)
                it.extra.update(cue_attack_share=float((cue > 0.5).mean()), cue_mean=float(cue.mean()),
                                cue_map=cue)
            judgments.append("No" if it.extra["decision"] == "attack" else "Yes")
        if explain and model.can_explain:
            texts = model.explain(pixels, judgments, max_new_tokens)
            for it, j, t in zip(pending, judgments, texts):
                it.extra.update(judgment=j, explanation=t)
        items.extend(pending)
        pending.clear()

    bar = _progress(len(files), progress)
    for path in files:
        try:
            media = _frames(path, frames)
        except Exception as err:  # unreadable image or video: PIL, PyAV and OpenCV raise many types
            errors.append({"input": str(path), "error": f"unreadable: {type(err).__name__}: {err}"})
            bar(path)
            continue
        n_before = len(pending) + len(items)
        for it in _crop_items(path, media, finder, model, no_face, align):
            pending.append(it)
            if len(pending) >= batch_size:
                flush()
        if len(pending) + len(items) == n_before:
            errors.append({"input": str(path), "error": "no face found (--no-face skip)"})
        bar(path)
    flush()
    bar(None)

    by_input: dict[str, list[_Item]] = {}
    for it in items:
        by_input.setdefault(it.input, []).append(it)
    for path in files:
        group = by_input.get(str(path))
        if not group:
            continue
        for it in group:
            rows.append(_row(it, model))
        if group[0].frame is not None:  # a video: one aggregate row over the first face of each frame
            firsts = {}
            for it in group:
                firsts.setdefault(it.frame, it)
            mean = float(np.mean([it.extra["score"] for it in firsts.values()]))
            rows.append({"input": str(path), "frame": None, "face": None, "score": mean,
                         "decision": _decision(mean, model.threshold), "threshold": model.threshold,
                         "threshold_source": model.threshold_source, "n_frames": len(firsts), "box": None,
                         "detector": None, "aggregate": "mean of frame scores"})
    return rows, errors, items


def _row(it: _Item, model: LoadedModel) -> dict[str, Any]:
    row = {"input": it.input, "frame": it.frame, "face": it.face, "score": it.extra["score"],
           "decision": it.extra["decision"], "threshold": model.threshold, "threshold_source": model.threshold_source,
           "box": it.box, "detector": it.detector}
    for key in ("judgment", "explanation", "cue_attack_share", "cue_mean"):
        if key in it.extra:
            row[key] = it.extra[key]
    return row


def _progress(total: int, enabled: bool):
    """A progress line per file on a terminal (rich), else one line every 10% (logs stay short)."""
    state = {"done": 0, "start": time.perf_counter()}
    live = enabled and sys.stderr.isatty()
    if live:
        from rich.progress import Progress

        prog = Progress(transient=False)
        task = prog.add_task("scoring", total=total)
        prog.start()

    def step(path) -> None:
        if path is None:
            if live:
                prog.stop()
            return
        state["done"] += 1
        if live:
            prog.update(task, advance=1)
        elif enabled and (state["done"] == total or state["done"] % max(1, total // 10) == 0):
            print(f"predict: {state['done']}/{total} files ({time.perf_counter() - state['start']:.1f} s)",
                  file=sys.stderr, flush=True)

    return step


# ---------------------------------------------------------------------------------------------------------------------
# outputs


_CSV_COLUMNS = ("input", "frame", "face", "score", "decision", "threshold", "threshold_source", "box", "detector",
                "n_frames", "judgment", "explanation", "cue_attack_share", "cue_mean")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(out: Path, rows: list[dict], errors: list[dict], items: list[_Item], model: LoadedModel) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(_CSV_COLUMNS), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()})
    _write_atomic(out / "predictions.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["input", "error"])
    w.writeheader()
    w.writerows(errors)
    _write_atomic(out / "errors.csv", buf.getvalue())
    _write_atomic(out / "report.html", write_report(rows, errors, items, model))


def _data_uri(array: np.ndarray | None) -> str:
    if array is None:
        return ""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def overlay(crop: np.ndarray, cue: np.ndarray) -> np.ndarray:
    """The cue map (0 live .. 1 attack) as a red overlay on the crop."""
    from PIL import Image

    heat = np.asarray(Image.fromarray((np.clip(cue, 0, 1) * 255).astype(np.uint8)).resize(crop.shape[1::-1]))
    out = crop.astype(np.float32).copy()
    a = 0.5 * heat[..., None] / 255.0
    out = out * (1 - a) + np.array([255.0, 0, 0]) * a
    return out.clip(0, 255).astype(np.uint8)


def write_report(rows: list[dict], errors: list[dict], items: list[_Item], model: LoadedModel) -> str:
    """A static, self-contained HTML page: one table row per scored face (per video: its aggregate row), images
    inline, sortable by clicking a header."""
    from html import escape

    first = {}
    for it in items:
        first.setdefault(it.input, it)
    body = []
    for r in rows:
        if r["frame"] is not None:  # video frames are summarised by the aggregate row
            continue
        it = first.get(r["input"])
        if it is None:
            continue
        detail = escape(r.get("explanation", ""))
        if "cue_map" in it.extra:
            detail = (f'<img class="cue" src="{_data_uri(overlay(it.crop, it.extra["cue_map"]))}" alt="cue map">'
                      f' attack share {r.get("cue_attack_share", it.extra["cue_attack_share"]):.2f}')
        if r.get("n_frames"):
            detail = f"video: mean of {r['n_frames']} frames " + detail
        body.append(
            f'<tr class="row" data-input="{escape(r["input"])}" data-score="{r["score"]:.6f}">'
            f'<td><img src="{_data_uri(it.thumb)}" alt="input"></td>'
            f'<td><img src="{_data_uri(it.crop)}" alt="aligned crop"></td>'
            f'<td class="score">{r["score"]:.4f}</td><td class="{r["decision"]}">{r["decision"]}</td>'
            f'<td>{escape(str(r.get("detector") or ""))}</td><td>{detail}</td>'
            f'<td class="path">{escape(r["input"])}</td></tr>')
    err = "".join(f"<li>{escape(e['input'])}: {escape(e['error'])}</li>" for e in errors)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fasvlm predict</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px;vertical-align:middle}}th{{cursor:pointer;background:#eee}}img{{max-width:128px;max-height:128px}}
.attack{{color:#b00;font-weight:bold}}.live{{color:#070;font-weight:bold}}.path{{font-size:small}}</style></head>
<body><h1>fasvlm predict</h1>
<p>model {escape(model.source)} ({escape(model.method)}, {escape(model.backend)}); score = P(attack); decision at
threshold {model.threshold:.4f} ({escape(model.threshold_source)}). {len(body)} rows, {len(errors)} errors.</p>
<table id="results"><thead><tr><th>input</th><th>crop</th><th data-sort="score">score &#x2195;</th><th>decision</th>
<th>detector</th><th>explanation / cue map</th><th>file</th></tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<h2>Errors</h2><ul id="errors">{err}</ul>
<script>
document.querySelector('th[data-sort="score"]').addEventListener('click', function () {{
  const tbody = document.querySelector('#results tbody');
  const rows = Array.from(tbody.querySelectorAll('tr.row'));
  const desc = this.dataset.dir !== 'desc';
  this.dataset.dir = desc ? 'desc' : 'asc';
  rows.sort((a, b) => (desc ? -1 : 1) * (parseFloat(a.dataset.score) - parseFloat(b.dataset.score)));
  rows.forEach(r => tbody.appendChild(r));
}});
</script></body></html>
"""


# ---------------------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fasvlm predict", allow_abbrev=False,
                                description="Score your own images and videos with a trained model (no dataset "
                                            "config). The LightningCLI form `fasvlm predict --config ...` still "
                                            "predicts on a dataset config.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  fasvlm predict --model runs/quickstart --input photos/ clip.mp4 "
                                       "--out scored/")
    p.add_argument("--model", required=True, help="run directory, checkpoint, export directory or .onnx file")
    p.add_argument("--input", required=True, nargs="+", help="image/video files, folders (recursive) or globs")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: predictions-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the predictions of an earlier run in --out")
    p.add_argument("--frames", type=int, default=8, help="frames sampled uniformly per video (default 8)")
    p.add_argument("--faces", choices=("largest", "all"), default="largest", help="faces scored per frame")
    p.add_argument("--detector", choices=("auto", "dlib", "dlib_cnn", "haar"), default="auto",
                   help="face detector, as in `fasvlm prepare` (auto: dlib with the faces extra, else Haar)")
    p.add_argument("--align", choices=("none", "five_point"), default="none",
                   help="five_point: similarity-align on the eye centres and nose (models prepared with --align "
                        "five_point; needs landmarks: the faces extra)")
    p.add_argument("--no-face", choices=("center", "skip"), default="center",
                   help="no face found: score a flagged centre crop (detector 'none'), or skip the frame")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the run's)")
    p.add_argument("--margin", type=float, default=None, help="face-box margin (default: the training run's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (PyTorch models)")
    p.add_argument("--no-explain", action="store_true", help="I-FAS: skip generating explanations")
    p.add_argument("--max-new-tokens", type=int, default=48, help="I-FAS explanation length")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or Path(time.strftime("predictions-%Y%m%d-%H%M%S"))
    if (out / "predictions.jsonl").exists() and not args.overwrite:
        print(f"fasvlm predict: error: {out} already holds predictions.jsonl; choose another --out or pass "
              "--overwrite", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, threshold=args.threshold, margin=args.margin, device=args.device)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as err:
        print(f"fasvlm predict: error: {err}", file=sys.stderr)
        return 2
    files, errors = collect_inputs(args.input)
    if not files:
        print("fasvlm predict: error: no input file found: " + "; ".join(f"{e['input']}: {e['error']}"
                                                                        for e in errors), file=sys.stderr)
        return 1
    print(f"predict: {len(files)} files with {model.method} ({model.backend}, {model.source}); threshold "
          f"{model.threshold:.4f} ({model.threshold_source})", file=sys.stderr)
    try:
        rows, more, items = predict_files(model, files, frames=args.frames, faces=args.faces, no_face=args.no_face,
                                          batch_size=args.batch_size, explain=not args.no_explain,
                                          max_new_tokens=args.max_new_tokens, detector=args.detector,
                                          align=args.align)
    except (ModuleNotFoundError, ValueError) as err:  # e.g. --detector dlib without the faces extra
        print(f"fasvlm predict: error: {err}", file=sys.stderr)
        return 2
    errors += more
    write_outputs(out, rows, errors, items, model)
    scored = {r["input"] for r in rows}
    print(f"predict: {len(scored)} of {len(files)} files scored, {len(errors)} errors -> {out}/predictions.jsonl, "
          f"predictions.csv, errors.csv, report.html", file=sys.stderr)
    for e in errors:
        print(f"  error: {e['input']}: {e['error']}", file=sys.stderr)
    if not scored:
        return 1
    return EXIT_PARTIAL if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
