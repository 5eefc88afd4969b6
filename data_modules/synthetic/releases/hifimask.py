"""A small fake HiFiMask crop release in the official naming (see ``adapters/hifimask.py``).

``Data/<Skin>_<Subject>_<Type>_<Scene>_<Light>_<Sensor>/0000.png ...`` for subjects of the P1 train, dev and test
groups, every Type (live, transparent, plaster, resin) under a few scene/light/sensor settings (some inside and some
outside the P3 training filter). With ``lists=True`` liuajian's P1 video lists (``0 = live``) are written to
``protocol/``; ``p2_1_list=True`` adds a P2.1 train list that leaves one video out (to show lists win over the
derivation). ``p3_lists=True`` writes the three P3 lists in the official form: live, plaster and resin of the
P1 groups, but the transparent masks of only the first subject of the train and dev groups (the real P3 keeps them
for 15 of 45 train and 3 of 6 dev subjects), so no attribute filter reproduces it. ``challenge=True`` adds the challenge layout (``train/<name>``, an anonymised ``val/0000``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["make_release", "SETTINGS"]

# (scene, light, sensor): the first two pass the P3 training filter, the last two do not
SETTINGS = ((1, 1, 1), (4, 0, 3), (2, 2, 8), (6, 5, 6))


def _write_image(path: Path, media: str, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if media == "real":
        from PIL import Image

        value = (53 * seed) % 256
        Image.new("RGB", (8, 8), (value, 200, 255 - value)).save(path, format="PNG")
    else:
        path.write_bytes(b"hifi")


def make_release(
    root: Path,
    *,
    subjects: int = 2,
    groups: dict[str, tuple[int, ...]] | None = None,
    frames: int = 2,
    media: str = "placeholder",
    lists: bool = True,
    p2_1_list: bool = False,
    p3_lists: bool = False,
    challenge: bool = False,
) -> dict:
    """Write the release under ``root``; return ``videos`` as {name: (list split, type, scene, light, sensor)} etc.

    ``subjects`` subjects in each P1 group (train, dev, test), or explicit subject numbers per group in ``groups``.
    """
    if media not in ("placeholder", "real"):
        raise ValueError(f"media must be 'placeholder' or 'real', got {media!r}")
    root = Path(root)
    if groups is None:
        groups = {g: tuple(1 + 10 * i + k for k in range(subjects)) for i, g in enumerate(("train", "dev", "test"))}
    videos: dict[str, tuple] = {}
    seed = 0
    for split, subject_ids in groups.items():
        for subject in subject_ids:
            skin = 1 + subject % 3
            for type_id in range(4):
                for scene, light, sensor in SETTINGS:
                    name = f"{skin}_{subject:02d}_{type_id}_{scene}_{light}_{sensor}"
                    for f in range(frames):
                        _write_image(root / "Data" / name / f"{f:04d}.png", media, seed + f)
                    videos[name] = (split, type_id, scene, light, sensor)
                    seed += 1
    if lists:
        proto = root / "protocol"
        proto.mkdir(parents=True, exist_ok=True)
        for split in ("train", "dev", "test"):
            lines = [f"CASIA_HiFiMask/Data/{n} {int(v[1] != 0)}" for n, v in videos.items() if v[0] == split]
            (proto / f"CASIA_HiFiMask@p1_video_{split}.txt").write_text("\n".join(lines) + "\n")
    left_out = None
    if p2_1_list:
        train = [n for n, v in videos.items() if v[0] == "train" and v[1] != 1]
        left_out = train.pop()
        (root / "protocol" / "CASIA_HiFiMask@p2.1_video_train.txt").write_text(
            "\n".join(f"CASIA_HiFiMask/Data/{n} 0" for n in train) + "\n"
        )
    p3: dict[str, str] = {}
    if p3_lists:
        first = {g: ids[0] for g, ids in groups.items() if ids}
        for name, (split, type_id, *_rest) in videos.items():
            subject = int(name.split("_")[1])
            if type_id != 1 or split == "test" or subject == first[split]:
                p3[name] = split
        for split in ("train", "dev", "test"):
            (root / "protocol" / f"CASIA_HiFiMask@p3_video_{split}.txt").write_text(
                "".join(f"CASIA_HiFiMask/Data/{n} {int(videos[n][1] != 0)}\n" for n, s in p3.items() if s == split)
            )
    challenge_videos = []
    if challenge:
        for name in ("1_40_0_1_1_1", "2_41_3_4_0_2"):
            for f in range(frames):
                _write_image(root / "train" / name / f"{f:04d}.png", media, f)
            challenge_videos.append(name)
        _write_image(root / "val" / "0000" / "0001.png", media, 0)
        (root / "train_label.txt").write_text(
            "".join(
                f"train/{n}/{f:04d}.png {int(n.split('_')[2] == '0')}\n"
                for n in challenge_videos
                for f in range(frames)
            )
        )
        (root / "val_label.txt").write_text("val/0000/0001.png 1\n")
    return {
        "videos": videos,
        "frames": frames,
        "records": (len(videos) + len(challenge_videos)) * frames,
        "challenge_videos": challenge_videos,
        "p2_1_left_out": left_out,
        "p3": p3,
        "unknown": 1 if challenge else 0,
    }
