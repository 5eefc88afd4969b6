"""Face detection, landmarks and alignment: the face pipeline of ``fasvlm prepare`` (and of inference on user images).

Public API (reusable outside ``prepare``)::

    faces = detect_faces(image)                       # RGB uint8 (H, W, 3) -> [Face], largest first
    crop = align_face(image, faces[0], size=224)      # PIL.Image, eye centres and nose on the template

Where a face comes from, in ``prepare``'s order (the manifest records which one as ``extra["crop"]``, and the detector
name as ``extra["detector"]``):

1. ``"box"``: the box the release ships (``record.bbox``, or the per-frame boxes of the adapter's ``read_faces``);
2. ``"detector"``: dlib (optional ``faces`` extra: ``pip install 'fasvlm[faces]'``): the HOG frontal-face detector
   built into the ``dlib-bin`` wheel (``dlib``), or the CNN (MMOD) detector ``mmod_human_face_detector.dat``
   (``dlib_cnn``, slower on CPU, finds rotated and small faces); the largest face;
3. ``"haar"``: OpenCV's Haar cascade ``haarcascade_frontalface_default.xml`` (ships with OpenCV), largest face; the
   fallback when dlib finds nothing, and the only detector without the extra;
4. ``"center"``: no face found; the centre square of the frame (``fasvlm prepare --no-face skip`` drops these).

``"full"`` marks releases whose images are already face crops (WMCA, CASIA-SURF, CeFA, HiFiMask, PADISI): the whole
image is resized.

Landmarks and alignment (``--align five_point``): dlib's 5-point model ``shape_predictor_5_face_landmarks.dat``
(shipped in ``face-recognition-models``; CC0, unlike the 68-point model, which is trained on iBUG 300-W and
restricted to research use) places the two corners of each eye and the bottom of the nose, on any box (shipped,
dlib's or Haar's). These are not MTCNN's five points (eye centres, nose tip, mouth corners), so the template is
defined on what dlib gives: the two **eye centres** (mean of each eye's corners) and the **nose**. Its coordinates are
those three points of the mean face shape of the field's MTCNN alignment (``extract_image_chips`` of
mxnet_mtcnn_face_detection, used by InstructFLIP with padding 0.37 to 224 px, reference notes
``methods-instructflip-flip-metrics.md`` step b): eyes (0.224152, 0.2119465) and (0.75610125, 0.2119465), nose
(0.490127, 0.628106), mapped to pixels as ``(padding + m) / (1 + 2 padding) * size``. dlib's nose point lies a few
pixels below MTCNN's nose tip; the least-squares similarity (OpenCV ``estimateAffinePartial2D``: rotation, uniform
scale, translation) spreads that difference over the three points. Measured on scikit-image's ``astronaut``
photograph (tests/test_faces.py): the hand-marked pupils land 1.9 and 2.1 px from the template's eye centres at 224 px.
``--align five_point`` needs the extra (``prepare`` refuses it without); ``--align none`` uses the box crop below. The
manifest says which (``extra["align"]``) and keeps the landmarks (``extra["landmarks"]``, raw pixels).

Box crop geometry: a square of side ``max(w, h) * (1 + margin)`` centred on the box, padded with black where it leaves
the frame (faces are never stretched), resized to ``size x size``.

dlib's model files are located with :mod:`importlib` (``face_recognition_models``' own ``__init__`` imports
``pkg_resources``, which current setuptools no longer ships, so it is never imported).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = [
    "CROP_FLAGS",
    "CROP_JITTER",
    "padded_size",
    "DETECTORS",
    "Box",
    "Face",
    "FaceDetector",
    "DlibFaceDetector",
    "FiveLandmarks",
    "dlib_available",
    "dlib_model_path",
    "make_detector",
    "detect_faces",
    "eye_nose",
    "five_point_template",
    "similarity_matrix",
    "align_face",
    "align_array",
    "with_landmarks",
    "transform_box",
    "clean_box",
    "nearest_box",
    "square_region",
    "crop_box",
    "crop_center",
    "resize_full",
    "HaarFaceDetector",
]

CROP_FLAGS: tuple[str, ...] = ("box", "detector", "haar", "center", "full")
# --detector: auto = dlib when the faces extra is installed, else haar
DETECTORS: tuple[str, ...] = ("auto", "dlib", "dlib_cnn", "haar", "none")
MODELS_PACKAGE = "face_recognition_models"
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"
CNN_MODEL = "mmod_human_face_detector.dat"
# eye centres (image left, image right) and nose of the field's MTCNN mean face shape (module docstring)
TEMPLATE_EYES_NOSE = np.array([[0.224152, 0.2119465], [0.75610125, 0.2119465], [0.490127, 0.628106]])
FIELD_PADDING = 0.37  # InstructFLIP: extract_image_chips(image, points, 224, 0.37)

Box = tuple[float, float, float, float]  # (x, y, w, h) in pixels

# The training crop's shift/scale jitter (FASDataModule, FaceTransform): +-8% of the window side. ``fasvlm prepare``
# stores 1.5x this much context on each side of a face crop (``--pad 0.12``) so that jittered windows stay inside it.
CROP_JITTER = 0.08


def padded_size(size: int, pad: float) -> int:
    """Side of a crop of ``size`` with ``ceil(pad * size)`` pixels of context on each side (224, 0.12 -> 278)."""
    return int(size) + 2 * math.ceil(round(pad * size, 6))


# boxes narrower than this are annotation defects (CelebA-Spoof has some; Intel's loader drops w < 3 or h < 3)
MIN_BOX_SIDE = 3.0


def clean_box(box: Sequence[float] | None, width: int, height: int) -> Box | None:
    """Clip ``box`` to the image; None when it is missing, degenerate or entirely outside the image."""
    if box is None:
        return None
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not all(np.isfinite([x, y, w, h])):
        return None
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def nearest_box(boxes: Mapping[int, Sequence[float]], frame: int, max_gap: int = 10) -> Box | None:
    """The box of ``frame``, else of the nearest annotated frame at most ``max_gap`` frames away (face files skip
    frames where their detector failed)."""
    if frame in boxes:
        return tuple(float(v) for v in boxes[frame])  # type: ignore[return-value]
    best = None
    for f in boxes:
        gap = abs(f - frame)
        if gap <= max_gap and (best is None or gap < abs(best - frame) or (gap == abs(best - frame) and f < best)):
            best = f
    return None if best is None else tuple(float(v) for v in boxes[best])  # type: ignore[return-value]


def square_region(box: Box, margin: float) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the square of side ``max(w, h) * (1 + margin)`` centred on ``box``."""
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * (1.0 + margin))))
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def _cut(image: np.ndarray, x0: int, y0: int, side_w: int, side_h: int) -> np.ndarray:
    """``image[y0:y0+side_h, x0:x0+side_w]`` with black padding where the window leaves the image."""
    h, w = image.shape[:2]
    out = np.zeros((side_h, side_w) + image.shape[2:], dtype=image.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side_w, w), min(y0 + side_h, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def crop_box(image: np.ndarray, box: Box, size: int, margin: float, pad: float = 0.0) -> tuple[np.ndarray, Box]:
    """Square crop around ``box`` resized to ``size``; returns the crop and the box in crop pixels.

    ``pad`` > 0 keeps context around that square: the crop is ``padded_size(size, pad)`` pixels wide at the same
    scale, so its central ``size`` x ``size`` is the plain crop (to a pixel: the square is cut at integer raw pixels).
    """
    x0, y0, side = square_region(box, margin)
    out = padded_size(size, pad)
    if out != size:
        extra = int(round(side * (out - size) / (2 * size)))
        x0, y0, side = x0 - extra, y0 - extra, side + 2 * extra
    crop = _resize(_cut(image, x0, y0, side, side), out)
    scale = out / side
    x, y, w, h = box
    return crop, ((x - x0) * scale, (y - y0) * scale, w * scale, h * scale)


def crop_center(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square (side = the shorter image side) resized to ``size``."""
    h, w = image.shape[:2]
    side = min(h, w)
    return _resize(_cut(image, (w - side) // 2, (h - side) // 2, side, side), size)


def resize_full(image: np.ndarray, size: int) -> np.ndarray:
    """The whole image resized to ``size x size`` (for releases that are already face crops)."""
    return _resize(image, size)


@dataclass(frozen=True)
class Face:
    """One detected (or shipped) face in image pixels.

    ``box``: ``(x, y, w, h)``; ``landmarks``: dlib's 5 points ``(5, 2)`` float (two corners of one eye, two of the
    other, bottom of the nose), or None; ``score``: the detector's confidence (1.0 for shipped boxes, the HOG/MMOD
    score for dlib, the neighbour count for Haar); ``detector``: ``"release"``, ``"dlib"``, ``"dlib_cnn"`` or
    ``"haar"``.
    """

    box: Box
    landmarks: np.ndarray | None
    score: float
    detector: str

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])


def dlib_available() -> bool:
    """True when the ``faces`` extra (``dlib-bin`` + ``face-recognition-models``) is installed."""
    return importlib.util.find_spec("dlib") is not None and importlib.util.find_spec(MODELS_PACKAGE) is not None


def dlib_model_path(name: str) -> Path:
    """Path of a model file shipped in ``face-recognition-models`` (found with importlib; the package's own
    ``__init__`` needs ``pkg_resources`` and is never imported)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"dlib's model files need the package {MODELS_PACKAGE!r}: pip install 'fasvlm[faces]'", name=MODELS_PACKAGE
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} is not in {list(spec.submodule_search_locations)}; reinstall {MODELS_PACKAGE}")


def _scaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    import cv2

    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


class FiveLandmarks:
    """dlib's 5-point shape predictor on any face box: ``(5, 2)`` points in image pixels."""

    def __init__(self):
        import dlib

        self._predictor = dlib.shape_predictor(str(dlib_model_path(LANDMARK_MODEL)))

    def __call__(self, image: np.ndarray, box: Box) -> np.ndarray:
        import dlib

        x, y, w, h = box
        rect = dlib.rectangle(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h)))
        shape = self._predictor(_rgb(image), rect)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)


class DlibFaceDetector:
    """dlib's HOG frontal-face detector (``model="hog"``) or CNN MMOD detector (``model="cnn"``), with 5 landmarks.

    Images are scaled so that their longer side is at most ``max_side`` before detection; dlib then searches at
    that size, and only when it finds nothing again after upsampling up to ``upsample`` times (small faces; HOG's
    smallest face is about 80 px, 40 px after one upsampling; one upsampling costs about 4x the time). Boxes are
    returned in the original pixels and the landmarks are placed on the original image.
    """

    def __init__(self, model: str = "hog", max_side: int = 800, upsample: int = 1, landmarks: bool = True):
        import dlib

        if model not in ("hog", "cnn"):
            raise ValueError(f"dlib model must be 'hog' or 'cnn', got {model!r}")
        self.model, self.max_side, self.upsample = model, max_side, upsample
        self.name = "dlib" if model == "hog" else "dlib_cnn"
        if model == "hog":
            self._detector = dlib.get_frontal_face_detector()
        else:
            self._detector = dlib.cnn_face_detection_model_v1(str(dlib_model_path(CNN_MODEL)))
        self._landmarks = FiveLandmarks() if landmarks else None

    def detect_faces(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB (or grey) uint8 image, largest first."""
        image = _rgb(image)
        small, scale = _scaled(image, self.max_side)
        found: list[tuple[Box, float]] = []
        for upsample in range(self.upsample + 1):
            if self.model == "hog":
                rects, scores, _ = self._detector.run(small, upsample, 0.0)
                pairs = list(zip(rects, scores))
            else:
                pairs = [(d.rect, d.confidence) for d in self._detector(small, upsample)]
            if pairs:
                break
        for r, score in pairs:
            box = (r.left() / scale, r.top() / scale, r.width() / scale, r.height() / scale)
            found.append((box, float(score)))
        faces = []
        for box, score in found:
            box = clean_box(box, image.shape[1], image.shape[0])
            if box is None:
                continue
            points = self._landmarks(image, box) if self._landmarks is not None else None
            faces.append(Face(box, points, score, self.name))
        return sorted(faces, key=lambda f: -f.area)

    def detect(self, image: np.ndarray) -> Box | None:
        faces = self.detect_faces(image)
        return faces[0].box if faces else None


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade; returns the largest face.

    Images are scaled so that their longer side is at most ``max_side`` before detection (1080p frames take ~10 ms
    instead of ~150 ms); faces smaller than ``min_face`` of the shorter side are ignored.
    """

    CASCADE = "haarcascade_frontalface_default.xml"

    def __init__(self, max_side: int = 640, min_face: float = 0.08, min_neighbors: int = 5):
        import cv2

        path = cv2.data.haarcascades + self.CASCADE
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load OpenCV's Haar cascade {path}; reinstall opencv-python-headless")
        self.max_side, self.min_face, self.min_neighbors = max_side, min_face, min_neighbors

    name = "haar"

    def detect_faces(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB (or grey) image, largest first (no landmarks)."""
        box = self.detect(image)
        return [] if box is None else [Face(tuple(float(v) for v in box), None, 1.0, "haar")]

    def detect(self, image: np.ndarray) -> Box | None:
        """Largest face in an RGB (or grey) image as ``(x, y, w, h)`` in its pixels, or None."""
        import cv2

        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        min_px = max(20, int(min(gray.shape) * self.min_face))
        faces = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(min_px, min_px)
        )
        if len(faces) == 0:
            return None
        x, y, fw, fh = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return (x / scale, y / scale, fw / scale, fh / scale)


FaceDetector = DlibFaceDetector | HaarFaceDetector


def make_detector(name: str = "auto", **kwargs) -> FaceDetector | None:
    """A detector by ``--detector`` name (:data:`DETECTORS`): ``auto`` is dlib's HOG detector when the ``faces``
    extra is installed, else Haar; ``none`` is None. Naming ``dlib``/``dlib_cnn`` without the extra is an error
    that says how to install it."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; valid: {', '.join(DETECTORS)}")
    if name == "none":
        return None
    if name == "auto":
        name = "dlib" if dlib_available() else "haar"
    if name == "haar":
        return HaarFaceDetector(**kwargs)
    if not dlib_available():
        raise ModuleNotFoundError(
            f"--detector {name} needs the faces extra (dlib-bin, face-recognition-models): pip install 'fasvlm[faces]'",
            name="dlib",
        )
    return DlibFaceDetector("hog" if name == "dlib" else "cnn", **kwargs)


@functools.lru_cache(maxsize=4)
def _cached_detector(name: str) -> FaceDetector | None:
    return make_detector(name)


def detect_faces(image: np.ndarray, detector: str = "auto") -> list[Face]:
    """Faces in an RGB uint8 ``(H, W, 3)`` image, largest first (:func:`make_detector` names; one detector instance
    per process and name). ``auto`` with no face found by dlib also tries Haar, as ``prepare`` does."""
    faces = _cached_detector(detector).detect_faces(image) if detector != "none" else []
    if not faces and detector == "auto" and dlib_available():
        faces = _cached_detector("haar").detect_faces(image)
    return faces


def eye_nose(landmarks: np.ndarray) -> np.ndarray:
    """``(3, 2)``: image-left eye centre, image-right eye centre, nose, from dlib's 5 points (two corners of each eye,
    then the nose; the eye centre is the mean of its corners)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected dlib's 5 landmarks as a (5, 2) array, got shape {pts.shape}")
    a, b = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
    left, right = (a, b) if a[0] <= b[0] else (b, a)
    return np.stack([left, right, pts[4]])


def five_point_template(size: int, padding: float = FIELD_PADDING) -> np.ndarray:
    """``(3, 2)`` target pixels of the eye centres and the nose in a ``size x size`` crop (module docstring)."""
    return (padding + TEMPLATE_EYES_NOSE) / (1.0 + 2.0 * padding) * size


def similarity_matrix(points: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The ``2x3`` least-squares similarity (rotation, uniform scale, translation) taking ``points`` to
    ``template`` (OpenCV ``estimateAffinePartial2D``; every point is an inlier)."""
    import cv2

    src = np.asarray(points, dtype=np.float32).reshape(-1, 1, 2)
    dst = np.asarray(template, dtype=np.float32).reshape(-1, 1, 2)
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e6,
                                            refineIters=50)
    if matrix is None:
        raise ValueError(f"no similarity transform for the points {points.tolist()}")
    return matrix


def align_array(image: np.ndarray, face: Face, size: int, padding: float = FIELD_PADDING,
                template: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The aligned ``size x size`` crop as an array, and the ``2x3`` matrix from image to crop pixels."""
    import cv2

    if face.landmarks is None:
        raise ValueError(f"face from {face.detector} has no landmarks; five-point alignment needs them")
    target = five_point_template(size, padding) if template is None else np.asarray(template, dtype=np.float64)
    matrix = similarity_matrix(eye_nose(face.landmarks), target)
    crop = cv2.warpAffine(_rgb(image), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    return crop, matrix


def align_face(image: np.ndarray, face: Face, size: int = 224, template: np.ndarray | None = None,
               padding: float = FIELD_PADDING):
    """The face warped so that its eye centres and nose land on ``template`` (default :func:`five_point_template`
    of ``size`` and ``padding``), as a ``size x size`` RGB ``PIL.Image``."""
    from PIL import Image

    return Image.fromarray(align_array(image, face, size, padding, template)[0])


def with_landmarks(face: Face, landmarks: np.ndarray | None) -> Face:
    """``face`` with ``landmarks`` set (for a shipped or Haar box that the 5-point model was run on)."""
    return replace(face, landmarks=landmarks)


def transform_box(box: Box, matrix: np.ndarray) -> Box:
    """The axis-aligned bounding box of ``box``'s corners under the ``2x3`` ``matrix``."""
    x, y, w, h = box
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], dtype=np.float64)
    mapped = corners @ np.asarray(matrix, dtype=np.float64).T
    x0, y0 = mapped.min(axis=0)
    x1, y1 = mapped.max(axis=0)
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
