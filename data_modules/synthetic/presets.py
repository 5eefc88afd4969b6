"""Generation presets: how much of each release ``fasvlm synth --preset NAME`` writes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CelebaSpec", "ReplaySpec", "OuluSpec", "Preset", "PRESETS", "get_preset"]

# Replay-Attack's five attack kinds: (attack device, sample device, sample type)
REPLAY_KINDS: tuple[tuple[str, str, str], ...] = (
    ("print", "highdef", "photo"),
    ("mobile", "mobile", "photo"),
    ("mobile", "mobile", "video"),
    ("highdef", "highdef", "photo"),
    ("highdef", "highdef", "video"),
)


@dataclass(frozen=True)
class CelebaSpec:
    """One domain written in the CelebA-Spoof layout at ``<out>/<domain>``."""

    domain: str
    train: int  # images in Data/train
    test: int  # images in Data/test
    per_subject: int = 10  # images per subject folder
    size: int = 128  # stored image size (square)


@dataclass(frozen=True)
class ReplaySpec:
    """Idiap Replay-Attack at ``<out>/replay_attack`` (client ids from the official split lists)."""

    clients: dict[str, tuple[int, ...]]  # split (train/devel/test) -> client ids
    lights: tuple[str, ...] = ("controlled", "adverse")
    takes: tuple[int, ...] = (1, 2)
    kinds: tuple[tuple[str, str, str], ...] = REPLAY_KINDS
    supports: tuple[str, ...] = ("fixed", "hand")
    frames: int = 20
    size: tuple[int, int] = (320, 240)  # width, height
    fps: int = 25


@dataclass(frozen=True)
class OuluSpec:
    """OULU-NPU at ``<out>/oulu_npu`` (users: train 1-20, dev 21-35, test 36-55)."""

    users: dict[str, tuple[int, ...]]  # Train/Dev/Test -> user ids
    phones: tuple[int, ...] = (1, 2)
    sessions: tuple[int, ...] = (1, 2, 3)
    files: tuple[int, ...] = (1, 2, 3, 4, 5)
    frames: int = 20
    size: tuple[int, int] = (180, 320)  # width, height (portrait, like the phones' 1080x1920)
    fps: int = 30


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    celeba: tuple[CelebaSpec, ...]
    replay: ReplaySpec | None
    oulu: OuluSpec | None

    @property
    def n_images(self) -> int:
        return sum(c.train + c.test for c in self.celeba)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "quickstart",
            "~2,000 images (source + two shifted domains in the CelebA-Spoof layout) and small video releases",
            celeba=(
                CelebaSpec("celeba_spoof", train=1300, test=350),
                CelebaSpec("synth_lowlight", train=0, test=180, per_subject=6),
                CelebaSpec("synth_phonecam", train=0, test=180, per_subject=6),
            ),
            replay=ReplaySpec(clients={"train": (1,), "devel": (3,), "test": (9, 13)}, frames=20),
            oulu=OuluSpec(users={"Train": (1,), "Dev": (21,), "Test": (36, 37)}, phones=(1, 4), frames=16),
        ),
        Preset(
            "tiny",
            "a few dozen images/videos per layout, for tests (seconds)",
            celeba=(
                CelebaSpec("celeba_spoof", train=24, test=16, per_subject=4),
                CelebaSpec("synth_lowlight", train=0, test=8, per_subject=4),
                CelebaSpec("synth_phonecam", train=0, test=8, per_subject=4),
            ),
            replay=ReplaySpec(
                clients={"train": (1,), "devel": (3,), "test": (9,)},
                lights=("controlled",),
                takes=(1,),
                kinds=(REPLAY_KINDS[0], REPLAY_KINDS[4]),
                frames=8,
            ),
            oulu=OuluSpec(
                users={"Train": (1,), "Dev": (21,), "Test": (36,)},
                phones=(1,),
                sessions=(1, 3),
                files=(1, 2, 4),
                frames=8,
            ),
        ),
        Preset(
            "pretrain",
            "~2,400 image-caption pairs (domain synth_pretrain) for pretraining a tiny CLIP; use its own --out",
            celeba=(CelebaSpec("synth_pretrain", train=2100, test=300),),
            replay=None,
            oulu=None,
        ),
        Preset(
            "small",
            "~8,000 images and fuller video releases, for longer CPU experiments",
            celeba=(
                CelebaSpec("celeba_spoof", train=5600, test=1400),
                CelebaSpec("synth_lowlight", train=0, test=500, per_subject=6),
                CelebaSpec("synth_phonecam", train=0, test=500, per_subject=6),
            ),
            replay=ReplaySpec(clients={"train": (1, 2, 4, 6), "devel": (3, 5, 10), "test": (9, 11, 13, 14)}),
            oulu=OuluSpec(
                users={"Train": (1, 2, 3, 4), "Dev": (21, 22, 23), "Test": (36, 37, 38, 39)}, phones=(1, 2, 4)
            ),
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown synthetic preset {name!r}; valid names: {', '.join(PRESETS)}")
    return PRESETS[name]
