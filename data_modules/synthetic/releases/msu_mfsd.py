"""A fake MSU-MFSD release in the official layout: ``scene01/{real,attack}/`` with ``train_sub_list.txt``,
``test_sub_list.txt`` and ``README.txt`` at the top, as the real release is unpacked (``layout="flat"`` writes
``real/`` and ``attack/`` at the top instead, the layout of some re-packed copies).

Per subject: 2 real videos (android .mp4, laptop .mov) and 6 attacks (3 instruments x 2 cameras), each with a
same-stem ``.face`` file when ``faces=True``; the two official subject lists are always written in full (no trailing
newline, as released). ``subjects="all"`` writes all 35 subjects (280 videos).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from .replay_attack import BOX, write_video

__all__ = ["TRAIN_SUBJECTS", "TEST_SUBJECTS", "make_release"]

TRAIN_SUBJECTS = (2, 3, 5, 6, 7, 8, 9, 11, 12, 21, 22, 34, 53, 54, 55)
TEST_SUBJECTS = (1, 13, 14, 23, 24, 26, 28, 29, 30, 32, 33, 35, 36, 37, 39, 42, 48, 49, 50, 51)
_CAMERAS = {"android": ".mp4", "laptop": ".mov"}
_INSTRUMENTS = {"ipad_video": "pad", "iphone_video": "phone", "printed_photo": "print"}


def _write_face(path: Path, frames: int) -> None:
    """``frame, x1, y1, x2, y2, leye_x, leye_y, reye_x, reye_y``; frame 1 has an empty box."""
    x, y, w, h = BOX
    path.write_text("\n".join(
        f"{i}, 0, 0, 0, 0, 0, 0, 0, 0" if i == 1 else f"{i}, {x}, {y}, {x + w}, {y + h}, {x + 8}, {y + 10}, {x + 20}, "
        f"{y + 10}" for i in range(frames)) + "\n")


def make_release(root: Path, *, subjects: Iterable[int] | str = (2, 3, 1, 13), media: str = "placeholder",
                 faces: bool = True, frames: int = 10, layout: str = "release", photo=None) -> dict:
    """Write the release under ``root``; return ``videos``, ``by_split`` ({"train"|"test": {"live": n, "attack": n}})
    and ``by_attack`` (taxonomy name -> count). ``photo``: with ``media="real"``, every video shows this RGB
    photograph (e.g. ``skimage.data.astronaut()``) instead of a flat patch (see ``write_video``)."""
    if layout not in ("release", "flat"):
        raise ValueError(f"layout must be 'release' (scene01/real, scene01/attack) or 'flat', got {layout!r}")
    root = Path(root)
    data = root / "scene01" if layout == "release" else root
    ids = sorted(TRAIN_SUBJECTS + TEST_SUBJECTS) if subjects == "all" else list(subjects)
    (root / "train_sub_list.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "train_sub_list.txt").write_text("\n".join(f"{c:02d}" for c in TRAIN_SUBJECTS))
    (root / "test_sub_list.txt").write_text("\n".join(f"{c:02d}" for c in TEST_SUBJECTS))
    if layout == "release":
        (root / "README.txt").write_text("MSU MFSD (synthetic stand-in written by fasvlm)\n")
    names: list[tuple[str, str]] = []  # (relative path without extension, taxonomy name)
    by_split: dict[str, Counter] = {}
    for client in ids:
        if client not in TRAIN_SUBJECTS + TEST_SUBJECTS:
            raise ValueError(f"MSU-MFSD has no subject {client}")
        split = "train" if client in TRAIN_SUBJECTS else "test"
        for camera in _CAMERAS:
            names.append((f"real/real_client{client:03d}_{camera}_SD_scene01", "live"))
            names += [(f"attack/attack_client{client:03d}_{camera}_SD_{instrument}_scene01", attack)
                      for instrument, attack in _INSTRUMENTS.items()]
        by_split[split] = by_split.get(split, Counter()) + Counter(live=2, attack=6)
    for i, (rel, _) in enumerate(names):
        camera = "android" if "_android_" in rel else "laptop"
        write_video(data / f"{rel}{_CAMERAS[camera]}", media, frames=frames, seed=i, photo=photo)
        if faces:
            _write_face(data / f"{rel}.face", frames)
    return {"videos": len(names), "by_split": {k: dict(v) for k, v in by_split.items()},
            "by_attack": dict(Counter(attack for _, attack in names))}
