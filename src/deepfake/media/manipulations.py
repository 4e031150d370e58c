"""Face manipulations for the built-in sample: three families that differ in kind, as FF++'s do.

- :func:`swap_face` (``Deepfakes``, Celeb-DF, DeeperForensics, DFDC): another person's face,
  rendered by a face-swap generator at ``generator_size`` pixels (:func:`render_generator_face`),
  pasted onto the target with a similarity warp, LAB colour transfer and a feathered mask. The
  identity changes; a larger generator gives a sharper, higher-quality swap.
- :func:`reenact_face` (``Face2Face``): expression reenactment. The target keeps its identity and
  its own texture; only the geometry of its mouth, eyelids and jaw moves, by a smooth local warp
  whose strength over time (:func:`expression_drive`) follows the source's motion, blended back
  with a feathered mask. With a zero drive it returns the frame unchanged.
- :func:`retexture_face` (``NeuralTextures``): re-rendered texture. The geometry stays; the lower
  face and mouth are re-synthesised the way a neural renderer outputs them: rendered at a lower
  resolution and upsampled, skin smoothed, a slight tone shift and a faint periodic upsampling
  pattern, blended back with a feathered mask. The look is drawn once per clip
  (:meth:`TextureStyle.draw`).

Every function returns ``(frame, soft mask)``: the mask is float32 in 0..1 and every pixel where
it is 0 is exactly the input frame's, so the mask is the manipulation mask FF++ ships. Faces are
located by 5 landmarks (eyes, nose tip, mouth corners) mapped onto ArcFace's 112 x 112 template,
so every region below is drawn in template coordinates and follows the face's pose and size.
All randomness comes from an explicit ``numpy.random.Generator``; the rest is deterministic.

Layer: media (NumPy + OpenCV; imports nothing from deepfake but ``core``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# ArcFace's 5-point template (eyes, nose tip, mouth corners) in a 112 x 112 crop; the mask ellipses
# below are drawn in the same coordinates, so they follow each face's landmarks.
TEMPLATE_SIDE = 112
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# The face swap's mask: the brows and a band of forehead (y 24, below most hairlines and cap brims)
# down to below the lips (y 104), cheek to cheek.
MASK_CENTRE, MASK_AXES, MASK_POINTS = (56.0, 64.0), (35.0, 40.0), 72
FEATHER = 0.25  # feather radius as a fraction of the mask's half width
COLOUR_RATIO = (0.1, 4.0)  # clamp on std ratios: grey photos have (almost) no chroma spread

# ---- Face2Face: the reenactment warp
# Where the warp may act: eyes down past the chin (y 24..116), so an opening jaw can move.
REENACT_CENTRE, REENACT_AXES = (56.0, 70.0), (38.0, 46.0)
# Drive channels, each a per-frame coefficient: mouth opening (0..1), smile (-1..1: corners out and
# up, or pursed), blink (0..1) and a sideways jaw shift (-1..1).
DRIVE_CHANNELS = ("mouth", "smile", "blink", "jaw")
# Control points of the warp: (x, y) in template pixels, the radius of their compactly supported
# (Wendland) influence, and their displacement in template pixels per unit of each drive channel.
_CONTROL_POINTS = np.array(
    [
        [56.0, 86.0],  # upper lip
        [56.0, 98.0],  # lower lip
        [56.0, 108.0],  # chin
        [41.5, 92.4],  # mouth corners
        [70.7, 92.2],
        [38.3, 47.5],  # upper eyelids
        [73.5, 47.3],
        [38.3, 55.5],  # lower eyelids
        [73.5, 55.3],
    ]
)
_CONTROL_RADII = np.array([13.0, 15.0, 20.0, 12.0, 12.0, 9.0, 9.0, 7.0, 7.0])
_CONTROL_MOTION = np.array(  # (points, channels, xy): mouth, smile, blink, jaw
    [
        [[0.0, -1.0], [0.0, -0.4], [0.0, 0.0], [0.4, 0.0]],
        [[0.0, 4.0], [0.0, -0.5], [0.0, 0.0], [1.2, 0.0]],
        [[0.0, 3.2], [0.0, 0.0], [0.0, 0.0], [2.0, 0.0]],
        [[0.0, 0.8], [-2.4, -1.6], [0.0, 0.0], [0.5, 0.0]],
        [[0.0, 0.8], [2.4, -1.6], [0.0, 0.0], [0.5, 0.0]],
        [[0.0, 0.0], [0.0, 0.4], [0.0, 2.4], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, 0.4], [0.0, 2.4], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, -0.5], [0.0, -0.8], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, -0.5], [0.0, -0.8], [0.0, 0.0]],
    ]
)
REENACT_GAIN = ((0.7, 1.0), (0.5, 1.0), (0.8, 1.0), (0.3, 0.8))  # per-clip amplitude range per channel
BLINK_SECONDS = (0.15, 0.3)  # one blink's length
BLINK_EVERY = 3.0  # seconds per blink, on average

# ---- NeuralTextures: the re-rendered lower face
# Below the nose tip (y 74) to the chin (y 112), cheek to cheek at the mouth.
TEXTURE_CENTRE, TEXTURE_AXES = (56.0, 93.0), (29.0, 19.0)
RENDER_SCALE = (0.3, 0.45)  # the renderer's resolution as a fraction of the frame's
SMOOTH_SIGMA = (12.0, 20.0)  # bilateral filter's colour sigma (0..255): skin smoothing
TONE_SHIFT_L = (0.8, 1.8)  # |shift| of LAB lightness (0..100)
TONE_SHIFT_AB = (0.5, 1.5)  # |shift| of LAB a* and b*
PATTERN_PERIOD = (3, 4)  # pixels: a stride-3/4 upsampling layer's grid
PATTERN_AMPLITUDE = (1.0, 2.0)  # grey levels (0..255)


# ----------------------------------------------------------------------------- geometry


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst, as a 2x3."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / (src_c**2).sum(axis=1).mean())
    shift = mu_dst - scale * rotation @ mu_src
    return np.hstack([scale * rotation, shift[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def to_template(landmarks: np.ndarray) -> np.ndarray:
    """2x3 similarity mapping frame coordinates to the face's template coordinates."""
    return cv2.invertAffineTransform(umeyama(TEMPLATE, np.asarray(landmarks, dtype=np.float64).reshape(5, 2)))


# ----------------------------------------------------------------------------- masks


def mask_roi(
    shape: tuple[int, ...],
    landmarks: np.ndarray,
    centre: tuple[float, float] = MASK_CENTRE,
    axes: tuple[float, float] = MASK_AXES,
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """A template-space ellipse on the face at ``landmarks``: its bounding box in the frame plus its
    hard (uint8) and feathered (float32) masks there; None when it is off the frame."""
    to_frame = umeyama(TEMPLATE, landmarks)
    angles = np.linspace(0.0, 2.0 * np.pi, MASK_POINTS, endpoint=False)
    ellipse = np.stack([centre[0] + axes[0] * np.cos(angles), centre[1] + axes[1] * np.sin(angles)], axis=1)
    polygon = apply_affine(to_frame, ellipse)
    scale = float(np.hypot(*to_frame[:, 0]))
    radius = max(1, round(FEATHER * min(axes) * scale))
    height, width = shape[:2]
    x0 = max(0, math.floor(polygon[:, 0].min()) - 2)
    y0 = max(0, math.floor(polygon[:, 1].min()) - 2)
    x1 = min(width, math.ceil(polygon[:, 0].max()) + 3)
    y1 = min(height, math.ceil(polygon[:, 1].max()) + 3)
    if x1 <= x0 or y1 <= y0:
        return None
    hard = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    # 4 fractional bits: sub-pixel polygon edges, still integer (deterministic) rasterisation.
    points = np.rint((polygon - [x0, y0]) * 16.0).astype(np.int32)
    cv2.fillPoly(hard, [points], 255, lineType=cv2.LINE_8, shift=4)
    if not hard.any():
        return None
    # A square erosion of radius r then a (2r+1)-wide blur keeps the feather inside the hard mask.
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    eroded = cv2.erode(hard, kernel, borderType=cv2.BORDER_REPLICATE)
    soft = cv2.GaussianBlur(eroded.astype(np.float32) / 255.0, (2 * radius + 1, 2 * radius + 1), radius / 2.0)
    soft[hard == 0] = 0.0
    return (x0, y0, x1, y1), hard, soft


def _blend(region: np.ndarray, rendered: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``region`` (uint8) with ``rendered`` (float 0..1) blended in by ``alpha``; exact where alpha is 0."""
    a = alpha[..., None]
    mixed = region.astype(np.float32) / 255.0 * (1.0 - a) + rendered * a
    mixed = np.clip(np.rint(mixed * 255.0), 0, 255).astype(np.uint8)
    return np.where(a > 0, mixed, region)


# ----------------------------------------------------------------------------- face swap


def _match_colour(source: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``source`` (BGR uint8) with its LAB mean/std inside ``region`` moved to ``target``'s.

    Returns float32 BGR in 0..1.
    """
    src = cv2.cvtColor(source.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    dst = cv2.cvtColor(target.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    inside = region.astype(bool)
    src_px, dst_px = src[inside].astype(np.float64), dst[inside].astype(np.float64)
    src_mean, dst_mean = src_px.mean(axis=0), dst_px.mean(axis=0)
    # +1 keeps a grey photo's near-zero chroma spread from exploding the ratio.
    ratio = np.clip((dst_px.std(axis=0) + 1.0) / (src_px.std(axis=0) + 1.0), *COLOUR_RATIO)
    moved = ((src - src_mean) * ratio + dst_mean).astype(np.float32)
    return np.clip(cv2.cvtColor(moved, cv2.COLOR_LAB2BGR), 0.0, 1.0)


def render_generator_face(
    donor_image: np.ndarray, donor_landmarks: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The donor's face as a face-swap generator outputs it: aligned to the 5-point template in a
    ``size`` x ``size`` image. Returns (face, its landmarks). Upscaling it into a larger target face
    leaves the soft, detail-poor look that face-swap videos show; a larger ``size`` is a better
    generator."""
    points = np.asarray(donor_landmarks, dtype=np.float64).reshape(5, 2)
    template = TEMPLATE * (size / TEMPLATE_SIDE)
    scale = float(np.hypot(*umeyama(points, template)[:, 0]))
    if scale < 1.0:  # shrink with area averaging first: a bilinear warp alone would alias
        shrunk = (max(1, round(donor_image.shape[1] * scale)), max(1, round(donor_image.shape[0] * scale)))
        points = points * (shrunk[0] / donor_image.shape[1], shrunk[1] / donor_image.shape[0])
        donor_image = cv2.resize(donor_image, shrunk, interpolation=cv2.INTER_AREA)
    face = cv2.warpAffine(
        donor_image, umeyama(points, template), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return face, template


def swap_face(
    frame: np.ndarray, target_landmarks: np.ndarray, donor_image: np.ndarray, donor_landmarks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Swap the donor's face onto the face at ``target_landmarks``; return (new frame, soft mask).

    Pixels where the returned mask is 0 are exactly the input frame's.
    """
    out = frame.copy()
    mask = np.zeros(frame.shape[:2], dtype=np.float32)
    target = np.asarray(target_landmarks, dtype=np.float64).reshape(5, 2)
    found = mask_roi(frame.shape, target)
    if found is None:
        return out, mask
    (x0, y0, x1, y1), hard, soft = found
    warp = umeyama(donor_landmarks, target)
    warp[:, 2] -= (x0, y0)  # draw straight into the region of interest
    donor = cv2.warpAffine(
        donor_image, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    region = frame[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = _blend(region, _match_colour(donor, region, hard), soft)
    mask[y0:y1, x0:x1] = soft
    return out, mask


# ----------------------------------------------------------------------------- Face2Face


def _normalised(signal: np.ndarray) -> np.ndarray:
    """Zero-mean, scaled into -1..1 by its largest excursion; a (numerically) flat signal gives 0."""
    centred = signal - signal.mean()
    peak = float(np.abs(centred).max()) if len(centred) else 0.0
    return centred / peak if peak > 1e-6 else np.zeros_like(centred)


def expression_drive(source_landmarks: np.ndarray, rng: np.random.Generator, fps: float) -> np.ndarray:
    """(frames, 4) drive coefficients (``DRIVE_CHANNELS``) that follow the source's motion.

    The source's head motion (its landmarks over time) is turned into expressions the way a
    reenactment transfers them: its vertical motion opens the mouth, its change in size draws the
    smile, its sideways motion shifts the jaw; blinks come at random times. Amplitudes are drawn
    once per clip from ``rng``.
    """
    points = np.asarray(source_landmarks, dtype=np.float64).reshape(-1, 5, 2)
    frames = len(points)
    eyes = np.linalg.norm(points[:, 1] - points[:, 0], axis=1)
    centre = points.mean(axis=1)
    gains = [float(rng.uniform(*bounds)) for bounds in REENACT_GAIN]
    drive = np.zeros((frames, len(DRIVE_CHANNELS)))
    drive[:, 0] = gains[0] * (0.5 + 0.5 * _normalised(centre[:, 1]))
    drive[:, 1] = gains[1] * _normalised(eyes)
    drive[:, 3] = gains[3] * _normalised(centre[:, 0])
    blinks = max(1, round(frames / fps / BLINK_EVERY))
    t = np.arange(frames, dtype=np.float64)
    for _ in range(blinks):
        middle = float(rng.uniform(0.0, frames))
        half = max(1.0, float(rng.uniform(*BLINK_SECONDS)) * fps / 2.0)
        bump = np.cos(np.clip((t - middle) / half, -1.0, 1.0) * np.pi / 2.0) ** 2
        drive[:, 2] = np.maximum(drive[:, 2], gains[2] * bump)
    return drive


def _wendland(r: np.ndarray) -> np.ndarray:
    """Wendland's C2 kernel: 1 at 0, smooth, exactly 0 from r = 1 on."""
    r = np.clip(r, 0.0, 1.0)
    return (1.0 - r) ** 4 * (4.0 * r + 1.0)


def reenact_face(frame: np.ndarray, landmarks: np.ndarray, drive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-animate the face at ``landmarks`` by one frame's drive (``DRIVE_CHANNELS``); return (frame, mask).

    Identity and texture are the target's own: pixels are only moved, by a smooth warp around the
    mouth, eyelids and jaw (exactly still beyond :func:`reenact_reach`), then blended back with a
    feathered mask of the face from the eyes to the chin. Where the mask is 0 the frame is untouched;
    a zero drive returns the frame unchanged.
    """
    out = frame.copy()
    mask = np.zeros(frame.shape[:2], dtype=np.float32)
    target = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    found = mask_roi(frame.shape, target, REENACT_CENTRE, REENACT_AXES)
    drive = np.asarray(drive, dtype=np.float64).reshape(len(DRIVE_CHANNELS))
    if found is None:
        return out, mask
    (x0, y0, x1, y1), _, soft = found
    mask[y0:y1, x0:x1] = soft
    if not drive.any():  # a neutral frame: the face model is rendered, nothing moves
        return out, mask
    to_frame = umeyama(TEMPLATE, target)
    inverse = cv2.invertAffineTransform(to_frame)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u = xs * inverse[0, 0] + ys * inverse[0, 1] + inverse[0, 2]
    v = xs * inverse[1, 0] + ys * inverse[1, 1] + inverse[1, 2]
    displacement = np.einsum("pcx,c->px", _CONTROL_MOTION, drive)  # (points, 2) in template pixels
    du = np.zeros_like(u)
    dv = np.zeros_like(v)
    for (cx, cy), radius, (mx, my) in zip(_CONTROL_POINTS, _CONTROL_RADII, displacement, strict=True):
        if mx == 0.0 and my == 0.0:
            continue
        weight = _wendland(np.hypot(u - cx, v - cy) / radius)
        du += weight * mx
        dv += weight * my
    # Template displacement -> frame displacement (the similarity's linear part), then a backward
    # warp: the content at p - d(p) moves to p.
    dx = to_frame[0, 0] * du + to_frame[0, 1] * dv
    dy = to_frame[1, 0] * du + to_frame[1, 1] * dv
    map_x = (xs - dx).astype(np.float32)
    map_y = (ys - dy).astype(np.float32)
    warped = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # The rendered face model's region (eyes to chin), feathered, as FF++'s Face2Face masks show it;
    # outside the controls' reach the warp is the identity, so those pixels stay exactly as they were.
    region = frame[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = _blend(region, warped.astype(np.float32) / 255.0, soft)
    return out, mask


def reenact_reach(shape: tuple[int, ...], landmarks: np.ndarray) -> np.ndarray:
    """Bool map of the pixels :func:`reenact_face` may move: within reach of a control point."""
    inverse = to_template(landmarks)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    u = xs * inverse[0, 0] + ys * inverse[0, 1] + inverse[0, 2]
    v = xs * inverse[1, 0] + ys * inverse[1, 1] + inverse[1, 2]
    reach = np.zeros(shape[:2], dtype=bool)
    for (cx, cy), radius in zip(_CONTROL_POINTS, _CONTROL_RADII, strict=True):
        reach |= np.hypot(u - cx, v - cy) < radius
    return reach


# ----------------------------------------------------------------------------- NeuralTextures


@dataclass(frozen=True)
class TextureStyle:
    """How one clip's neural renderer looks: drawn once per clip, applied to every frame."""

    render_scale: float  # renderer resolution / frame resolution
    smooth_sigma: float  # bilateral colour sigma (skin smoothing)
    tone: tuple[float, float, float]  # LAB shift (L 0..100, a*, b*)
    period: int  # upsampling pattern period in pixels
    amplitude: float  # upsampling pattern amplitude in grey levels
    phase: tuple[int, int]  # the pattern grid's offset in pixels

    @classmethod
    def draw(cls, rng: np.random.Generator) -> TextureStyle:
        signs = rng.choice([-1.0, 1.0], size=3)
        period = int(rng.integers(PATTERN_PERIOD[0], PATTERN_PERIOD[1] + 1))
        return cls(
            render_scale=float(rng.uniform(*RENDER_SCALE)),
            smooth_sigma=float(rng.uniform(*SMOOTH_SIGMA)),
            tone=(
                float(signs[0] * rng.uniform(*TONE_SHIFT_L)),
                float(signs[1] * rng.uniform(*TONE_SHIFT_AB)),
                float(signs[2] * rng.uniform(*TONE_SHIFT_AB)),
            ),
            period=period,
            amplitude=float(rng.uniform(*PATTERN_AMPLITUDE)),
            phase=(int(rng.integers(0, period)), int(rng.integers(0, period))),
        )


def retexture_face(frame: np.ndarray, landmarks: np.ndarray, style: TextureStyle) -> tuple[np.ndarray, np.ndarray]:
    """Re-render the lower face and mouth at ``landmarks`` as a neural renderer would; return (frame, mask).

    The geometry is kept (nothing moves); only the texture inside the lower-face mask changes:
    rendered at ``style.render_scale`` of the resolution and upsampled, smoothed, tone-shifted and
    overlaid with a faint periodic pattern on the frame's pixel grid. Where the mask is 0 the frame
    is untouched.
    """
    out = frame.copy()
    mask = np.zeros(frame.shape[:2], dtype=np.float32)
    target = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    found = mask_roi(frame.shape, target, TEXTURE_CENTRE, TEXTURE_AXES)
    if found is None:
        return out, mask
    (x0, y0, x1, y1), _, soft = found
    region = frame[y0:y1, x0:x1]
    height, width = region.shape[:2]
    small = (max(2, round(width * style.render_scale)), max(2, round(height * style.render_scale)))
    low = cv2.resize(region, small, interpolation=cv2.INTER_AREA)
    low = cv2.bilateralFilter(low, 5, style.smooth_sigma, 3.0)
    rendered = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)
    lab = cv2.cvtColor(rendered.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    lab += np.array(style.tone, dtype=np.float32)
    rendered = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    phase_x = 2.0 * np.pi * ((xs + style.phase[0]) % style.period) / style.period
    phase_y = 2.0 * np.pi * ((ys + style.phase[1]) % style.period) / style.period
    pattern = (style.amplitude / 255.0) * np.cos(phase_x) * np.cos(phase_y)
    rendered = np.clip(rendered + pattern[..., None].astype(np.float32), 0.0, 1.0)
    out[y0:y1, x0:x1] = _blend(region, rendered, soft)
    mask[y0:y1, x0:x1] = soft
    return out, mask
