"""Presentation-attack media (prints and screens) and their recapture by a camera.

A :class:`Medium` is a flat object in its own coordinates, *medium units* (mu): one mu is one pixel of the content
shown on it (the printed photo, or the screen's pixel grid). The camera sees it through a homography ``H`` (mu ->
output pixels). :func:`draw_medium` casts every output sample (``ss`` x ``ss`` per pixel) back onto the medium and
evaluates the physics there, point-sampled, then area-averages to the output grid. Periodic structure finer than
the camera's pixels therefore aliases the way it does in a real recapture: moiré.

Prints (reflective, lit by the scene):
    gamut compression (contrast, saturation, ink tint), CMYK screening (AM halftone dots at the classic screen
    angles 15/75/0/45 degrees; or inkjet FM screening, whose droplets are far below a camera pixel, so what
    survives is binomial grain and print-head banding), imperfect subtractive inks (optical densities add), paper
    white, paper fibre texture, sheet bending, specular gloss bands (photo paper and posters), white borders, cut
    edges.
Screens (emissive, independent of the scene light except for reflections):
    display transfer (gamma shift, bluish white point, raised black level), RGB stripe sub-pixels with a black matrix,
    PWM/rolling-shutter banding, specular glare and a faint reflection of the room, bezels that reflect the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .faces import inside
from .scene import Illumination

__all__ = ["Medium", "draw_medium", "placement", "map_points", "map_box", "draw_fingers"]

_SCREEN_ANGLES = np.deg2rad([15.0, 75.0, 0.0, 45.0])  # C, M, Y, K
_T = np.arange(32, dtype=np.float32) * (2 * np.pi / 32)
_SPOT = (0.5 + 0.25 * (np.cos(_T)[None, :] + np.cos(_T)[:, None])).astype(np.float32)  # AM dot, one period
# rows: C, M, Y, K; columns: absorption of R, G, B (imperfect inks)
_ABSORB = np.array([[0.88, 0.22, 0.06], [0.10, 0.85, 0.22], [0.02, 0.10, 0.86], [0.88, 0.88, 0.86]], np.float32)
_DENSITY = -np.log(1.0 - _ABSORB).astype(np.float32)  # optical density of a solid layer of each ink


@dataclass
class Medium:
    kind: str  # "print" or "screen"
    content: np.ndarray  # (hc, wc, 3) float32 in [0, 1]
    outer: tuple[float, float, float, float]  # x0, y0, x1, y1 (mu): the sheet or the device body
    face_box: tuple[float, float, float, float]  # x, y, w, h (mu)
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)
    radius: float = 0.0  # corner radius of ``outer`` (mu)
    cut: np.ndarray | None = None  # (hc, wc) paper coverage of a cut-out (None: the whole ``outer`` rectangle)
    printed: np.ndarray | None = None  # (hc, wc) where ink lies (None: all of the content rectangle)
    noise: np.ndarray | None = None  # (n, n) uniform [0, 1) tile: FM dither and paper fibres
    # print physics (lengths in output pixels at the nominal placement scale)
    dither: str = "am"  # am | fm | none
    period_px: float = 0.8
    soft: float = 0.2
    mix: float = 1.0
    contrast: float = 0.85
    saturation: float = 0.8
    ink_tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    paper: tuple[float, float, float] = (0.93, 0.92, 0.89)
    paper_amp: float = 0.03
    gloss: float = 0.0
    bend: float = 0.0
    # screen physics
    modulation: float = 0.6
    gamma: float = 1.0
    white: tuple[float, float, float] = (0.95, 1.0, 1.08)
    black: float = 0.05
    brightness: float = 1.0
    fill: float = 0.8
    row_fill: float = 0.85
    bezel: tuple[float, float, float] = (0.05, 0.05, 0.05)
    banding: float = 0.0
    reflection: float = 0.05
    glare: float = 0.0
    glare_line: tuple[float, float, float, float] = (0.5, 0.3, 0.6, 0.08)  # (x, y) frac of outer, angle, width frac
    camera_dot: bool = False


def map_points(H: np.ndarray, pts) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    p = np.c_[pts, np.ones(len(pts))] @ H.T
    return p[:, :2] / p[:, 2:3]


def map_box(H: np.ndarray, box) -> tuple[float, float, float, float]:
    x, y, w, h = box
    p = map_points(H, [[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def placement(
    medium: Medium,
    face_h_px: float,
    center: tuple[float, float],
    roll: float,
    tilt: float,
    rng: np.random.Generator,
    canvas: float,
) -> np.ndarray:
    """Homography (mu -> output px) that puts the medium's face at ``center`` with height ``face_h_px``, rolled by
    ``roll`` radians and tilted in depth (corner jitter up to ``tilt`` of its size, capped by the ``canvas`` size)."""
    fx, fy, fw, fh = medium.face_box
    k = face_h_px / fh
    c0 = np.array([fx + fw / 2, fy + fh / 2])
    x0, y0, x1, y1 = medium.outer
    src = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    cr, sr = np.cos(roll), np.sin(roll)
    R = np.array([[cr, -sr], [sr, cr]])
    dst = (src - c0) * k @ R.T + np.asarray(center)
    size = min(max(x1 - x0, y1 - y0) * k, 1.5 * canvas)
    dst = dst + rng.uniform(-1, 1, (4, 2)) * tilt * size
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def _rrect_sd(x, y, rect, r):
    x0, y0, x1, y1 = rect
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    qx = np.abs(x - cx) - hx + r
    qy = np.abs(y - cy) - hy + r
    return np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2) + np.minimum(np.maximum(qx, qy), 0) - r


def _remap(img: np.ndarray, mx: np.ndarray, my: np.ndarray, interp=cv2.INTER_LINEAR, border=cv2.BORDER_REPLICATE):
    return cv2.remap(img, mx.astype(np.float32), my.astype(np.float32), interp, borderMode=border)


def draw_medium(
    m: Medium,
    H: np.ndarray,
    out_h: int,
    out_w: int,
    illum: Illumination,
    *,
    ss: int = 2,
    reflection: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    cache: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Radiance (out_h, out_w, 3) and coverage (out_h, out_w) of the medium seen through ``H`` (mu -> px).

    Only the window of output pixels the medium can cover is evaluated. ``cache`` (a dict kept by the caller)
    keeps everything that depends on the geometry alone, so a fixed screen replaying a video re-computes only what
    its changing content changes."""
    g = cache.get("geometry") if cache is not None else None
    if g is None or not np.array_equal(g["H"], H) or g["ss"] != ss:
        g = _geometry(m, H, out_h, out_w, ss, illum, reflection)
        if cache is not None:
            cache["geometry"] = g
    rgb_full = np.zeros((out_h, out_w, 3), np.float32)
    alpha_full = np.zeros((out_h, out_w), np.float32)
    if g["empty"]:
        return rgb_full, alpha_full
    mx, my, alpha, in_img = g["mx"], g["my"], g["alpha"], g["in_img"]
    if m.kind == "print":
        rgb = _print(m, mx, my, g["k"], in_img, illum)
        if m.cut is not None:
            alpha = alpha * _remap(m.cut, mx - 0.5, my - 0.5, border=cv2.BORDER_CONSTANT)
    elif m.kind == "screen":
        if "pattern" not in g:
            g["pattern"], g["bezel"] = _screen_static(m, mx, my, illum, g["aa"])
        rgb = _screen(m, mx, my, in_img, g["pattern"], g["bezel"], g["ys"], rng)
    else:
        raise ValueError(f"unknown medium kind {m.kind!r}; valid: print, screen")
    if g["extra"] is not None:
        rgb = rgb + g["extra"]
    if ss > 1:
        wh, ww = g["size"]
        rgb = cv2.resize(rgb * alpha[..., None], (ww, wh), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (ww, wh), interpolation=cv2.INTER_AREA)
        rgb = rgb / np.maximum(alpha, 1e-4)[..., None]
    win = g["window"]
    rgb_full[win] = rgb
    alpha_full[win] = alpha
    return rgb_full, alpha_full


def _geometry(m: Medium, H, out_h: int, out_w: int, ss: int, illum: Illumination, reflection) -> dict:
    """Cast the output samples onto the medium: medium coordinates, coverage, and the content-free light terms."""
    x0, y0, x1, y1 = m.outer
    margin = 0.05 * (y1 - y0) * m.bend + 2.0
    corners = map_points(
        H,
        [
            [x0 - margin, y0 - margin],
            [x1 + margin, y0 - margin],
            [x1 + margin, y1 + margin],
            [x0 - margin, y1 + margin],
        ],
    )
    X0, Y0 = np.clip(np.floor(corners.min(0)) - 1, 0, [out_w, out_h]).astype(int)
    X1, Y1 = np.clip(np.ceil(corners.max(0)) + 1, 0, [out_w, out_h]).astype(int)
    g: dict = {"H": H.copy(), "ss": ss, "empty": X1 <= X0 or Y1 <= Y0}
    if g["empty"]:
        return g
    wh, ww = int(Y1 - Y0), int(X1 - X0)
    hs, ws = wh * ss, ww * ss
    ys = (Y0 + (np.arange(hs, dtype=np.float64) + 0.5) / ss)[:, None]
    xs = (X0 + (np.arange(ws, dtype=np.float64) + 0.5) / ss)[None, :]
    Hi = np.linalg.inv(H)
    X = Hi[0, 0] * xs + Hi[0, 1] * ys + Hi[0, 2]
    Y = Hi[1, 0] * xs + Hi[1, 1] * ys + Hi[1, 2]
    Wd = Hi[2, 0] * xs + Hi[2, 1] * ys + Hi[2, 2]
    Wd = np.where(np.abs(Wd) < 1e-9, 1e-9, Wd)
    mx = (X / Wd).astype(np.float32)
    my = (Y / Wd).astype(np.float32)
    if m.bend:  # a bowed sheet: edges curve, shading follows the bend
        t = (mx - (x0 + x1) / 2) / ((x1 - x0) / 2)
        my = my + m.bend * (y1 - y0) * 0.04 * t**2
    fx, fy, fw, fh = m.face_box
    c = map_points(H, [[fx + fw / 2, fy + fh / 2], [fx + fw / 2, fy + fh / 2 + 1.0]])
    k = float(np.hypot(*(c[1] - c[0])))  # output px per mu near the face
    aa = 1.0 / (k * ss)
    hc, wc = m.content.shape[:2]
    extra = None
    if m.glare > 0:  # specular band: a reflected window/lamp sliding over glossy media
        gx, gy, ang, width = m.glare_line
        px = x0 + gx * (x1 - x0)
        py = y0 + gy * (y1 - y0)
        d = (mx - px) * np.sin(ang) - (my - py) * np.cos(ang)
        along = (mx - px) * np.cos(ang) + (my - py) * np.sin(ang)
        span = max(x1 - x0, y1 - y0)
        band = np.exp(-((d / (width * span)) ** 2)) * np.exp(-((along / (0.5 * span)) ** 2))
        level = max(illum.light.key + illum.light.ambient, 0.35)
        extra = (m.glare * level * band)[..., None] * np.asarray(illum.light.color, np.float32)
    if reflection is not None and m.reflection > 0:  # the room mirrored in glossy surfaces
        refl = np.ascontiguousarray(reflection[:, ::-1][Y0:Y1, X0:X1])
        if ss > 1:
            refl = cv2.resize(refl, (ws, hs), interpolation=cv2.INTER_LINEAR)
        extra = m.reflection * refl if extra is None else extra + m.reflection * refl
    g.update(
        window=np.s_[Y0:Y1, X0:X1],
        size=(wh, ww),
        mx=mx,
        my=my,
        k=k,
        aa=aa,
        extra=extra,
        ys=(ys * np.ones((1, ws))).astype(np.float32),
        alpha=inside(_rrect_sd(mx, my, m.outer, m.radius), aa),
        in_img=inside(_rrect_sd(mx, my, (0.0, 0.0, float(wc), float(hc)), 0.0), aa),
    )
    return g


def _irradiance(m: Medium, mx, my, illum: Illumination) -> np.ndarray:
    """Light falling on a flat sheet: ambient plus the key light at the sheet's tilt, with a gentle gradient."""
    light = illum.light
    x0, y0, x1, y1 = m.outer
    t = (mx - (x0 + x1) / 2) / max(x1 - x0, 1e-3)
    ndl = np.clip(light.direction[2] * 0.9 + light.direction[0] * 0.35 * t - m.bend * 0.3 * (2 * t) ** 2, 0, 1)
    return (
        np.asarray(light.ambient_color, np.float32) * light.ambient
        + (light.key * ndl)[..., None] * np.asarray(light.color, np.float32)
    ).astype(np.float32)


def _print(m: Medium, mx, my, k: float, in_img, illum: Illumination) -> np.ndarray:
    img = _remap(m.content, mx - 0.5, my - 0.5)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * m.saturation
    img = np.clip(0.5 + (img - 0.5) * m.contrast, 0, 1) * np.asarray(m.ink_tint, np.float32)
    ink = np.clip(1.0 - img, 0, 1)  # C, M, Y
    kk = ink.min(axis=2) * 0.5  # grey component replaced by black ink
    cover = np.concatenate([ink - kk[..., None], kk[..., None]], axis=2)  # (H, W, 4) C, M, Y, K
    period = max(m.period_px / k, 0.3)  # mu
    if m.dither == "am":  # rotated dot screens, looked up in a one-period tile
        f = _SPOT.shape[0] / period
        for i, a in enumerate(_SCREEN_ANGLES):
            ca, sa = np.float32(np.cos(a) * f), np.float32(np.sin(a) * f)
            spot = _remap(_SPOT, mx * ca + my * sa, my * ca - mx * sa, cv2.INTER_LINEAR, cv2.BORDER_WRAP)
            val = cover[..., i]
            cover[..., i] = m.mix * np.clip((val - spot) / m.soft + 0.5, 0, 1) + (1 - m.mix) * val
    elif m.dither == "fm" and m.noise is not None:
        # inkjet: droplets are far below a camera pixel; what survives is grain (binomial: ~sqrt(v(1-v)))
        # and banding from the print-head passes along the sheet
        band = 0.015 * np.sin(my * np.float32(2 * np.pi * k / (m.soft * 40 + 3.0)))
        for i in range(4):
            grain = _remap(m.noise, mx / period + 17 * i, my / period + 5 * i, cv2.INTER_LINEAR, cv2.BORDER_WRAP)
            val = cover[..., i]
            noise = 0.7 * (grain - 0.5) * np.sqrt(np.clip(val * (1 - val), 0, 1)) + band
            cover[..., i] = np.clip(val + m.mix * noise, 0, 1)
    # imperfect subtractive inks: optical densities add (exact for solid dots, Yule-Nielsen-like in between)
    density = sum(cover[..., i : i + 1] * _DENSITY[i] for i in range(4))  # (H, W, 3); no BLAS in workers
    refl = np.asarray(m.paper, np.float32) * np.exp(-density)
    if m.printed is not None:
        in_img = in_img * _remap(m.printed, mx - 0.5, my - 0.5, border=cv2.BORDER_CONSTANT)
    a = in_img[..., None]
    refl = refl * a + np.asarray(m.paper, np.float32) * (1 - a)
    if m.noise is not None and m.paper_amp > 0:  # paper fibres: anisotropic texture fixed to the sheet
        fib = _remap(m.noise, mx * (0.35 / period), my * (0.1 / period), cv2.INTER_LINEAR, cv2.BORDER_WRAP)
        refl = refl * (1 + m.paper_amp * (fib - 0.5) * 2)[..., None]
    return refl * _irradiance(m, mx, my, illum)


def _screen_static(m: Medium, mx, my, illum: Illumination, aa: float) -> tuple[np.ndarray, np.ndarray]:
    """The sub-pixel mask (H, W, 3) and the lit bezel (H, W, 3): both depend on the geometry only."""
    fx = mx - np.floor(mx)
    fy = my - np.floor(my)
    # the sub-pixels' own soft edge, widened a little by the sample footprint (a sensor pixel integrates over its
    # area); sampling stays close to point-like, so grids finer than the camera's pixels alias into moiré
    edge = max(0.07, 0.35 * aa)
    row = inside(np.abs(fy - 0.5) - m.row_fill / 2, edge)
    pattern = np.stack([inside(np.abs(fx - (i + 0.5) / 3) - m.fill / 6, edge) for i in range(3)], axis=-1)
    pattern = pattern * (row / (m.fill / 3 * m.row_fill))[..., None]
    bez = np.asarray(m.bezel, np.float32) * _irradiance(m, mx, my, illum)
    x0, y0, x1, y1 = m.outer
    rim = np.exp(-((_rrect_sd(mx, my, m.outer, m.radius) / (0.006 * (x1 - x0 + y1 - y0))) ** 2))
    bez = bez + (0.15 * rim * (illum.light.key + illum.light.ambient))[..., None]
    if m.camera_dot:
        dot = inside(np.hypot(mx - (x0 + x1) / 2, my - (y0 + (0 - y0) / 2)) - 0.012 * (x1 - x0), 0.5)
        bez = bez * (1 - dot[..., None]) + dot[..., None] * 0.02
    return pattern.astype(np.float32), bez.astype(np.float32)


def _screen(m: Medium, mx, my, in_img, pattern, bez, y_px, rng) -> np.ndarray:
    white = np.asarray(m.white, np.float32) * m.brightness
    disp_src = m.black + (white - m.black) * np.clip(m.content, 0, 1) ** m.gamma
    sharp = _remap(disp_src, np.floor(mx), np.floor(my), cv2.INTER_NEAREST)  # one value per screen pixel
    smooth = _remap(disp_src, mx - 0.5, my - 0.5)  # what a defocused camera would see
    screen = smooth * (1 - m.modulation) + sharp * pattern * m.modulation
    if m.banding > 0 and rng is not None:  # PWM dimming seen by a rolling shutter: moving horizontal bands
        period = float(rng.uniform(6, 20))
        screen = screen * (1 + m.banding * np.sin(2 * np.pi * y_px / period + rng.uniform(0, 6.3)))[..., None]
    a = in_img[..., None]
    return screen * a + bez * (1 - a)


def draw_fingers(
    rgb: np.ndarray,
    H: np.ndarray,
    outer: tuple[float, float, float, float],
    skin: tuple[float, float, float],
    illum: Illumination,
    rng: np.random.Generator,
    alpha: np.ndarray | None = None,
) -> np.ndarray:
    """A hand gripping an edge of a hand-held medium, in place: the palm behind the medium (hidden where the medium
    covers it, ``alpha``), the thumb over its front edge."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = outer
    side = int(rng.integers(4))
    t = rng.uniform(0.2, 0.8)
    (ex, ey), (nx, ny) = {
        0: ((x0, y0 + t * (y1 - y0)), (1, 0)),
        1: ((x1, y0 + t * (y1 - y0)), (-1, 0)),
        2: ((x0 + t * (x1 - x0), y1), (0, -1)),
        3: ((x0 + t * (x1 - x0), y0), (0, 1)),
    }[side]
    size = 0.09 * min(x1 - x0, y1 - y0)
    p = map_points(
        H,
        [
            [ex - nx * size * 1.6, ey - ny * size * 1.6],
            [ex + nx * size * 0.8, ey + ny * size * 0.8],
            [ex - nx * size * 3.2, ey - ny * size * 3.2],
            [ex - nx * size * 3.2 + ny * size, ey - ny * size * 3.2 + nx * size],
        ],
    )
    (ax, ay), (bx, by), (cx, cy), (qx, qy) = p
    unit = float(np.hypot(qx - cx, qy - cy))  # ``size`` in output pixels
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    shade = np.asarray(
        illum.light.ambient_color, np.float32
    ) * illum.light.ambient + illum.light.key * 0.7 * np.asarray(illum.light.color, np.float32)
    tone = np.asarray(skin, np.float32) * shade
    # palm: an ellipse beyond the edge, elongated along it
    ux, uy = (qx - cx) / max(unit, 1e-6), (qy - cy) / max(unit, 1e-6)
    along = (xx - cx) * ux + (yy - cy) * uy
    across = (xx - cx) * uy - (yy - cy) * ux
    palm = inside((np.sqrt((along / (2.2 * unit)) ** 2 + (across / (1.9 * unit)) ** 2) - 1) * 1.9 * unit, 1.0)
    if alpha is not None:
        palm = palm * (1 - alpha)
    _blend(rgb, palm, tone * 0.85)
    # thumb: a capsule over the front edge
    rad = max(1.5, 0.42 * unit)
    vx, vy = bx - ax, by - ay
    tt = np.clip(((xx - ax) * vx + (yy - ay) * vy) / max(vx * vx + vy * vy, 1e-6), 0, 1)
    d = np.hypot(xx - ax - tt * vx, yy - ay - tt * vy) - rad
    thumb = inside(d, 1.0)
    _blend(rgb, thumb, tone * (0.8 + 0.25 * np.clip(-d / rad, 0, 1))[..., None])
    return rgb


def _blend(rgb: np.ndarray, a: np.ndarray, col) -> None:
    rgb *= 1 - a[..., None]
    rgb += a[..., None] * col
