"""A fake HKBU-MARs copy (reference notes section 9; the V1+ layout is [R]).

``version="v1+"``: ``real/<SS>/<SS>_<take>.avi`` and ``mask/<maker>/<SS>/<SS>_<take>.avi``, subjects 1-6 wearing
ThatsMyFace masks and 7-12 REAL-f masks (the fake's choice; the real assignment is not documented), ``takes`` videos
each. ``version="v2"``: ``{real,attack}/<SS>/<camera>_<light>_<S>.avi`` for 7 cameras x 6 lights, as in the V2 lists
(the subject in the stem has no leading zero: ``attack/09/01_01_9.avi``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from .replay_attack import write_video

__all__ = ["make_release"]


def make_release(root: Path, *, subjects: Iterable[int] = (1, 2, 7), media: str = "placeholder",
                 version: str = "v1+", takes: int = 2, frames: int = 10) -> dict:
    """Write the copy under ``root``; return ``videos``, ``by_subject`` ({"SS": {"live": n, "attack": n}}) and
    ``by_maker`` (mask maker -> count)."""
    if version not in ("v1+", "v2"):
        raise ValueError(f"version must be 'v1+' or 'v2', got {version!r}")
    root = Path(root)
    rels: list[tuple[str, bool]] = []  # (relative path, live)
    makers: Counter = Counter()
    for subject in subjects:
        ss = f"{subject:02d}"
        if version == "v1+":
            maker = "ThatsMyFace" if subject <= 6 else "REAL-f"
            for take in range(1, takes + 1):
                rels += [(f"real/{ss}/{ss}_{take}.avi", True), (f"mask/{maker}/{ss}/{ss}_{take}.avi", False)]
            makers["thatsmyface" if subject <= 6 else "real-f"] += takes
        else:
            for cls, live in (("real", True), ("attack", False)):
                rels += [(f"{cls}/{ss}/{cam:02d}_{light:02d}_{subject}.avi", live)
                         for cam in range(1, 8) for light in range(1, 7)]
    by_subject: dict[str, Counter] = {}
    for i, (rel, live) in enumerate(rels):
        write_video(root / rel, media, frames=frames, seed=i)
        by_subject.setdefault(rel.split("/")[-2], Counter())["live" if live else "attack"] += 1
    return {"videos": len(rels), "by_subject": {k: dict(v) for k, v in by_subject.items()}, "by_maker": dict(makers)}
