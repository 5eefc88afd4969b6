"""``generate``: write every release of a preset under one output folder, in parallel, deterministically.

Each image/video is a self-contained task seeded from ``(seed, domain, index)``, so the files do not depend on the
number of workers or on the order in which they finish. The label/list files are written by the parent process
afterwards; ``<out>/.complete`` is written last (atomically), so an interrupted run is never mistaken for a
finished one.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from ..workers import worker_context
from .celeba import ImageTask, plan_celeba, render_image_task, write_celeba_metas
from .celeba import truth_rows as celeba_truth
from .presets import Preset, get_preset
from .videos import VideoTask, plan_oulu, plan_replay, render_video_task, write_oulu_protocols
from .videos import truth_rows as video_truth

__all__ = ["generate", "plan", "owned_names", "MARKER", "OWNER_MARKER", "ForeignDataError"]

MARKER = ".complete"
# written *first*: the names this generator owns under <out>; only those are ever removed by a later run
OWNER_MARKER = ".fasvlm-synth"
REPLAY_DIR, OULU_DIR, TRUTH_DIR = "replay_attack", "oulu_npu", "truth"


def plan(preset: Preset, out: Path, seed: int) -> tuple[dict[str, list[ImageTask]], list[VideoTask], list[VideoTask]]:
    """Every task of ``preset``: CelebA-layout images per domain, Replay-Attack videos, OULU-NPU videos."""
    images = {spec.domain: plan_celeba(spec, out / spec.domain, seed) for spec in preset.celeba}
    replay = plan_replay(preset.replay, out / REPLAY_DIR, seed) if preset.replay else []
    oulu = plan_oulu(preset.oulu, out / OULU_DIR, seed) if preset.oulu else []
    return images, replay, oulu


def owned_names(preset: Preset) -> list[str]:
    """Top-level names under ``out`` that the generator writes (and removes before writing again)."""
    return [spec.domain for spec in preset.celeba] + [REPLAY_DIR, OULU_DIR, TRUTH_DIR, "README.txt", MARKER]


class ForeignDataError(FileExistsError):
    """``<out>`` holds files with the generator's names that the generator did not write."""


def _claim(out: Path, names: list[str]) -> None:
    """Remove what an earlier run of ours wrote under ``out`` and record the names this run will write.

    A name counts as ours when ``out/.fasvlm-synth`` lists it, or (output of versions before that marker) when
    ``out/.complete`` holds the generator's ``preset=`` line. Anything else with one of our names is refused, never
    removed: ``synth --out`` pointed at a folder of real data must not delete it.
    """
    owner = out / OWNER_MARKER
    ours: set[str] = set()
    if owner.is_file():
        ours = {line.strip() for line in owner.read_text().splitlines() if line.strip() and "/" not in line}
    elif (out / MARKER).is_file() and (out / MARKER).read_text().startswith("preset="):
        ours = set(names)
    foreign = sorted(n for n in names if (out / n).exists() and n not in ours and n != OWNER_MARKER)
    if foreign:
        raise ForeignDataError(
            f"fasvlm synth: {out} already holds {', '.join(foreign)}, not written by `fasvlm synth` (no "
            f"{OWNER_MARKER} marker lists them); refusing to replace them. Choose an empty or new --out folder, or "
            "move those files away.")
    tmp = out / (OWNER_MARKER + ".tmp")
    tmp.write_text("\n".join(sorted(ours | set(names))) + "\n")
    os.replace(tmp, owner)
    for name in sorted(ours):  # a previous (maybe partial) run of ours: start clean, touch nothing else
        p = out / name
        if name in (OWNER_MARKER, "", ".", "..") or not (p.exists() or p.is_symlink()):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _run_task(task):
    if isinstance(task, ImageTask):
        return "image", render_image_task(task)
    return "video", render_video_task(task)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV must not spawn its own threads


def _execute(tasks: list, workers: int, on_start: Callable[[], None] = lambda: None) -> Iterator[tuple[str, dict]]:
    """Run tasks (the caller puts the long ones first), yielding results as they finish.

    Workers never fork from the caller's process (:func:`~..workers.worker_context`; a fork of a test session that
    had used OpenCV hung them). The pool exists before ``on_start`` starts any thread (the progress bar). Workers do
    no threaded BLAS work (only 3x3 products) and run OpenCV single-threaded.
    """
    if workers <= 1:
        import cv2

        threads = cv2.getNumThreads()
        _init_worker()
        try:
            on_start()
            yield from (_run_task(t) for t in tasks)
        finally:
            cv2.setNumThreads(threads)  # leave the caller's process as it was
        return
    with worker_context(__name__).Pool(workers, initializer=_init_worker) as pool:
        on_start()
        yield from pool.imap_unordered(_run_task, tasks, chunksize=4)


class _Bar:
    """A rich progress bar, started on demand (after the worker pool exists)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.bar, self.job = total, None, None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("fasvlm synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())

    def start(self) -> None:
        if self.bar is not None:
            self.bar.start()
            self.job = self.bar.add_task("render", total=self.total)

    def advance(self) -> None:
        if self.bar is not None and self.job is not None:
            self.bar.advance(self.job)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def generate(
    out: str | Path,
    preset: str = "quickstart",
    seed: int = 0,
    workers: int = 2,
    *,
    progress: bool = True,
    summary: bool = True,
) -> Path:
    """Write the synthetic releases of ``preset`` under ``out`` and return ``out``.

    Layout: ``<out>/<domain>/`` (CelebA-Spoof layout, one per synthetic domain), ``<out>/replay_attack/``,
    ``<out>/oulu_npu/``, ``<out>/truth/*.csv`` (ground truth the layouts do not carry), ``<out>/README.txt`` and
    the ``<out>/.complete`` marker. Same ``seed`` -> byte-identical files, whatever ``workers``. ``progress`` shows
    a progress bar; ``summary`` prints one line with the counts and the elapsed time.
    """
    spec = get_preset(preset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, owned_names(spec))
    images, replay, oulu = plan(spec, out, seed)
    video_tasks = replay + oulu
    image_tasks = [t for ts in images.values() for t in ts]
    t0 = time.perf_counter()
    bar = _Bar(len(video_tasks) + len(image_tasks), progress)
    labels: dict[str, dict[str, list[int]]] = {d: {} for d in images}
    frames = 0
    try:
        # videos first: they are the long tasks
        for kind, result in _execute(video_tasks + image_tasks, workers, bar.start):
            if kind == "image":
                labels[result["domain"]][result["rel"]] = result["label"]
            else:
                frames += result["frames"]
            bar.advance()
    finally:
        bar.stop()
    for domain, tasks in images.items():
        write_celeba_metas(out / domain, tasks, labels[domain])
    if oulu:
        write_oulu_protocols(out / OULU_DIR, oulu)
    truth = out / TRUTH_DIR
    truth.mkdir(exist_ok=True)
    for domain, tasks in images.items():
        _write_csv(truth / f"{domain}.csv", celeba_truth(tasks))
    if replay:
        _write_csv(truth / f"{REPLAY_DIR}.csv", video_truth(replay))
    if oulu:
        _write_csv(truth / f"{OULU_DIR}.csv", video_truth(oulu))
    elapsed = time.perf_counter() - t0
    (out / "README.txt").write_text(_readme(spec, seed, images, replay, oulu, elapsed, workers))
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(f"preset={preset} seed={seed} images={len(image_tasks)} videos={len(video_tasks)}\n")
    os.replace(tmp, out / MARKER)
    if summary:
        print(
            f"fasvlm synth: {len(image_tasks)} images, {len(video_tasks)} videos ({frames} frames) in "
            f"{elapsed:.1f} s with {workers} worker(s) -> {out}"
        )
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _readme(spec: Preset, seed, images, replay, oulu, elapsed, workers) -> str:
    lines = [
        f"fasvlm synthetic data: preset {spec.name!r}, seed {seed} ({spec.description}).",
        f"Generated in {elapsed:.1f} s with {workers} worker(s). Regenerate with:",
        f"  fasvlm synth --out <dir> --preset {spec.name} --seed {seed}",
        "",
        "Every release below uses its dataset's official on-disk layout, so `fasvlm prepare --dataset NAME --root DIR`",
        "reads it exactly as it reads the real data. Label 1 = attack everywhere in fasvlm.",
        "",
    ]
    for domain, tasks in images.items():
        c = Counter((t.split, t.kind) for t in tasks)
        splits = sorted({t.split for t in tasks})
        lines.append(f"{domain}/  CelebA-Spoof layout (adapter: celeba_spoof), synthetic domain {domain!r}")
        for split in splits:
            n = sum(v for (s, _), v in c.items() if s == split)
            kinds = ", ".join(f"{k} {v}" for (s, k), v in sorted(c.items()) if s == split)
            lines.append(f"  Data/{split}: {n} images ({kinds})")
        lines.append(
            "  metas/intra_test, metas/protocol1 (test types A4/face mask/PC), "
            "metas/protocol2/test_on_{low,middle,high}_quality_device"
        )
    if replay:
        c = Counter(t.rel.split("/")[0] for t in replay)
        lines.append(
            "replay_attack/  Idiap Replay-Attack layout (adapter: replay_attack): "
            + ", ".join(f"{k} {v} videos" for k, v in c.items())
            + "; face-locations/**/*.face (frame x y w h)"
        )
    if oulu:
        c = Counter(t.rel.split("/")[0] for t in oulu)
        lines.append(
            "oulu_npu/  OULU-NPU layout (adapter: oulu_npu): "
            + ", ".join(f"{k} {v} videos" for k, v in c.items())
            + "; <video>.txt eye positions; Protocols/Protocol_1/{Train,Dev,Test}.txt"
        )
    lines += [
        "truth/  per-item ground truth the layouts do not carry (style of live images, camera quality, cue strength)",
        ".complete  written last: the generation finished",
        ".fasvlm-synth  written first: the names `fasvlm synth` owns here (a later run replaces only those)",
        "",
    ]
    return "\n".join(lines)
