"""Capture conditions: environments (backgrounds), illuminations and cameras.

- Environment ``indoor`` / ``outdoor`` picks the background: walls, doors, windows, shelves and lamps, or sky, horizon,
  trees and buildings.
- Illumination ``normal`` / ``strong`` / ``back`` / ``dark`` sets the light on the subject (:class:`~.faces.Light`),
  the background gain and the camera's exposure (backlight: bright window or sky behind a dim face; dark: little
  light, high sensor gain, hence noise).
- Camera quality ``low`` / ``medium`` / ``high`` sets the capture pipeline: lens blur, sensor resolution
  (downscale), shot + read noise (with chroma noise on cheap sensors), ISP sharpening, JPEG quality.
- A :class:`CameraProfile` adds a domain's own bias (colour cast, extra blur, oversharpening, noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .faces import Light, fast_normal, lowfreq, noise

__all__ = ["CameraProfile", "Illumination", "render_background", "sample_light", "capture"]


@dataclass(frozen=True)
class CameraProfile:
    """A domain's camera bias on top of the per-image camera quality."""

    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # white-balance gains (R, G, B)
    cast_jitter: float = 0.03
    extra_blur: float = 0.0  # lens blur sigma, in output pixels
    sharpen: float = 0.0  # unsharp-mask amount (phone ISPs oversharpen)
    noise_gain: float = 1.0
    jpeg_shift: int = 0  # added to the quality's JPEG quality
    saturation: float = 1.0
    vignette: float = 0.15


@dataclass(frozen=True)
class Illumination:
    light: Light
    background_gain: float  # multiplies the background's radiance
    exposure: float  # camera exposure applied to the whole scene
    gain: float  # sensor gain (noise multiplier)


def sample_light(illumination: str, environment: str, rng: np.random.Generator) -> Illumination:
    """Light on the subject and exposure for one of the four CelebA-Spoof illumination conditions."""
    az = rng.uniform(-1, 1)
    warm = environment == "indoor"
    key_color = (1.0, 0.93, 0.82) if warm else (1.0, 0.99, 0.97)
    amb_color = (1.0, 0.96, 0.9) if warm else (0.9, 0.95, 1.05)
    if illumination == "normal":
        d = _unit(az * 0.5, rng.uniform(-0.6, -0.2), 0.85)
        light = Light(d, float(rng.uniform(0.5, 0.7)), float(rng.uniform(0.38, 0.5)), key_color, amb_color, 0.1)
        return Illumination(light, float(rng.uniform(0.85, 1.1)), 1.0, 1.0)
    if illumination == "strong":
        d = _unit(np.sign(az) * rng.uniform(0.5, 1.1), rng.uniform(-0.7, -0.2), 0.6)
        light = Light(
            d,
            float(rng.uniform(1.0, 1.35)),
            float(rng.uniform(0.12, 0.25)),
            key_color,
            amb_color,
            0.25,
            hardness=float(rng.uniform(1.5, 2.5)),
        )
        return Illumination(light, float(rng.uniform(1.1, 1.4)), float(rng.uniform(1.05, 1.25)), 0.8)
    if illumination == "back":
        d = _unit(az * 0.4, -0.3, 0.9)
        light = Light(
            d,
            float(rng.uniform(0.1, 0.2)),
            float(rng.uniform(0.28, 0.38)),
            key_color,
            amb_color,
            0.05,
            rim=float(rng.uniform(0.4, 0.8)),
        )
        return Illumination(light, float(rng.uniform(1.7, 2.4)), float(rng.uniform(0.85, 1.0)), 1.3)
    if illumination == "dark":
        d = _unit(az * 0.7, rng.uniform(-0.5, 0.1), 0.8)
        light = Light(
            d, float(rng.uniform(0.3, 0.45)), float(rng.uniform(0.1, 0.18)), (1.0, 0.82, 0.6), (0.85, 0.85, 1.0), 0.08
        )
        return Illumination(light, float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.65, 0.85)), 1.7)
    raise ValueError(f"unknown illumination {illumination!r}; valid: normal, strong, back, dark")


def _unit(x: float, y: float, z: float) -> tuple[float, float, float]:
    n = float(np.sqrt(x * x + y * y + z * z))
    return (x / n, y / n, z / n)


def render_background(
    h: int, w: int, environment: str, rng: np.random.Generator, *, backlit: bool = False
) -> np.ndarray:
    """(H, W, 3) float32 background radiance for ``indoor`` or ``outdoor``; ``backlit`` puts a bright window/sky
    behind the subject."""
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    tex = lowfreq(rng, h, w, 5)
    if environment == "indoor":
        wall = rng.choice(
            np.array(
                [
                    [0.85, 0.8, 0.7],
                    [0.75, 0.75, 0.75],
                    [0.6, 0.68, 0.75],
                    [0.9, 0.88, 0.85],
                    [0.7, 0.6, 0.5],
                    [0.55, 0.6, 0.5],
                ],
                np.float32,
            )
        )
        wall = wall * rng.uniform(0.7, 1.05)
        img = wall * (0.85 + 0.2 * (1 - yy) + 0.04 * tex)[..., None] * np.ones((1, w, 1), np.float32)
        lamp = np.exp(-(((xx - rng.uniform(0, 1)) / 0.35) ** 2 + ((yy - rng.uniform(-0.2, 0.3)) / 0.35) ** 2))
        img = img * (1 + 0.25 * lamp[..., None])
        for _ in range(int(rng.integers(2, 6))):  # doors, shelves, frames, cabinets
            x0, y0 = rng.uniform(-0.1, 0.9), rng.uniform(-0.1, 0.8)
            bw, bh = rng.uniform(0.08, 0.4), rng.uniform(0.08, 0.6)
            col = rng.uniform(0.1, 0.9, 3).astype(np.float32)
            _rect(img, x0, y0, bw, bh, col, h, w)
            if rng.random() < 0.4:  # a picture frame: inner rectangle
                _rect(img, x0 + bw * 0.15, y0 + bh * 0.15, bw * 0.7, bh * 0.7, rng.uniform(0.2, 1.0, 3), h, w)
        if rng.random() < 0.5:  # floor / desk line
            fy = rng.uniform(0.75, 0.95)
            img[int(fy * h) :] = img[int(fy * h) :] * 0.6 + rng.uniform(0.1, 0.5, 3).astype(np.float32) * 0.4
        if backlit:  # a bright window behind the person
            cx = rng.uniform(0.3, 0.7)
            _rect(
                img,
                cx - rng.uniform(0.25, 0.45),
                rng.uniform(-0.1, 0.15),
                rng.uniform(0.5, 0.9),
                rng.uniform(0.6, 0.9),
                np.array([1.15, 1.15, 1.2], np.float32),
                h,
                w,
            )
    elif environment == "outdoor":
        horizon = rng.uniform(0.35, 0.65)
        sky_top = np.array([0.35, 0.55, 0.9], np.float32) * rng.uniform(0.85, 1.1)
        sky_low = np.array([0.85, 0.9, 0.98], np.float32)
        t = np.clip(yy / horizon, 0, 1)[..., None]
        img = (sky_top * (1 - t) + sky_low * t) * np.ones((1, w, 1), np.float32)
        if rng.random() < 0.5:  # clouds
            clouds = np.clip(lowfreq(rng, h, w, 8) - 0.3, 0, 1)[..., None] * (yy < horizon)[..., None]
            img = img + 0.35 * clouds
        ground = rng.choice(np.array([[0.3, 0.5, 0.22], [0.45, 0.45, 0.43], [0.55, 0.48, 0.35]], np.float32))
        g = ground * (0.8 + 0.1 * tex)[..., None]
        img = np.where((yy > horizon)[..., None], g, img)
        for _ in range(int(rng.integers(1, 4))):  # buildings with window grids
            x0, bw = rng.uniform(-0.1, 0.9), rng.uniform(0.12, 0.35)
            top = horizon - rng.uniform(0.1, 0.4)
            col = rng.uniform(0.4, 0.8) * np.array([1.0, 0.97, 0.92], np.float32)
            _rect(img, x0, top, bw, 1.0, col, h, w)
            mask = ((np.floor(xx * w / 5) % 2 == 0) & (np.floor(yy * h / 6) % 2 == 0)).astype(np.float32)
            sel = ((xx > x0 + 0.02) & (xx < x0 + bw - 0.02) & (yy > top + 0.03) & (yy < horizon)).astype(np.float32)
            img = img * (1 - 0.35 * (mask * sel)[..., None])
        for _ in range(int(rng.integers(1, 5))):  # trees: leafy blobs
            cx, cy = rng.uniform(0, 1), horizon - rng.uniform(0.0, 0.25)
            r = rng.uniform(0.06, 0.18)
            blob = (((xx - cx) / r) ** 2 + ((yy - cy) / (r * 1.2)) ** 2 + 0.25 * lowfreq(rng, h, w, 10)) < 1
            leaf = np.array([0.15, 0.35, 0.12], np.float32) * rng.uniform(0.7, 1.3)
            img = np.where(blob[..., None], leaf * (0.85 + 0.15 * tex[..., None]), img)
        if backlit:
            img = img * 1.15 + 0.1
    else:
        raise ValueError(f"unknown environment {environment!r}; valid: indoor, outdoor")
    img = img * (1 + 0.02 * noise(rng, h, w, 1.0)[..., None])
    return img.astype(np.float32)


def _rect(img, x0, y0, bw, bh, col, h, w) -> None:
    ys, ye = int(max(0, y0 * h)), int(min(h, (y0 + bh) * h))
    xs, xe = int(max(0, x0 * w)), int(min(w, (x0 + bw) * w))
    if ye > ys and xe > xs:
        img[ys:ye, xs:xe] = img[ys:ye, xs:xe] * 0.15 + np.asarray(col, np.float32) * 0.85


# camera quality -> (lens blur sigma in output px, sensor scale, read noise, JPEG quality range, sharpen)
_QUALITY = {
    "high": (0.3, 1.0, 0.006, (88, 97), 0.3),
    "medium": (0.7, 0.7, 0.016, (60, 80), 0.2),
    "low": (1.1, 0.45, 0.022, (30, 50), 0.0),
}


def capture(
    radiance: np.ndarray,
    quality: str,
    rng: np.random.Generator,
    *,
    exposure: float = 1.0,
    gain: float = 1.0,
    profile: CameraProfile | None = None,
    camera_rng: np.random.Generator | None = None,
    jpeg: bool = True,
) -> np.ndarray:
    """Scene radiance (H, W, 3) float -> uint8 RGB image as the camera records it (same size).

    Lens blur, sensor downscale (area), shot/read noise scaled by the sensor gain, white balance, tone curve, ISP
    sharpening, JPEG, then upscale back to the stored size (as datasets store a fixed-size image). ``rng`` draws
    the noise; ``camera_rng`` (default ``rng``) draws the camera's own settings, so a video can pass a fresh
    generator with the same seed for every frame: the same camera, new noise.
    """
    if quality not in _QUALITY:
        raise ValueError(f"unknown camera quality {quality!r}; valid: {', '.join(_QUALITY)}")
    profile = profile or CameraProfile()
    cam = camera_rng if camera_rng is not None else rng
    blur, scale, read, (q0, q1), sharpen = _QUALITY[quality]
    h, w = radiance.shape[:2]
    img = radiance * exposure
    sigma = blur * float(cam.uniform(0.8, 1.2)) + profile.extra_blur
    scale = scale * float(cam.uniform(0.9, 1.1))
    cast = np.asarray(profile.cast, np.float32) * (1 + cam.normal(0, profile.cast_jitter, 3)).astype(np.float32)
    quality_jpeg = int(np.clip(cam.integers(q0, q1 + 1) + profile.jpeg_shift, 10, 98))
    if sigma > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    sw, sh = max(16, int(round(w * min(scale, 1.0)))), max(16, int(round(h * min(scale, 1.0))))
    if (sw, sh) != (w, h):
        img = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    # vignetting
    yy = np.linspace(-1, 1, sh, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, sw, dtype=np.float32)[None, :]
    img = img * (1 - profile.vignette * (xx**2 + yy**2) / 2)[..., None]
    # sensor noise: shot noise ~ sqrt(signal), read noise, chroma noise grows with the gain
    g = gain * profile.noise_gain
    img = img.astype(np.float32, copy=False)
    noise = fast_normal(rng, img.shape)  # shot noise, with the chroma share of read noise
    if quality == "low":
        noise = cv2.GaussianBlur(noise, (0, 0), 0.6)
    sigma_px = np.sqrt(np.clip(img, 0, None) * (0.012 * g) ** 2 + (0.6 * read * g) ** 2)
    img = img + sigma_px * noise + (read * g) * fast_normal(rng, (sh, sw, 1))
    img = img * cast
    # tone curve (display gamma-ish, soft shoulder) and saturation
    img = np.clip(img, 0, None)
    img = (1.0 - np.exp(-img * 1.6)) * float(1.0 / (1.0 - np.exp(-1.6)))
    if profile.saturation != 1.0:
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * profile.saturation
    amount = sharpen + profile.sharpen
    if amount > 0:
        soft = cv2.GaussianBlur(img, (0, 0), 1.0)
        img = img + amount * (img - soft)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if jpeg and quality_jpeg < 96:
        ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality_jpeg])  # RGB -> BGR
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    if (sw, sh) != (w, h):
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return out
