"""Procedural faces: identity + pose/expression + lighting -> an RGB person layer with masks and landmarks.

Everything is drawn with vectorised numpy on the pixel grid, in a face-local frame: ``u`` to the image right and
``v`` down, both in units of the face half-height ``s`` (pixels), rotated by the head roll. The face is an ellipsoid
for shading (Lambert + Blinn-Phong + rim light); features are soft-edged implicit shapes (1 px anti-aliasing).

``material="plastic"`` draws a worn 3D mask over the wearer's face: no pores, flat cast albedo, broad glossy
highlights, a dark seam where the mask ends (a band of the wearer's own, differently coloured skin shows at the
forehead and jaw), recessed eye holes with the wearer's eyes slightly off inside them, the wearer's ears and neck.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "Identity",
    "Pose",
    "Light",
    "PersonRender",
    "sample_identity",
    "sample_pose",
    "render_person",
    "CELEBA_ATTRS",
    "fast_normal",
    "inside",
    "lowfreq",
    "noise",
]

# CelebA's 40 attributes, in the dataset's order (label vector [0:40]).
CELEBA_ATTRS: tuple[str, ...] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)

_SKIN_TONES = np.array(
    [
        [0.97, 0.82, 0.72],
        [0.93, 0.75, 0.63],
        [0.87, 0.67, 0.54],
        [0.78, 0.57, 0.43],
        [0.66, 0.46, 0.33],
        [0.52, 0.35, 0.24],
        [0.38, 0.25, 0.17],
    ],
    np.float32,
)
_HAIR_COLORS = {
    "black": (0.07, 0.06, 0.05),
    "dark_brown": (0.20, 0.13, 0.08),
    "brown": (0.36, 0.23, 0.13),
    "auburn": (0.48, 0.22, 0.11),
    "blond": (0.80, 0.66, 0.42),
    "gray": (0.60, 0.59, 0.57),
}
_IRIS_COLORS = np.array(
    [[0.25, 0.15, 0.08], [0.35, 0.22, 0.10], [0.30, 0.45, 0.60], [0.35, 0.45, 0.30], [0.15, 0.10, 0.07]], np.float32
)
_HAIR_STYLES = ("short", "long", "bob", "curly", "bald", "buzz")


@dataclass(frozen=True)
class Identity:
    """What stays the same across the images of one subject."""

    aspect: float  # face half-width / half-height
    jaw: float  # 0 round ... 0.45 pointy chin
    skin: tuple[float, float, float]
    hair_name: str
    hair_color: tuple[float, float, float]
    hair_style: str
    fringe: float  # 0 no bangs ... 1 heavy bangs
    eye_size: float
    eye_spacing: float
    eye_height: float
    iris: tuple[float, float, float]
    brow_thick: float
    brow_arch: float
    nose_len: float
    nose_width: float
    mouth_width: float
    lip_full: float
    lip_color: tuple[float, float, float]
    male: bool
    beard: str  # none, stubble, goatee, full
    mustache: bool
    glasses: bool
    young: bool
    earrings: bool
    makeup: bool
    blush: float
    pore_amp: float
    cloth: tuple[float, float, float]
    neckline: str  # round, v, collar


@dataclass(frozen=True)
class Pose:
    cx: float  # face centre, pixels
    cy: float
    s: float  # face half-height, pixels
    roll: float = 0.0  # radians
    yaw: float = 0.0  # -1..1, shifts the inner features
    smile: float = 0.0  # 0..1
    mouth_open: float = 0.0  # 0..1
    eye_open: float = 1.0  # 0 closed ... 1 open
    gaze: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Light:
    direction: tuple[float, float, float] = (0.3, -0.4, 0.87)  # x right, y down, z toward the camera
    key: float = 0.65
    ambient: float = 0.42
    color: tuple[float, float, float] = (1.0, 0.98, 0.95)
    ambient_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    spec: float = 0.12
    rim: float = 0.0
    hardness: float = 1.0  # >1 makes the light/shadow terminator sharper


@dataclass
class PersonRender:
    rgb: np.ndarray  # (H, W, 3) float32, the person composited over the given background
    alpha: np.ndarray  # (H, W) person coverage (head, hair, neck, torso)
    face_alpha: np.ndarray  # (H, W) the face oval (skin of the face)
    head_alpha: np.ndarray  # (H, W) face + hair + ears
    holes_alpha: np.ndarray  # (H, W) eyes and mouth regions (for region masks)
    face_box: tuple[float, float, float, float]  # x, y, w, h pixels (a detector's face box)
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)  # eye_right, eye_left, nose, mouth


def sample_identity(rng: np.random.Generator) -> Identity:
    male = bool(rng.random() < 0.5)
    t = rng.random() * (len(_SKIN_TONES) - 1)
    i = int(t)
    skin = _SKIN_TONES[i] * (1 - (t - i)) + _SKIN_TONES[min(i + 1, len(_SKIN_TONES) - 1)] * (t - i)
    skin = np.clip(skin * (1 + rng.normal(0, 0.03, 3)), 0, 1)
    young = bool(rng.random() < 0.7)
    hair_names = ["black", "dark_brown", "brown", "auburn", "blond"] + ([] if young else ["gray", "gray"])
    hair_name = str(rng.choice(hair_names))
    hair = np.clip(np.array(_HAIR_COLORS[hair_name]) * (1 + rng.normal(0, 0.08, 3)), 0, 1)
    if male:
        style = str(rng.choice(_HAIR_STYLES, p=[0.45, 0.05, 0.05, 0.1, 0.15, 0.2]))
    else:
        style = str(rng.choice(_HAIR_STYLES, p=[0.1, 0.45, 0.25, 0.17, 0.0, 0.03]))
    beard = "none"
    if male:
        beard = str(rng.choice(["none", "stubble", "goatee", "full"], p=[0.5, 0.25, 0.1, 0.15]))
    makeup = (not male) and rng.random() < 0.45
    lip = skin * np.array([0.82, 0.55, 0.55])
    if makeup:
        lip = np.array([0.65, 0.12, 0.18]) * (1 + rng.normal(0, 0.1, 3))
    return Identity(
        aspect=float(rng.uniform(0.70, 0.84) + (0.03 if male else 0.0)),
        jaw=float(rng.uniform(0.05, 0.38) - (0.08 if male else 0.0)),
        skin=tuple(float(x) for x in skin),
        hair_name=hair_name,
        hair_color=tuple(float(x) for x in hair),
        hair_style=style,
        fringe=float(rng.uniform(0.4, 1.0)) if rng.random() < (0.25 if male else 0.4) else 0.0,
        eye_size=float(rng.uniform(0.85, 1.2)),
        eye_spacing=float(rng.uniform(0.30, 0.37)),
        eye_height=float(rng.uniform(-0.10, -0.02)),
        iris=tuple(float(x) for x in _IRIS_COLORS[rng.integers(len(_IRIS_COLORS))]),
        brow_thick=float(rng.uniform(0.025, 0.05) * (1.25 if male else 1.0)),
        brow_arch=float(rng.uniform(0.0, 0.05)),
        nose_len=float(rng.uniform(0.26, 0.36)),
        nose_width=float(rng.uniform(0.08, 0.13)),
        mouth_width=float(rng.uniform(0.17, 0.25)),
        lip_full=float(rng.uniform(0.6, 1.4)),
        lip_color=tuple(float(x) for x in np.clip(lip, 0, 1)),
        male=male,
        beard=beard,
        mustache=bool(male and rng.random() < 0.2),
        glasses=bool(rng.random() < 0.12),
        young=young,
        earrings=bool((not male) and rng.random() < 0.3),
        makeup=bool(makeup),
        blush=float(rng.uniform(0.0, 0.08)),
        pore_amp=float(rng.uniform(0.018, 0.035)),
        cloth=tuple(float(x) for x in rng.uniform(0.05, 0.85, 3)),
        neckline=str(rng.choice(["round", "v", "collar"])),
    )


def sample_pose(
    rng: np.random.Generator, cx: float, cy: float, s: float, *, jitter: float = 1.0, blink: bool = False
) -> Pose:
    """A natural pose around (cx, cy, s): small roll/offset/scale changes, a random expression."""
    smile = float(rng.uniform(0, 1)) if rng.random() < 0.5 else 0.0
    return Pose(
        cx=float(cx + rng.normal(0, 0.06 * s * jitter)),
        cy=float(cy + rng.normal(0, 0.05 * s * jitter)),
        s=float(s * np.exp(rng.normal(0, 0.06 * jitter))),
        roll=float(rng.normal(0, 0.09 * jitter)),
        yaw=float(np.clip(rng.normal(0, 0.35 * jitter), -0.8, 0.8)),
        smile=smile,
        mouth_open=float(rng.uniform(0.2, 1.0)) if rng.random() < 0.25 else 0.0,
        eye_open=0.08 if blink else float(rng.uniform(0.75, 1.1)),
        gaze=(float(rng.normal(0, 0.25)), float(rng.normal(0, 0.15))),
    )


def attributes(identity: Identity, pose: Pose, blurry: bool) -> list[int]:
    """The 40 CelebA attributes (0/1) a labeller would give this rendering."""
    on = {
        "5_o_Clock_Shadow": identity.beard == "stubble",
        "Arched_Eyebrows": identity.brow_arch > 0.03,
        "Attractive": identity.young and identity.blush > 0.03,
        "Bald": identity.hair_style == "bald",
        "Bangs": identity.fringe > 0,
        "Big_Lips": identity.lip_full > 1.15,
        "Big_Nose": identity.nose_width > 0.118,
        "Black_Hair": identity.hair_name == "black",
        "Blond_Hair": identity.hair_name == "blond",
        "Blurry": blurry,
        "Brown_Hair": identity.hair_name in ("brown", "dark_brown", "auburn"),
        "Bushy_Eyebrows": identity.brow_thick > 0.05,
        "Chubby": identity.aspect > 0.84,
        "Eyeglasses": identity.glasses,
        "Goatee": identity.beard == "goatee",
        "Gray_Hair": identity.hair_name == "gray",
        "Heavy_Makeup": identity.makeup,
        "High_Cheekbones": pose.smile > 0.5,
        "Male": identity.male,
        "Mouth_Slightly_Open": pose.mouth_open > 0,
        "Mustache": identity.mustache,
        "Narrow_Eyes": identity.eye_size < 0.92,
        "No_Beard": identity.beard == "none" and not identity.mustache,
        "Oval_Face": 0.15 < identity.jaw < 0.3,
        "Pale_Skin": identity.skin[0] > 0.93,
        "Pointy_Nose": identity.nose_len > 0.33 and identity.nose_width < 0.1,
        "Receding_Hairline": identity.hair_style == "buzz" and not identity.young,
        "Rosy_Cheeks": identity.blush > 0.06,
        "Sideburns": identity.beard == "full",
        "Smiling": pose.smile > 0.35,
        "Straight_Hair": identity.hair_style in ("long", "bob"),
        "Wavy_Hair": identity.hair_style == "curly",
        "Wearing_Earrings": identity.earrings,
        "Wearing_Lipstick": identity.makeup,
        "Wearing_Necktie": identity.neckline == "collar" and identity.male,
        "Young": identity.young,
    }
    return [int(bool(on.get(name, False))) for name in CELEBA_ATTRS]


# ----------------------------------------------------------------------------------------------------------- helpers


def inside(d: np.ndarray, aa: float) -> np.ndarray:
    """Soft coverage of a signed distance field (negative inside); ``aa`` is one pixel in the same units."""
    return np.clip(0.5 - d / aa, 0.0, 1.0)


def _ellipse_sd(u, v, cu, cv, ru, rv):
    return (np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2) - 1.0) * np.minimum(ru, rv)


def _blob(u, v, cu, cv, ru, rv):
    return np.exp(-(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2))


def _over(img: np.ndarray, alpha: np.ndarray, color) -> None:
    """In-place alpha composite of ``color`` ((3,) or (H, W, 3)) over ``img`` with coverage ``alpha``."""
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return
    cols = np.flatnonzero(alpha.any(axis=0))
    win = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # only the covered window
    a = alpha[win][..., None]
    color = np.asarray(color, np.float32)
    if color.ndim == 3:
        color = color[win]
    img[win] *= 1.0 - a
    img[win] += a * color


def fast_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Approximately N(0, 1) float32 noise, ~10x faster than ``rng.standard_normal``: a random byte picks one of 256
    equal-probability quantiles."""
    n = int(np.prod(shape))
    return _GAUSS_LUT[np.frombuffer(rng.bytes(n), np.uint8)].reshape(shape)


_GAUSS_LUT = np.sort(np.random.default_rng(12345).standard_normal(256 * 512)).reshape(256, 512).mean(1)
_GAUSS_LUT = (_GAUSS_LUT / _GAUSS_LUT.std()).astype(np.float32)


def noise(rng: np.random.Generator, h: int, w: int, sigma: float, sx: float | None = None) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise blurred by ``sigma`` (``sx`` for an anisotropic blur)."""
    n = fast_normal(rng, (h, w))
    if sigma > 0:
        n = cv2.GaussianBlur(n, (0, 0), sigmaX=sx if sx is not None else sigma, sigmaY=sigma)
    return n / (n.std() + 1e-6)


def lowfreq(rng: np.random.Generator, h: int, w: int, cells: int = 6) -> np.ndarray:
    """Smooth blotches: a small random grid upsampled bicubically; unit std."""
    g = rng.standard_normal((cells, cells)).astype(np.float32)
    n = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return n / (n.std() + 1e-6)


def _shade(nx, ny, nz, light: Light, *, shininess: float = 12.0, spec: float | None = None):
    """Lambert diffuse (H, W, 3) and Blinn-Phong specular (H, W) for unit normals."""
    lx, ly, lz = light.direction
    ndl = nx * lx + ny * ly + nz * lz
    diff = np.clip(ndl * light.hardness + (light.hardness - 1) * 0.15, 0.0, 1.0)
    hx, hy, hz = lx, ly, lz + 1.0
    hn = np.sqrt(hx * hx + hy * hy + hz * hz)
    ndh = np.clip((nx * hx + ny * hy + nz * hz) / hn, 0.0, 1.0)
    sp = (light.spec if spec is None else spec) * light.key * ndh**shininess * (ndl > 0)
    color = np.asarray(light.color, np.float32)
    amb = np.asarray(light.ambient_color, np.float32) * light.ambient
    shade = amb + (light.key * diff)[..., None] * color
    if light.rim > 0:
        shade = shade + (light.rim * np.clip(1.0 - nz, 0, 1) ** 2.5)[..., None] * color
    return shade.astype(np.float32), sp.astype(np.float32)


# ------------------------------------------------------------------------------------------------------------ render


class _Frame:
    """The face-local coordinates of every pixel, and windows (pixel slices) around face-frame rectangles."""

    def __init__(self, h: int, w: int, pose: Pose):
        self.h, self.w, self.pose = h, w, pose
        self.c, self.sn = float(np.cos(pose.roll)), float(np.sin(pose.roll))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dx, dy = xx + 0.5 - pose.cx, yy + 0.5 - pose.cy
        self.u = (dx * self.c + dy * self.sn) / pose.s
        self.v = (-dx * self.sn + dy * self.c) / pose.s

    def to_px(self, u: float, v: float) -> tuple[float, float]:
        p = self.pose
        return (p.cx + (u * self.c - v * self.sn) * p.s, p.cy + (u * self.sn + v * self.c) * p.s)

    def win(self, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
        pts = np.array([self.to_px(u, v) for u in (u0, u1) for v in (v0, v1)])
        x0, y0 = np.floor(pts.min(0)) - 2
        x1, y1 = np.ceil(pts.max(0)) + 2
        x0, x1 = int(np.clip(x0, 0, self.w)), int(np.clip(x1, 0, self.w))
        y0, y1 = int(np.clip(y0, 0, self.h)), int(np.clip(y1, 0, self.h))
        return np.s_[y0 : max(y0, y1), x0 : max(x0, x1)]


def render_person(
    background: np.ndarray,
    identity: Identity,
    pose: Pose,
    light: Light,
    rng: np.random.Generator,
    *,
    material: str = "skin",
    wearer: Identity | None = None,
    mask_gloss: float = 0.7,
) -> PersonRender:
    """Draw a person over ``background`` ((H, W, 3) float32, not modified).

    ``material="plastic"`` renders ``identity``'s face as a worn 3D mask (sheen and seam scale with
    ``mask_gloss`` in [0, 1]); ``wearer`` (the attacker) then provides skin of ears/neck, hair and the eyes seen
    through the eye holes. Small features are computed in pixel windows
    around them only.
    """
    h, w = background.shape[:2]
    img = background.astype(np.float32, copy=True)
    s = pose.s
    aa = 1.2 / s  # one pixel (a little more, for smooth edges) in face units
    fr = _Frame(h, w, pose)
    u_all, v_all = fr.u, fr.v
    plastic = material == "plastic"
    body = wearer if (plastic and wearer is not None) else identity
    a = identity.aspect
    fu = pose.yaw * 0.07  # inner features shift with the yaw
    fn = pose.yaw * 0.1  # the nose (closer to the camera) shifts more

    skin = np.asarray(identity.skin, np.float32)
    body_skin = np.asarray(body.skin, np.float32)
    if plastic:  # cast resin/silicone: flatter, slightly more saturated/yellow albedo
        skin = np.clip(skin * np.array([1.08, 0.97, 0.8], np.float32) + 0.05, 0, 1)
    hair_color = np.asarray(body.hair_color, np.float32)

    fine_all = noise(rng, h, w, 0.6)  # pores
    blotch_all = lowfreq(rng, h, w, 7)
    strands_all = noise(rng, h, w, 3.5, sx=0.7)
    zeros = np.zeros((h, w), np.float32)
    person, face_all, top_all, ears_all, back_all, holes_all = (zeros.copy() for _ in range(6))
    shf_all = np.zeros((h, w, 3), np.float32)
    face_rgb_all = np.zeros((h, w, 3), np.float32)

    # --- neck (+ chest skin seen through the neckline) and torso (shoulders), clothes shaded as a broad ellipsoid
    W = fr.win(-6, 6, 0.3, 8)
    u, v, fine, blotch = u_all[W], v_all[W], fine_all[W], blotch_all[W]
    sub = img[W]
    ru_t = 1.45 + a
    torso = inside(_ellipse_sd(u, v, 0.0, 2.55, ru_t, 1.3), aa)
    if body.neckline == "v":
        hole = inside(np.maximum(np.abs(u) - (v - 1.05) * 0.5, v - 1.8) * 0.9, aa) * (v > 1.05)
    elif body.neckline == "round":
        hole = inside(_ellipse_sd(u, v, 0.0, 1.2, 0.36, 0.32), aa)
    else:
        hole = inside(_ellipse_sd(u, v, 0.0, 1.15, 0.26, 0.2), aa)
    nx_t = np.clip(u / ru_t, -1, 1)
    ny_t = np.clip((v - 2.55) / 1.3, -1, 1) * 0.6
    sh_t, _ = _shade(nx_t, ny_t, np.sqrt(np.clip(1 - nx_t**2 - ny_t**2, 0.05, 1)), light)
    cloth = np.asarray(body.cloth, np.float32) * (1 + 0.05 * fine[..., None])
    neck_w = a * 0.5
    half = neck_w + 0.35 * np.clip(v - 1.0, 0, 2)
    neck = inside(np.abs(u) - half, aa)
    nx_n = np.clip(u / half, -1, 1)
    sh_n, _ = _shade(nx_n, np.full_like(u, 0.1), np.sqrt(np.clip(1 - nx_n**2, 0.05, 1)), light)
    under_chin = 1.0 - 0.45 * np.clip(1.0 - (v - 0.75) / 0.45, 0, 1) * (v > 0.5)
    _over(sub, neck, body_skin * sh_n * (under_chin * (1 + 0.03 * blotch))[..., None])
    _over(sub, torso * (1 - hole), cloth * sh_t)
    if body.neckline == "collar":  # shirt collar wings + tie for men
        wing = inside(np.maximum(np.abs(np.abs(u) - 0.22 - (v - 1.0) * 0.2) - 0.09, np.abs(v - 1.22) - 0.15), aa)
        _over(sub, wing, np.full(3, 0.92, np.float32) * sh_t)
        if body.male:
            tie = inside(np.maximum(np.abs(u) - 0.05 - (v - 1.2) * 0.08, np.abs(v - 1.6) - 0.45), aa)
            _over(sub, tie * (v > 1.15), np.array([0.45, 0.08, 0.12], np.float32) * sh_t)
    person[W] = np.maximum(neck, torso)
    ear_shade = np.asarray(light.ambient_color, np.float32) * light.ambient + light.key * 0.6 * np.asarray(
        light.color, np.float32
    )

    # --- hair behind the head
    head_c = -0.12
    back_len = {"long": 1.55, "bob": 0.62, "curly": 0.85}.get(body.hair_style)
    W = fr.win(-a * 1.7, a * 1.7, -1.4, max(back_len or 0.0, 0.7) + 0.1)
    u, v, strands = u_all[W], v_all[W], strands_all[W]
    curly = 0.05 * np.sin(np.arctan2(v - head_c, u) * 9) if body.hair_style == "curly" else 0.0
    hair_rgb = hair_color * (0.78 + 0.22 * strands[..., None])
    nx_h = np.clip(u / (a * 1.15), -1, 1)
    ny_h = np.clip((v - head_c) / 1.05, -1, 1)
    sh_h, sp_h = _shade(nx_h, ny_h, np.sqrt(np.clip(1 - nx_h**2 - ny_h**2, 0.05, 1)), light, shininess=20)
    hair_lit_w = hair_rgb * sh_h + (sp_h * 0.6)[..., None]
    hair_lit = np.zeros((h, w, 3), np.float32)
    hair_lit[W] = hair_lit_w
    hair_win = W
    if back_len is not None:
        half_w = a * (1.30 if body.hair_style != "curly" else 1.45) + curly
        sd_b = np.maximum(np.abs(u) - half_w + 0.1 * np.clip(v - 0.8, 0, None), v - back_len)
        sd_b = np.maximum(sd_b, head_c - v)  # the rectangle hangs below the crown only
        sd_b = np.minimum(sd_b, _ellipse_sd(u, v, 0.0, head_c, a * 1.22 + curly, 1.08))
        back = inside(sd_b + 0.012 * strands, aa)
        _over(img[W], back, hair_lit_w * 0.85)
        back_all[W] = back
    # --- ears (hidden by long hair)
    if body.hair_style != "long":
        for side in (-1, 1):
            W = fr.win(side * a * 0.97 - 0.12, side * a * 0.97 + 0.12, -0.22, 0.25)
            u, v = u_all[W], v_all[W]
            ear = inside(_ellipse_sd(u, v, side * a * 0.97, -0.02, 0.1, 0.18), aa)
            ears_all[W] = np.maximum(ears_all[W], ear)
            _over(img[W], ear, body_skin * ear_shade * 0.85)
            if body.earrings:
                ring = inside(_ellipse_sd(u, v, side * a * 0.99, 0.19, 0.035, 0.035), aa)
                _over(img[W], ring, np.array([0.9, 0.75, 0.3]))

    # --- the face oval, shaded as an ellipsoid with soft geometry (sockets, nose), pores, beard
    FW = fr.win(-a * 1.12, a * 1.12, -1.12, 1.15)
    u, v, fine, blotch, strands = u_all[FW], v_all[FW], fine_all[FW], blotch_all[FW], strands_all[FW]
    vv = np.clip(v, 0, None)
    width = a * (1.0 - identity.jaw * vv**2) * (1.0 + 0.04 * np.clip(-v, 0, None) ** 2)
    r = np.sqrt((u / width) ** 2 + v**2)
    face = inside((r - 1.0) * a, aa)
    nx = np.clip(u / width, -1, 1)
    ny = np.clip(v * 0.85, -1, 1)
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0.03, 1))
    sh_f, sp_f = _shade(nx, ny, nz, light, shininess=10.0)
    alb = (body_skin if plastic else skin) * (1 + body.pore_amp * fine[..., None] + 0.03 * blotch[..., None])
    if not plastic:
        alb = alb + identity.blush * (
            _blob(u, v, a * 0.5 + fu, 0.22, 0.18, 0.12) + _blob(u, v, -a * 0.5 + fu, 0.22, 0.18, 0.12)
        )[..., None] * np.array([0.5, -0.2, -0.15], np.float32)
    ex, ey = identity.eye_spacing, identity.eye_height
    nl, nw = identity.nose_len, identity.nose_width
    nose_v = ey + nl
    nose_side = -1.0 if light.direction[0] > 0 else 1.0
    occ = 1.0 - 0.12 * (_blob(u, v, ex + fu, ey - 0.02, 0.16, 0.1) + _blob(u, v, -ex + fu, ey - 0.02, 0.16, 0.1))
    occ = occ - 0.16 * abs(light.direction[0]) * light.key * _blob(
        u, v, fn + nose_side * nw * 0.9, ey + nl * 0.55, 0.035, nl * 0.45
    )
    occ = occ - 0.12 * _blob(u, v, fn, nose_v + 0.07, 0.08, 0.02)  # shadow under the nose
    occ = occ - 0.06 * _blob(u, v, fn - nose_side * nw * 0.9, ey + nl * 0.6, 0.03, nl * 0.4)
    occ = occ + 0.05 * _blob(u, v, fn, ey + nl * 0.5, 0.025, nl * 0.4)  # bridge highlight
    face_rgb = alb * sh_f * occ[..., None] + (sp_f * 0.7)[..., None]
    face_rgb = face_rgb + (0.06 * light.key * _blob(u, v, fn, nose_v - 0.05, 0.05, 0.05))[..., None]  # oily nose tip
    if plastic:
        # the mask: flat cast albedo, broad glossy highlights, ending below the hairline and inside the jaw line so
        # a band of the wearer's own (differently coloured) skin shows, with a dark seam along its edge
        sh_m, sp_m = _shade(nx, ny, nz, light, shininess=14.0, spec=0.7 + 0.9 * mask_gloss)
        mask_rgb = skin * (1 + 0.01 * blotch[..., None]) * (0.35 + 0.65 * sh_m) * (0.6 + 0.4 * occ[..., None]) + sp_m[..., None]
        edge = np.maximum((r - 0.88) * a, -0.55 + 0.1 * (u / a) ** 2 - v)  # signed distance, face units
        mask = inside(edge, aa)
        face_rgb = face_rgb * (1 - mask[..., None]) + mask_rgb * mask[..., None]
        seam = np.exp(-((edge * s / 2.8) ** 2))
        face_rgb = face_rgb * (1.0 - (0.65 + 0.25 * mask_gloss) * seam)[..., None]
    if body.beard != "none" and not plastic:  # stubble / goatee / full beard on the lower face
        low = np.clip((v - 0.2) / 0.15, 0, 1) * np.clip(1.0 - np.abs(u) / (a * 1.1), 0, 1) ** 0.3
        if body.beard == "goatee":
            low = low * inside(_ellipse_sd(u, v, fu, 0.75, 0.2, 0.3), aa)
        dens = {"stubble": 0.35, "goatee": 0.85, "full": 0.85}[body.beard]
        texture = (
            np.clip(0.55 + 0.35 * strands + 0.15 * fine, 0, 1)
            if body.beard != "stubble"
            else np.clip(0.5 + 0.3 * fine, 0, 1)
        )
        amt = (low * dens * texture)[..., None]
        face_rgb = face_rgb * (1 - amt) + amt * hair_color * (0.78 + 0.22 * strands[..., None]) * sh_f
    _over(img[FW], face, face_rgb)
    face_all[FW], shf_all[FW], face_rgb_all[FW] = face, sh_f, face_rgb
    spf_all = zeros.copy()
    spf_all[FW] = sp_f

    # --- eyebrows
    brow_rgb = (hair_color * 0.8 + 0.05) if body.hair_name not in ("blond", "gray") else hair_color * 0.6
    if plastic:
        brow_rgb = hair_color * 0.5  # painted brows
    for side in (-1, 1):
        cu = side * ex + fu
        W = fr.win(cu - 0.2, cu + 0.2, ey - 0.26, ey - 0.05)
        u, v = u_all[W], v_all[W]
        du = (u - cu) * side
        bw = 0.17
        t = np.clip(du / bw, -1, 1)
        yc = ey - 0.13 - identity.brow_arch * (1 - (t - 0.1) ** 2) * 1.5
        thick = identity.brow_thick * (1.0 - 0.45 * np.clip(t, 0, 1))
        brow = inside(np.abs(v - yc) - thick / 2, aa) * inside(np.abs(du) - bw, aa)
        tex = 0.75 + 0.25 * np.clip(strands_all[W], -1, 1)
        _over(img[W], brow * face_all[W] * (0.9 * tex), brow_rgb * shf_all[W])

    # --- eyes
    eye_open = pose.eye_open * (1.0 - 0.25 * pose.smile)
    landmarks: dict[str, tuple[float, float]] = {}
    for side in (-1, 1):
        cu = side * ex + fu
        cv_ = ey
        W = fr.win(cu - 0.2, cu + 0.2, ey - 0.13, ey + 0.13)
        u, v = u_all[W], v_all[W]
        sub, sh_w, face_w = img[W], shf_all[W], face_all[W]
        ew = 0.115 * identity.eye_size
        eh = 0.058 * identity.eye_size * eye_open
        t = (u - cu) / ew
        para = np.clip(1 - t**2, 0, 1)
        up = cv_ - eh * para * (1 + 0.2 * side * t)
        lo = cv_ + eh * 0.75 * para
        if plastic:  # recessed hole: dark socket ring around the wearer's eye, placed slightly off
            sock = inside(_ellipse_sd(u, v, cu, cv_, ew * 1.25, ew * 0.75), aa)
            _over(sub, sock, face_rgb_all[W] * 0.22)
            holes_all[W] = np.maximum(holes_all[W], sock)
            cu = cu + rng.normal(0, 0.02) + side * 0.015
            cv_ = cv_ + rng.normal(0.01, 0.012)
            ew, eh = ew * 0.85, eh * 0.8
            t = (u - cu) / ew
            para = np.clip(1 - t**2, 0, 1)
            up = cv_ - eh * para
            lo = cv_ + eh * 0.75 * para
        in_eye = inside(np.maximum(up - v, v - lo), aa) * inside(np.abs(t) * ew - ew, aa)
        scl = np.array([0.93, 0.91, 0.88], np.float32) * (0.55 + 0.45 * sh_w) * (1 - 0.25 * np.abs(t))[..., None]
        if plastic:
            scl = scl * 0.6
        _over(sub, in_eye, scl)
        ir = 0.052 * identity.eye_size
        gx, gy = pose.gaze
        icu, icv = cu + gx * 0.03, cv_ + gy * 0.015
        iris = inside(_ellipse_sd(u, v, icu, icv, ir, ir), aa) * in_eye
        iris_rgb = np.asarray(body.iris, np.float32) * (0.75 + 0.3 * np.clip(fine_all[W], -1, 1))[..., None]
        _over(sub, iris, iris_rgb * (0.6 if plastic else 1.0))
        _over(sub, inside(_ellipse_sd(u, v, icu, icv, ir * 0.45, ir * 0.45), aa) * in_eye, np.full(3, 0.03))
        if not plastic:
            glint = inside(_ellipse_sd(u, v, icu + ir * 0.35, icv - ir * 0.35, ir * 0.22, ir * 0.22), aa) * in_eye
            _over(sub, glint * 0.9, np.full(3, 1.0))
        # upper lid line (lashes), stronger with makeup; a crease above
        lid = inside(np.abs(v - up + 0.006) - (0.012 if identity.makeup else 0.008), aa) * (np.abs(t) < 1.05)
        _over(sub, lid * 0.85, np.full(3, 0.06))
        crease = inside(np.abs(v - (cv_ - eh * 1.9 * para - 0.02)) - 0.004, aa) * (np.abs(t) < 0.9)
        _over(sub, crease * 0.25 * face_w, face_rgb_all[W] * 0.6)
        if identity.makeup and not plastic:
            shadow = _blob(u, v, cu, cv_ - eh * 1.6, ew, 0.04) * face_w
            _over(sub, shadow * 0.35, np.array([0.45, 0.3, 0.5], np.float32) * sh_w)
        hole = inside(_ellipse_sd(u, v, side * ex + fu, ey, 0.16, 0.085), aa)
        holes_all[W] = np.maximum(holes_all[W], hole)
        landmarks["eye_left" if side > 0 else "eye_right"] = tuple(map(float, fr.to_px(cu, cv_)))

    # --- nostrils
    for side in (-1, 1):
        cu = fn + side * nw * 0.55
        W = fr.win(cu - 0.05, cu + 0.05, nose_v - 0.03, nose_v + 0.05)
        u, v = u_all[W], v_all[W]
        nos = inside(_ellipse_sd(u, v, cu, nose_v + 0.015, 0.032, 0.017), aa)
        _over(img[W], nos * 0.8 * face_all[W], skin * 0.3 * shf_all[W])

    # --- mouth
    mw = identity.mouth_width
    mv = ey + nl + 0.2
    fm = fu * 1.1
    W = fr.win(fm - mw - 0.1, fm + mw + 0.1, mv - 0.2, mv + 0.2)
    u, v = u_all[W], v_all[W]
    sub, sh_w, face_w, sp_w = img[W], shf_all[W], face_all[W], spf_all[W]
    t = np.clip((u - fm) / mw, -1.2, 1.2)
    para = np.clip(1 - t**2, 0, 1)
    yc = mv - pose.smile * 0.07 * (t**2 - 0.3)
    gap = pose.mouth_open * 0.075 * np.sqrt(para)
    ut = identity.lip_full * 0.035 * np.sqrt(para) + 0.004
    lt = identity.lip_full * 0.05 * para**0.6 + 0.004
    in_w = inside(np.abs(u - fm) - mw, aa)
    upper = inside(np.maximum(yc - gap / 2 - ut - v, v - (yc - gap / 2)), aa) * in_w
    inner = inside(np.maximum(yc - gap / 2 - v, v - (yc + gap / 2)), aa) * in_w
    lower = inside(np.maximum(yc + gap / 2 - v, v - (yc + gap / 2 + lt)), aa) * in_w
    lip = np.asarray(identity.lip_color, np.float32)
    lip_rgb = lip * sh_w + (sp_w * (1.5 if identity.makeup or plastic else 0.8))[..., None]
    _over(sub, upper * face_w, lip_rgb * 0.9)
    _over(sub, lower * face_w, lip_rgb)
    if pose.mouth_open > 0:
        _over(sub, inner * face_w, np.array([0.22, 0.07, 0.07], np.float32) * sh_w)
        teeth = inner * (v < yc - gap / 2 + gap * 0.45)
        _over(sub, teeth * face_w, np.array([0.9, 0.88, 0.8], np.float32) * sh_w)
    else:
        line = inside(np.abs(v - yc) - 0.004, aa) * in_w
        _over(sub, line * face_w * 0.7, lip * 0.35)
    if body.mustache and not plastic:
        must = inside(np.maximum(np.abs(v - (yc - ut - 0.04)) - 0.028, np.abs(u - fm) - mw * 1.05), aa)
        _over(sub, must * face_w * 0.9, hair_color * (0.78 + 0.22 * strands_all[W][..., None]) * sh_w)
    hole = inside(_ellipse_sd(u, v, fm, mv, mw * 1.15, 0.075 + pose.mouth_open * 0.0375), aa)
    holes_all[W] = np.maximum(holes_all[W], hole)
    landmarks["nose"] = tuple(map(float, fr.to_px(fn, nose_v)))
    landmarks["mouth"] = tuple(map(float, fr.to_px(fm, mv)))

    # --- hair on top (cap above the hairline, fringe, sides)
    W = hair_win
    u, v, strands = u_all[W], v_all[W], strands_all[W]
    if body.hair_style != "bald":
        curly = 0.05 * np.sin(np.arctan2(v - head_c, u) * 9) if body.hair_style == "curly" else 0.0
        head = _ellipse_sd(u, v, 0.0, head_c, a * 1.12 + curly, 1.06 + (0.06 if body.hair_style == "curly" else 0))
        hairline = -0.55 + 0.3 * (u / a) ** 2 + 0.55 * np.clip((np.abs(u) / a - 0.78) / 0.2, 0, 1)
        if body.fringe > 0:
            jag = 0.025 * np.sin(u * 45.0) + 0.02 * strands
            hairline = hairline + body.fringe * 0.3 * np.clip(1 - (u / (a * 0.95)) ** 2, 0, 1) + jag
        top = inside(np.maximum(v - hairline, head) + 0.01 * strands, aa)
        _over(img[W], top * (0.75 if body.hair_style == "buzz" else 1.0), hair_lit[W])
        top_all[W] = top
    else:
        sides = inside(np.maximum(_ellipse_sd(u, v, 0.0, head_c, a * 1.06, 1.0), np.abs(u) - a * 0.85), aa)
        sides = sides * (np.abs(u) > a * 0.85) * (v > -0.45) * (v < 0.1)
        _over(img[W], sides * 0.8, hair_lit[W])
    if body.glasses and not plastic:
        W = fr.win(-ex - 0.3, ex + 0.3, ey - 0.15, ey + 0.15)
        u, v = u_all[W], v_all[W]
        frame_col = np.array([0.08, 0.07, 0.07], np.float32)
        for side in (-1, 1):
            cu = side * ex + fu
            box = np.maximum(np.abs(u - cu) - 0.15, np.abs(v - ey) - 0.08) - 0.03
            rim = inside(np.abs(box) - 0.008, aa)
            _over(img[W], rim, frame_col)
            lens = inside(box, aa) * (1 - rim)
            img[W] += (lens * 0.06 * np.clip(1 - (v - ey + 0.1) * 4, 0, 1))[..., None]
        bridge = inside(np.maximum(np.abs(v - ey + 0.03) - 0.007, np.abs(u - fu) - (ex - 0.18)), aa)
        _over(img[W], bridge, frame_col)

    head_alpha = np.clip(face_all + top_all + ears_all + back_all * (v_all < 0.4), 0, 1)
    person = np.clip(np.maximum(person, np.maximum(head_alpha, back_all)), 0, 1)
    # face box as a detector sees it: brows/forehead to chin, cheek to cheek
    corners = np.array(
        [fr.to_px(cu, cv_) for cu, cv_ in ((-a * 0.98, -0.62), (a * 0.98, -0.62), (a * 0.98, 1.02), (-a * 0.98, 1.02))]
    )
    x0, y0 = corners.min(0)
    x1, y1 = corners.max(0)
    return PersonRender(
        rgb=np.clip(img, 0, 1.5),
        alpha=person,
        face_alpha=face_all,
        head_alpha=head_alpha.astype(np.float32),
        holes_alpha=(holes_all * face_all).astype(np.float32),
        face_box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
        landmarks=landmarks,
    )
