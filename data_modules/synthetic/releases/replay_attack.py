"""A fake Idiap Replay-Attack release in the official layout (reference notes section 3).

Per client: 4 real videos (2 lights x 2 takes) and 20 attacks (2 supports x 5 attack kinds x 2 lights), plus 2 enrolment
videos; ``subjects="all"`` writes the 50 official clients, i.e. the official 60/60/80 real and 300/300/400 attack
videos of train/devel/test. Media are placeholders of a few bytes unless ``media="real"``, which writes tiny decodable
videos; :func:`write_video` is shared by the other fake releases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CLIENTS", "ATTACK_KINDS", "BOX", "make_release", "write_video", "write_face_file"]

CLIENTS: dict[str, tuple[int, ...]] = {
    "train": (1, 2, 4, 6, 7, 8, 12, 16, 18, 25, 27, 103, 105, 108, 110),
    "devel": (3, 5, 10, 15, 17, 22, 29, 30, 101, 111, 113, 114, 116, 118, 119),
}
CLIENTS["test"] = tuple(c for c in (*range(1, 32), *range(101, 120)) if c not in CLIENTS["train"] + CLIENTS["devel"])
# (attack_device, sample_device, sample_type), as in the release's file names
ATTACK_KINDS = (
    ("print", "highdef", "photo"),
    ("mobile", "mobile", "photo"),
    ("mobile", "mobile", "video"),
    ("highdef", "highdef", "photo"),
    ("highdef", "highdef", "video"),
)
LIGHTS = ("controlled", "adverse")
BOX = (18, 10, 28, 30)  # (x, y, w, h) of the fake face in every fake video (64x48 frames)
_TAXONOMY = {"print": "print", "mobile": "phone", "highdef": "pad"}


def write_video(path: Path, media: str = "placeholder", *, frames: int = 10, size: tuple[int, int] = (64, 48),
                box: tuple[int, int, int, int] = BOX, seed: int = 0, photo=None) -> Path:
    """Write a video file: a few placeholder bytes, or with ``media="real"`` ``frames`` decodable frames of ``size``
    (width, height) showing a flat "face" patch at ``box`` on a gradient whose colour depends on ``seed``.
    ``photo`` (an RGB uint8 array, e.g. a real photograph of a face): every frame shows it instead, moved by a pixel
    per frame, at its own size (``size`` and ``box`` are ignored), so that a face detector has a real face to find."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if media == "placeholder":
        path.write_bytes(b"fasvlm placeholder video\n")
        return path
    if media != "real":
        raise ValueError(f"media must be 'placeholder' or 'real', got {media!r}")
    import av
    import numpy as np

    if photo is not None:
        photo = np.ascontiguousarray(np.asarray(photo, dtype=np.uint8)[..., :3])
        height, width = (d - d % 2 for d in photo.shape[:2])  # yuv420p needs even sides
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(frames):
                image = np.roll(photo[:height, :width], (i % 5) - 2, axis=1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path
    width, height = size
    x, y, w, h = box
    base = np.zeros((height, width, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    base[..., 1] = (37 * seed) % 256
    base[..., 2] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = base.copy()
            image[y:y + h, x:x + w] = (200, 160 + 4 * (i % 8), 130)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_face_file(path: Path, frames: int, box: tuple[int, int, int, int] = BOX) -> Path:
    """bob's ``.face`` format, ``frame x y w h`` per line; frame 3 is missing and frame 5 is empty, as in the release.
    Returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{i} 0 0 0 0" if i == 5 else f"{i} {box[0] + i % 3} {box[1]} {box[2]} {box[3]}"
             for i in range(frames) if i != 3]
    path.write_text("\n".join(lines) + "\n")
    return path


def _group(client: int) -> str:
    for group, clients in CLIENTS.items():
        if client in clients:
            return group
    raise ValueError(f"client {client} is not a Replay-Attack client; valid ids: {sorted(sum(CLIENTS.values(), ()))}")


def make_release(root: Path, *, subjects: Iterable[int] | str = (1, 2, 3, 5, 9, 11), media: str = "placeholder",
                 faces: bool = True, enroll: bool = True, frames: int = 10) -> dict:
    """Write the release under ``root`` and return what an index of it must find.

    ``subjects``: client ids, or ``"all"`` for the 50 official clients. Returns ``videos`` (anti-spoofing videos),
    ``by_split`` ({split: {"live": n, "attack": n}} with the release's folder names), ``by_attack`` (taxonomy name ->
    count), ``enroll`` and ``face_files`` counts.
    """
    root = Path(root)
    clients = sorted(sum(CLIENTS.values(), ())) if subjects == "all" else list(subjects)
    by_split: dict[str, Counter] = {}
    by_attack: Counter = Counter()
    rels: list[str] = []
    n_enroll = 0
    for client in clients:
        group = _group(client)
        tag = f"client{client:03d}_session01"
        for light in LIGHTS:
            for take in (1, 2):
                rels.append(f"{group}/real/{tag}_webcam_authenticate_{light}_{take}")
                by_split.setdefault(group, Counter())["live"] += 1
                by_attack["live"] += 1
            for support in ("fixed", "hand"):
                for device, sample_device, sample_type in ATTACK_KINDS:
                    rels.append(f"{group}/attack/{support}/attack_{device}_{tag}_{sample_device}_{sample_type}_{light}")
                    by_split[group]["attack"] += 1
                    by_attack[_TAXONOMY[device]] += 1
            if enroll:
                write_video(root / f"enroll/{group}/{tag}_webcam_enroll_{light}.mov", media, frames=frames, seed=client)
                n_enroll += 1
    for i, rel in enumerate(rels):
        write_video(root / f"{rel}.mov", media, frames=frames, seed=i)
        if faces:
            write_face_file(root / f"face-locations/{rel}.face", frames)
    return {
        "videos": len(rels),
        "by_split": {g: dict(c) for g, c in by_split.items()},
        "by_attack": dict(by_attack),
        "enroll": n_enroll,
        "face_files": len(rels) if faces else 0,
    }
