"""Image transforms: face crop, seeded augmentation, resize and normalisation from the model's image spec.

Normalisation and size come from the model (``system.image_spec``: CLIP mean/std for CLIP encoders), never hard-coded
ImageNet statistics (the published InstructFLIP code normalised CLIP inputs with ImageNet statistics: not repeated).
Augmentation draws from a ``numpy.random.Generator`` seeded per sample by the sampler, so an interrupted and resumed
run sees the same augmented images (exact resume).

No torchvision: on CPU-only torch the available torchvision build is CUDA-only (see README); PIL and torch suffice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance

__all__ = ["CLIP_MEAN", "CLIP_STD", "ImageSpec", "FaceTransform", "color_jitter", "square_box",
           "estimate_camera_quality"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageSpec:
    """What the transforms need from a vision backbone: input size and normalisation (``system.image_spec``)."""

    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


def square_box(box: tuple[int, int, int, int] | None, width: int, height: int, margin: float) -> tuple[float, ...]:
    """A square (x1, y1, x2, y2) around a face box enlarged by ``margin`` (fraction of its size); whole image if None.

    The square may extend past the border: PIL pads with black, as face-alignment crops usually do.
    """
    if box is None:
        side = min(width, height)
        cx, cy = width / 2.0, height / 2.0
    else:
        x, y, w, h = box
        side = max(w, h) * (1.0 + margin)
        cx, cy = x + w / 2.0, y + h / 2.0
    return (cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0)


def color_jitter(image: Image.Image, brightness: float, contrast: float, saturation: float,
                 rng: np.random.Generator) -> Image.Image:
    """torchvision ``ColorJitter(brightness, contrast, saturation, hue=0)`` on a PIL image, without torchvision.

    As torchvision's PIL path: the three adjustments run in a random order, each with a factor drawn uniformly from
    ``[max(0, 1 - v), 1 + v]`` (a value of 0 skips it), through ``PIL.ImageEnhance`` ``Brightness`` (blend with
    black), ``Contrast`` (blend with the mean grey level) and ``Color`` (blend with the greyscale image). The
    published InstructFLIP training transform uses ``ColorJitter(0.2, 0.2, 0.2, 0)``. Draws come from ``rng``.
    """
    ops = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    amounts = (brightness, contrast, saturation)
    for i in rng.permutation(3):
        if amounts[i] > 0:
            factor = float(rng.uniform(max(0.0, 1.0 - amounts[i]), 1.0 + amounts[i]))
            image = ops[i](image).enhance(factor)
    return image


class FaceTransform:
    """Crop the face (box + margin), augment (train only), resize to ``size`` and normalise.

    Train augmentation is deliberately mild: a small shift/scale jitter of the crop and a horizontal flip. Colour
    jitter is off by default because colour gamut and gamma are themselves spoof cues (prints, screens);
    ``color_jitter=(0.2, 0.2, 0.2)`` gives the published InstructFLIP's ``ColorJitter(0.2, 0.2, 0.2, 0)``.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], *, train: bool = False,
                 margin: float = 0.2, jitter: float = 0.08, flip: bool = True,
                 color_jitter: tuple[float, float, float] | None = None):
        self.size, self.train, self.margin, self.jitter, self.flip = int(size), train, margin, jitter, flip
        if color_jitter is not None and (len(color_jitter) != 3 or min(color_jitter) < 0):
            raise ValueError(f"color_jitter is (brightness, contrast, saturation) >= 0, got {color_jitter}")
        self.color_jitter = tuple(color_jitter) if color_jitter is not None else None
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image, box: tuple[int, int, int, int] | None,
                 rng: np.random.Generator | None = None) -> torch.Tensor:
        image = image.convert("RGB")
        x1, y1, x2, y2 = square_box(box, image.width, image.height, self.margin)
        if self.train and rng is not None and self.jitter > 0:
            side = x2 - x1
            dx, dy = rng.uniform(-self.jitter, self.jitter, size=2) * side
            s = 1.0 + rng.uniform(-self.jitter, self.jitter)
            cx, cy = (x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy
            x1, y1, x2, y2 = cx - side * s / 2, cy - side * s / 2, cx + side * s / 2, cy + side * s / 2
        crop = image.resize((self.size, self.size), Image.BICUBIC, box=(x1, y1, x2, y2)) if _inside(
            (x1, y1, x2, y2), image) else image.crop(tuple(round(v) for v in (x1, y1, x2, y2))).resize(
            (self.size, self.size), Image.BICUBIC)
        if self.train and self.color_jitter is not None and rng is not None:
            crop = color_jitter(crop, *self.color_jitter, rng)
        arr = np.asarray(crop, dtype=np.float32) / 255.0  # (S, S, 3)
        if self.train and self.flip and rng is not None and rng.random() < 0.5:
            arr = arr[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)  # (3, S, S)
        return (tensor - self.mean) / self.std


def _inside(box, image: Image.Image) -> bool:
    x1, y1, x2, y2 = box
    return x1 >= 0 and y1 >= 0 and x2 <= image.width and y2 <= image.height


# Thresholds of the image-based camera-quality rule (variance of the Laplacian of the grey face crop at 128 px).
QUALITY_THRESHOLDS = (60.0, 250.0)


def estimate_camera_quality(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> str:
    """Image-based fallback for CelebA-Spoof camera quality (images outside the protocol-2 sensor lists).

    Rule: crop the face (or the whole image), convert to grey, resize to 128x128, and take the variance of its
    4-neighbour Laplacian (a standard sharpness measure: low-quality sensors blur, denoise and compress away fine
    detail). ``< 60`` is "low", ``< 250`` "medium", else "high" (0-255 grey levels). It is a heuristic: the published
    code's quality labels came from an unreleased file; the protocol-2 lists are the authority where they exist.
    """
    if box is not None:
        x, y, w, h = box
        image = image.crop((x, y, x + w, y + h))
    grey = np.asarray(image.convert("L").resize((128, 128), Image.BILINEAR), dtype=np.float32)
    lap = (-4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:])
    var = float(lap.var())
    low, mid = QUALITY_THRESHOLDS
    return "low" if var < low else "medium" if var < mid else "high"
