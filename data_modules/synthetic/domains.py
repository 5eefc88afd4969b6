"""Synthetic domains: distributions of capture conditions and attacks.

Each domain draws illumination, environment, camera quality, attack type and cue strength from its own
distribution and adds its own camera bias (:class:`~.scene.CameraProfile`), so training on one and testing on
another is a real (if small) domain shift:

``celeba_spoof``   the source domain: every condition, every attack type, neutral cameras.
``synth_lowlight`` dark and back-lit scenes, mostly low-quality cameras with warm casts, heavy noise and vignetting.
``synth_phonecam`` a phone camera: green-ish cast, soft optics, oversharpening halos, strong JPEG, punchy saturation,
                   faces closer to the lens.
``synth_pretrain`` broad conditions, every attack type, cue strength from faint to strong, neutral cameras: image-text
                   pairs for pretraining a tiny CLIP (``conf/clip/tiny_pretrain.yaml``), a stand-in for the web data
                   a real CLIP has seen. Its identities are disjoint from every other domain's (subject seeds are
                   drawn per domain), and no model is evaluated on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..taxonomy import CELEBA_SPOOF_TYPES
from .scene import CameraProfile

__all__ = ["Domain", "DOMAINS", "get_domain"]

ATTACK_TYPES: tuple[str, ...] = CELEBA_SPOOF_TYPES[1:]


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    illumination: dict[str, float]
    environment: dict[str, float]
    quality: dict[str, float]
    live_fraction: float = 0.35
    attack_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ATTACK_TYPES, 1.0))
    strength: tuple[float, float] = (0.4, 1.0)
    profile: CameraProfile = CameraProfile()
    face_scale: tuple[float, float] = (0.42, 0.62)

    def draw(self, what: str, rng: np.random.Generator) -> str:
        table = {"illumination": self.illumination, "environment": self.environment, "quality": self.quality}[what]
        names = list(table)
        p = np.asarray([table[n] for n in names], np.float64)
        return names[int(rng.choice(len(names), p=p / p.sum()))]


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain(
            "celeba_spoof",
            "source domain: all illuminations, environments, camera qualities and the 10 attack types",
            illumination={"normal": 0.4, "strong": 0.2, "back": 0.2, "dark": 0.2},
            environment={"indoor": 0.6, "outdoor": 0.4},
            quality={"low": 0.3, "medium": 0.4, "high": 0.3},
            strength=(0.65, 1.0),
        ),
        Domain(
            "synth_lowlight",
            "dark/back-lit scenes, low-quality cameras: warm cast, heavy noise, vignetting",
            illumination={"dark": 0.55, "back": 0.45},
            environment={"indoor": 0.75, "outdoor": 0.25},
            quality={"low": 0.7, "medium": 0.3},
            live_fraction=0.4,
            profile=CameraProfile(cast=(1.1, 1.0, 0.82), noise_gain=1.4, vignette=0.35, jpeg_shift=-5),
        ),
        Domain(
            "synth_phonecam",
            "phone camera: green-ish cast, soft optics + oversharpening, strong JPEG, saturated, faces close",
            illumination={"normal": 0.45, "strong": 0.35, "back": 0.2},
            environment={"outdoor": 0.6, "indoor": 0.4},
            quality={"medium": 0.5, "high": 0.3, "low": 0.2},
            live_fraction=0.4,
            profile=CameraProfile(
                cast=(0.9, 1.07, 0.93),
                extra_blur=0.9,
                sharpen=0.9,
                noise_gain=1.5,
                jpeg_shift=-15,
                saturation=1.25,
                vignette=0.3,
            ),
            face_scale=(0.5, 0.72),
        ),
        Domain(
            "synth_pretrain",
            "pretraining data for a tiny CLIP: every condition and attack type, faint to strong cues, neutral cameras",
            illumination={"normal": 0.4, "strong": 0.2, "back": 0.2, "dark": 0.2},
            environment={"indoor": 0.5, "outdoor": 0.5},
            quality={"low": 0.3, "medium": 0.4, "high": 0.3},
            strength=(0.4, 1.0),
        ),
    )
}


def get_domain(name: str) -> Domain:
    if name not in DOMAINS:
        raise KeyError(f"unknown synthetic domain {name!r}; valid names: {', '.join(DOMAINS)}")
    return DOMAINS[name]
