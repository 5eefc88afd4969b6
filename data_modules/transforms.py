"""Image transforms: face crop, seeded augmentation, resize and normalisation from the model's image spec.

Normalisation and size come from the model (``system.image_spec``: CLIP mean/std for CLIP encoders), never hard-coded
ImageNet statistics (the published InstructFLIP code normalised CLIP inputs with ImageNet statistics: not repeated).
Augmentation draws from a ``numpy.random.Generator`` seeded per sample by the sampler, so an interrupted and resumed
run sees the same augmented images (exact resume).

Two placements of the same transform (issue 20):

- :class:`FaceTransform`: everything in the loader worker (PIL crop/resize, colour jitter, flip, float32 normalised
  tensor). ``fasvlm predict`` and ``FASDataModule(device_transforms=False)`` use it.
- :class:`FaceCarrier` (worker) + :class:`DeviceTransform` (device, per batch): the worker decodes (JPEG at reduced
  scale where the source is larger than needed), cuts a uint8 ``carrier`` image around the face and draws the
  per-sample augmentation parameters from the sample's seed (the same draws, in the same order, as
  :class:`FaceTransform`); the device resamples the (jittered) face window, flips, colour-jitters and normalises the
  whole batch. Crops stored by ``fasvlm prepare`` at training size with the jitter margin (``--pad``) are carriers
  already: the worker only decodes them.

No torchvision: on CPU-only torch the available torchvision build is CUDA-only (see README); PIL and torch suffice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance

from .faces import CROP_JITTER, padded_size

__all__ = ["CLIP_MEAN", "CLIP_STD", "ImageSpec", "FaceTransform", "FaceCarrier", "DeviceTransform", "AugmentParams",
           "color_jitter", "square_box", "carrier_size", "estimate_camera_quality", "PARAMS", "resample_weights"]

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
    """Crop the face (box + margin), augment (train only), resize to ``size`` and normalise, all on the CPU.

    Train augmentation is deliberately mild: a small shift/scale jitter of the crop and a horizontal flip. Colour
    jitter is off by default because colour gamut and gamma are themselves spoof cues (prints, screens);
    ``color_jitter=(0.2, 0.2, 0.2)`` gives the published InstructFLIP's ``ColorJitter(0.2, 0.2, 0.2, 0)``.
    The three stages (:meth:`crop`, :meth:`colour`, :meth:`to_tensor`) are public so that ``fasvlm bench --data``
    times the code that runs.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], *, train: bool = False,
                 margin: float = 0.2, jitter: float = CROP_JITTER, flip: bool = True,
                 color_jitter: tuple[float, float, float] | None = None):
        self.size, self.train, self.margin, self.jitter, self.flip = int(size), train, margin, jitter, flip
        self.color_jitter = _check_color_jitter(color_jitter)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image, box: tuple[int, int, int, int] | None,
                 rng: np.random.Generator | None = None) -> torch.Tensor:
        crop = self.crop(image, box, rng)
        return self.to_tensor(self.colour(crop, rng), rng)

    def pixels(self, image: Image.Image, box, rng: np.random.Generator | None = None, *,
               draft: bool = True) -> dict[str, torch.Tensor]:
        """A dataset item's pixel fields: ``pixel_values`` float32 (3, S, S), normalised (``draft`` is unused)."""
        image.load()
        return {"pixel_values": self(image, box, rng)}

    def crop(self, image: Image.Image, box: tuple[int, int, int, int] | None,
             rng: np.random.Generator | None = None) -> Image.Image:
        """The (jittered) square face window resized to ``size`` (PIL bicubic; black where it leaves the image)."""
        image = image.convert("RGB")
        window = square_box(box, image.width, image.height, self.margin)
        if self.train and rng is not None and self.jitter > 0:
            window = _jittered(window, *_draw_geometry(rng, self.jitter))
        return _resize_window(image, window, self.size)

    def colour(self, crop: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        if self.train and self.color_jitter is not None and rng is not None:
            crop = color_jitter(crop, *self.color_jitter, rng)
        return crop

    def to_tensor(self, crop: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Flip (train) and normalise: (S, S) RGB -> float32 (3, S, S)."""
        arr = np.asarray(crop, dtype=np.float32) / 255.0  # (S, S, 3)
        if self.train and self.flip and rng is not None and rng.random() < 0.5:
            arr = arr[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)  # (3, S, S)
        return (tensor - self.mean) / self.std


def _check_color_jitter(value) -> tuple[float, float, float] | None:
    if value is not None and (len(value) != 3 or min(value) < 0):
        raise ValueError(f"color_jitter is (brightness, contrast, saturation) >= 0, got {value}")
    return tuple(float(v) for v in value) if value is not None else None


def _draw_geometry(rng: np.random.Generator, jitter: float) -> tuple[float, float, float]:
    """Shift (dx, dy, fractions of the window side) and scale of the crop jitter; the first draws of a sample."""
    dx, dy = rng.uniform(-jitter, jitter, size=2)
    return float(dx), float(dy), 1.0 + float(rng.uniform(-jitter, jitter))


def _jittered(window, dx: float, dy: float, s: float) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = window
    side = x2 - x1
    cx, cy = (x1 + x2) / 2 + dx * side, (y1 + y2) / 2 + dy * side
    return cx - side * s / 2, cy - side * s / 2, cx + side * s / 2, cy + side * s / 2


def _resize_window(image: Image.Image, window, size: int) -> Image.Image:
    """``window`` (x1, y1, x2, y2) of ``image`` resized to ``size`` x ``size`` (bicubic); outside: black."""
    if _inside(window, image):
        return image.resize((size, size), Image.BICUBIC, box=window)
    return image.crop(tuple(round(v) for v in window)).resize((size, size), Image.BICUBIC)


def _inside(box, image: Image.Image) -> bool:
    x1, y1, x2, y2 = box
    return x1 >= 0 and y1 >= 0 and x2 <= image.width and y2 <= image.height


# ---------------------------------------------------------------------------------------------------------------------
# the transform split between loader workers (FaceCarrier) and the device (DeviceTransform)

# Per-sample augmentation parameters carried in the batch (``pixel_params`` float32 (B, 10)), in carrier pixels:
# window centre x, y and side; flip (0/1); the order of the colour operations (a permutation of 0 brightness,
# 1 contrast, 2 saturation); their factors (1 = unchanged).
PARAMS = ("cx", "cy", "side", "flip", "order0", "order1", "order2", "brightness", "contrast", "saturation")


# Reduced-scale JPEG decoding keeps at least this many times the output size across the face window, so the bicubic
# resize after it still downscales by 2x or more and its antialiasing matches the full-resolution decode's closely
# (libjpeg's DCT scaling acts as a box prefilter; the two differ in the top octave, which that resize removes).
DRAFT_KEEP = 2


def carrier_size(size: int, jitter: float = CROP_JITTER) -> int:
    """Side of the uint8 image a worker hands over: ``size`` plus, on each side, room for the largest jittered
    window (shift ``jitter`` + half the scale change ``jitter / 2`` of the side: ``1.5 * jitter * size``). ``fasvlm
    prepare --pad 0.12`` stores crops of exactly this side for the default jitter 0.08."""
    return padded_size(size, 1.5 * jitter)


@dataclass(frozen=True)
class AugmentParams:
    """One sample's augmentation, drawn from its seed in :class:`FaceTransform`'s order (shift/scale, colour, flip)."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    order: tuple[int, int, int] = (0, 1, 2)
    factors: tuple[float, float, float] = (1.0, 1.0, 1.0)
    flip: bool = False

    @classmethod
    def draw(cls, rng: np.random.Generator | None, *, jitter: float, flip: bool,
             color_jitter: tuple[float, float, float] | None) -> AugmentParams:
        if rng is None:
            return cls()
        dx, dy, scale = _draw_geometry(rng, jitter) if jitter > 0 else (0.0, 0.0, 1.0)
        order, factors = (0, 1, 2), [1.0, 1.0, 1.0]
        if color_jitter is not None:  # as color_jitter(): a random order, one factor per non-zero amount
            order = tuple(int(i) for i in rng.permutation(3))
            for i in order:
                if color_jitter[i] > 0:
                    factors[i] = float(rng.uniform(max(0.0, 1.0 - color_jitter[i]), 1.0 + color_jitter[i]))
        flipped = bool(flip and rng.random() < 0.5)
        return cls(dx, dy, scale, order, tuple(factors), flipped)


class FaceCarrier:
    """Loader-worker half of the transform: decode, cut the carrier, draw the augmentation; uint8 out.

    ``sample(image, box, rng)`` returns ``(carrier, params)``: ``carrier`` uint8 (C, C, 3) with ``C =
    carrier_size(size, jitter)``, ``params`` float32 (10,) laid out as :data:`PARAMS`. Two paths:

    - **stored at training scale** (the image is C x C and the face window is within 10% of ``size``, as ``fasvlm
      prepare --pad`` writes it): the decoded image is the carrier; the (jittered) face window travels as
      parameters and the device resamples it. No resampling on the worker.
    - **any other image**: the (jittered) window is resized to ``size`` with PIL bicubic exactly as
      :class:`FaceTransform` does, and pasted at the centre of a black C x C carrier (the window parameters are then
      the identity, which the device applies as a slice). JPEGs whose face window is at least ``2 * DRAFT_KEEP``
      times ``size`` are decoded at reduced scale first (``Image.draft``: libjpeg's DCT scaling by 1/2, 1/4 or 1/8,
      keeping at least ``DRAFT_KEEP * size`` pixels across the window).

    Flip, colour jitter and normalisation happen on the device (:class:`DeviceTransform`), from ``params``.
    """

    def __init__(self, size: int, *, train: bool = False, margin: float = 0.2, jitter: float = CROP_JITTER,
                 flip: bool = True, color_jitter: tuple[float, float, float] | None = None, draft: bool = True):
        self.size, self.train, self.margin, self.jitter, self.flip = int(size), train, margin, jitter, flip
        self.color_jitter = _check_color_jitter(color_jitter)
        self.draft = draft
        self.carrier = carrier_size(self.size, jitter)

    def pixels(self, image: Image.Image, box, rng: np.random.Generator | None = None, *,
               draft: bool = True) -> dict[str, torch.Tensor]:
        """A dataset item's pixel fields: ``pixel_values`` uint8 (C, C, 3) and ``pixel_params`` float32 (10,)."""
        carrier, params = self.sample(image, box, rng, draft=draft)
        return {"pixel_values": torch.from_numpy(carrier), "pixel_params": torch.from_numpy(params)}

    def augment(self, rng: np.random.Generator | None) -> AugmentParams:
        if not self.train:
            return AugmentParams()
        return AugmentParams.draw(rng, jitter=self.jitter, flip=self.flip, color_jitter=self.color_jitter)

    def sample(self, image: Image.Image, box: tuple[int, int, int, int] | None,
               rng: np.random.Generator | None = None, *, draft: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``image`` opened but not yet loaded (so that a large JPEG can be decoded at reduced scale); ``box`` in its
        pixels. ``draft=False`` forces a full decode (e.g. when the caller reads the full image afterwards)."""
        aug = self.augment(rng)
        image, window = self.decode(image, box, aug, draft=draft)
        return self.cut(image, window, aug)

    def decode(self, image: Image.Image, box, aug: AugmentParams, *, draft: bool = True):
        """Decode ``image`` (reduced scale where allowed and useful); returns it (RGB) and the jittered face window
        in its pixels."""
        width, height = image.size
        window = square_box(box, width, height, self.margin)
        if (aug.dx, aug.dy, aug.scale) != (0.0, 0.0, 1.0):
            window = _jittered(window, aug.dx, aug.dy, aug.scale)
        side = window[2] - window[0]
        if (self.draft and draft and image.format == "JPEG" and side >= 2 * DRAFT_KEEP * self.size
                and image.size != (self.carrier, self.carrier)):
            f = DRAFT_KEEP * self.size / side  # keep at least DRAFT_KEEP x size pixels across the window
            image.draft("RGB", (math.ceil(width * f), math.ceil(height * f)))
            k = width / image.size[0]
            if k > 1:
                k = float(2 ** round(math.log2(k)))  # libjpeg scales by 1/2, 1/4 or 1/8 (sizes rounded up)
                window = tuple(v / k for v in window)
        image.load()
        return (image if image.mode == "RGB" else image.convert("RGB")), window

    def cut(self, image: Image.Image, window, aug: AugmentParams) -> tuple[np.ndarray, np.ndarray]:
        """(carrier uint8 (C, C, 3), params float32 (10,)) from the decoded image and the jittered window."""
        c, s = self.carrier, self.size
        side = window[2] - window[0]
        if image.size == (c, c) and 0.9 <= side / (s * aug.scale) <= 1.1:
            carrier = np.array(image)  # (C, C, 3), writable
            cx, cy = (window[0] + window[2]) / 2, (window[1] + window[3]) / 2
        else:
            carrier = np.zeros((c, c, 3), dtype=np.uint8)
            e = (c - s) // 2
            carrier[e:e + s, e:e + s] = np.asarray(_resize_window(image, window, s))
            cx = cy = c / 2
            side = float(s)
        params = np.array([cx, cy, side, float(aug.flip), *aug.order, *aug.factors], dtype=np.float32)
        return carrier, params


class DeviceTransform:
    """Device half of the transform, per batch: window resampling, flip, colour jitter, normalisation.

    ``pixels`` uint8 (B, C, C, 3) and ``params`` float32 (B, 10) (:data:`PARAMS`) -> float32 (B, 3, S, S)
    normalised. Windows equal to the carrier's centre at scale 1 are sliced (exact). Others are resampled as Pillow's
    ``Image.resize(BICUBIC, box=window)`` resamples (the worker-side path's filter): separable bicubic (a = -0.5)
    with the kernel widened by the downscale factor (antialiasing) and its weights renormalised at the carrier's
    border, here as two batched matrix products in float32, clipped to [0, 1] after each pass as Pillow clips
    (Pillow also rounds to 8 bits after each pass: the results differ by at most about one grey level). Colour jitter follows torchvision's tensor definitions (brightness: blend with
    black; contrast: with the mean grey level; saturation: with the grey image), in each sample's drawn order.
    Deterministic given its inputs, so exact resume holds.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]):
        self.size = int(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, pixels: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        b, c = pixels.shape[0], pixels.shape[1]
        s, device = self.size, pixels.device
        params = params.to(device=device, dtype=torch.float32)
        x = pixels.permute(0, 3, 1, 2).float() / 255.0  # (B, C, C, 3) uint8 -> (B, 3, C, C) in [0, 1]
        e = (c - s) // 2
        out = x[:, :, e:e + s, e:e + s]  # (B, 3, S, S): the centre window
        cx, cy, side = params[:, 0], params[:, 1], params[:, 2]
        moved = (cx != c / 2) | (cy != c / 2) | (side != s)
        if bool(moved.any()):
            out = out.clone()
            idx = moved.nonzero().squeeze(1)
            wx = resample_weights(cx[idx] - side[idx] / 2, side[idx], c, s)  # (n, S, C)
            wy = resample_weights(cy[idx] - side[idx] / 2, side[idx], c, s)  # (n, S, C)
            rows = (x[idx] @ wx.transpose(1, 2).unsqueeze(1)).clamp_(0.0, 1.0)  # (n, 3, C, C) -> (n, 3, C, S)
            out[idx] = (wy.unsqueeze(1) @ rows).clamp_(0.0, 1.0)  # (n, 3, S, S)
        flip = params[:, 3] > 0.5
        if bool(flip.any()):
            out = torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out)
        factors = params[:, 7:10]
        if bool((factors != 1.0).any()):
            out = _colour_jitter(out, params[:, 4:7].long(), factors)
        return (out - self.mean.to(device)) / self.std.to(device)


def _bicubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Pillow's bicubic kernel (Keys, a = -0.5)."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def resample_weights(start: torch.Tensor, length: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """(n, size_out, size_in) float32 weights of Pillow's bicubic resampling (``precompute_coeffs`` in its
    Resample.c) of the spans ``[start, start + length)`` (pixel-edge coordinates, one span per row of the batch) to
    ``size_out`` pixels: zero beyond the kernel's support, renormalised where it leaves the input.

    Dense matrices: on a GPU two batched matrix products are the cheapest way to apply per-sample windows; on a CPU
    they cost about 0.4 GFLOP per 224 px image (docs/data_path.md)."""
    start, length = start.to(torch.float64), length.to(torch.float64)
    scale = (length / size_out).view(-1, 1, 1)  # input pixels per output pixel
    filterscale = scale.clamp(min=1.0)  # the kernel widens when downscaling (antialiasing)
    j = torch.arange(size_out, dtype=torch.float64, device=start.device).view(1, -1, 1)
    i = torch.arange(size_in, dtype=torch.float64, device=start.device).view(1, 1, -1)
    center = start.view(-1, 1, 1) + (j + 0.5) * scale
    w = _bicubic((i + 0.5 - center) / filterscale)  # zero beyond the support 2 * filterscale
    total = w.sum(-1, keepdim=True)
    return (w / torch.where(total == 0, torch.ones_like(total), total)).float()


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W), ITU-R 601-2 luma as torchvision's rgb_to_grayscale."""
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _colour_jitter(x: torch.Tensor, order: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness / contrast / saturation with per-sample factors (B, 3), applied in per-sample ``order`` (B, 3)."""
    b = x.shape[0]
    for position in range(3):
        for op in range(3):
            f = torch.where(order[:, position] == op, factors[:, op], torch.ones_like(factors[:, op]))
            if bool((f == 1.0).all()):
                continue
            f = f.view(b, 1, 1, 1)
            if op == 0:
                other = torch.zeros_like(x)
            elif op == 1:
                other = _grey(x).mean(dim=(-3, -2, -1), keepdim=True).expand_as(x)
            else:
                other = _grey(x).expand_as(x)
            x = (f * x + (1.0 - f) * other).clamp_(0.0, 1.0)
    return x


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
