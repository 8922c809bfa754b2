"""Synthetic videos for the built-in demo dataset (pure numpy, deterministic).

The demo is built so that AR-Net's premise holds by construction:

* The class evidence is a small glyph (16 x 16 pixels) printed in black on a
  yellow pad: four 8 x 8 quadrants, each filled with one of three
  1-pixel textures (horizontal stripes, vertical stripes, checks); the class is
  which texture fills which quadrant. Its identity needs the full 64-pixel
  crop: nearest-neighbour downsampling to 32 pixels (every other pixel) turns
  each quadrant into a flat field, ink or pad at random (each quadrant's
  texture has a random phase). The 48- and 24-pixel inputs keep an irregular
  subset of the rows and columns (aliased textures). Every glyph inks half its
  pixels.
  (A first version used 5 x 5 random 1-pixel glyphs; tiny ResNets learned
  textures several times faster, which the CPU demo's budget needs, and 8-pixel
  quadrants about twice as fast as 4-pixel ones.)
* The pad, i.e. the *presence* of something worth a closer look, stays
  visible at 24 pixels, so a cheap policy can decide which frames deserve the
  expensive resolution. Its shape (square for even classes, wide for odd ones)
  is the coarse half of the answer, readable at any resolution: as in real
  videos, a low resolution narrows the class down and only the top one
  resolves it. Learning that shape in the warm-up is also what teaches the
  policy's CNN, trained from scratch, to see the pads (with one shape its
  features did not tell pad frames from the others; with a yellow and a cyan
  pad the policy learned to look closer at one colour only).
* The evidence is present in only a few frames (3 to 6 of 16). The other frames
  hold nothing, coloured clutter, or decoys: a pad of either shape with a
  glyph that belongs to no class (only resolvable at high resolution, like the
  real evidence).
* Nothing else (background, positions, number of evidence frames) depends on
  the class.

Shapes: L = frames per video, H x W = frame size, G = 16 (glyph side in pixels).
Boxes are int (top, left, bottom, right) in frame pixels, bottom and right exclusive.
"""

from __future__ import annotations

import dataclasses

import numpy as np

QUADRANT = 8  # glyph quadrant side, in pixels
GLYPH_SIDE = 2 * QUADRANT  # G: the glyph is 2 x 2 quadrants, each filled with one texture
GLYPH_INK = GLYPH_SIDE ** 2 // 2  # every texture inks half its pixels: density tells nothing
PAD_MARGIN = 6  # pad margin around the glyph, in pixels
PAD_SIDE = GLYPH_SIDE + 2 * PAD_MARGIN
PAD_WIDTHS = (PAD_SIDE, PAD_SIDE + 8)  # class % 2: square or wide (the pad is PAD_SIDE tall)
PAD_COLOUR = np.array([250, 215, 20], np.float32)
# Period-2 textures (1-pixel stripes or checks): sampling every other pixel turns each into a
# flat field, ink or pad depending on its phase, so they are unreadable at half resolution.
TEXTURES = ('horizontal', 'vertical', 'checker')
_GLYPH_SEED = 20200723  # fixed: the glyphs are part of the dataset's definition


@dataclasses.dataclass(frozen=True)
class DemoVideoSpec:
  """What one demo video looks like (the defaults are the published demo)."""

  num_frames: int = 16  # L
  height: int = 73  # the demo's eval short side: round(64 * 256 / 224)
  width: int = 73
  crop: int = 64  # evidence lies inside every crop of this side the pipeline takes
  min_evidence: int = 3
  max_evidence: int = 6
  max_decoys: int = 3


def class_names(num_classes: int) -> list[str]:
  return [f'glyph_{i:02d}' for i in range(num_classes)]


def mirror(code: np.ndarray) -> np.ndarray:
  """The code of a horizontally flipped glyph: quadrants swap left and right (the textures
  themselves are symmetric up to phase)."""
  return code[..., ::-1]


def glyph_bank(num_classes: int, seed: int = _GLYPH_SEED) -> tuple[np.ndarray, np.ndarray]:
  """Glyph codes: int [N, 2, 2], the texture (index into TEXTURES) of each quadrant.

  Returns (class codes [num_classes, 2, 2], decoy codes [D, 2, 2]). Class codes differ from each
  other, and from each other's mirror images (training flips frames), in at least 2 quadrants;
  decoys are the remaining codes that equal no class code nor its mirror.
  """
  codes = np.array(np.meshgrid(*[range(len(TEXTURES))] * 4, indexing='ij')).reshape(4, -1).T
  codes = codes[np.random.default_rng(seed).permutation(len(codes))].reshape(-1, 2, 2)
  classes: list[np.ndarray] = []
  for code in codes:
    if all((code != c).sum() >= 2 and (mirror(code) != c).sum() >= 2 for c in classes):
      classes.append(code)
      if len(classes) == num_classes:
        break
  else:
    raise ValueError(f'The demo has codes for at most {len(classes)} classes, not {num_classes}.')
  taken = {c.tobytes() for c in classes} | {mirror(c).copy().tobytes() for c in classes}
  decoys = [c for c in codes if c.tobytes() not in taken]
  return np.stack(classes), np.stack(decoys)


def draw_glyph(rng: np.random.Generator, code: np.ndarray) -> np.ndarray:
  """The glyph of `code` as ink, bool [G, G]; each quadrant's texture at a random phase (so a
  half-resolution view shows each quadrant as a random flat field)."""
  y, x = np.mgrid[:QUADRANT, :QUADRANT]
  glyph = np.zeros((GLYPH_SIDE, GLYPH_SIDE), bool)
  for (r, c), kind in np.ndenumerate(code):
    py, px = rng.integers(2, size=2)
    ink = ((y + py) % 2 == 0, (x + px) % 2 == 0, (y + x + py) % 2 == 0)[kind]
    glyph[r * QUADRANT:(r + 1) * QUADRANT, c * QUADRANT:(c + 1) * QUADRANT] = ink
  return glyph


def _background(rng: np.random.Generator, spec: DemoVideoSpec) -> np.ndarray:
  """A smooth random colour field (float32 [H, W, 3]) shared by a video's frames."""
  coarse = rng.uniform(40, 200, size=(4, 5, 3)).astype(np.float32)
  ys = np.linspace(0, coarse.shape[0] - 1, spec.height)
  xs = np.linspace(0, coarse.shape[1] - 1, spec.width)
  y0 = np.floor(ys).astype(int).clip(0, coarse.shape[0] - 2)
  x0 = np.floor(xs).astype(int).clip(0, coarse.shape[1] - 2)
  wy = (ys - y0)[:, None, None]
  wx = (xs - x0)[None, :, None]
  c = coarse
  top = c[y0][:, x0] * (1 - wx) + c[y0][:, x0 + 1] * wx
  bottom = c[y0 + 1][:, x0] * (1 - wx) + c[y0 + 1][:, x0 + 1] * wx
  return top * (1 - wy) + bottom * wy


def glyph_box(pad_top: int, pad_left: int) -> np.ndarray:
  """The G x G glyph's box, int32 [4], in a pad whose top-left pixel is (pad_top, pad_left)."""
  top, left = pad_top + PAD_MARGIN, pad_left + PAD_MARGIN
  return np.array([top, left, top + GLYPH_SIDE, left + GLYPH_SIDE], np.int32)


def _paste_pad(frame: np.ndarray, glyph: np.ndarray, top: int, left: int, width: int,
               colour: np.ndarray) -> None:
  """Draws a yellow pad with a black glyph at (top, left), in place."""
  frame[top:top + PAD_SIDE, left:left + width] = colour
  g_top, g_left, g_bottom, g_right = glyph_box(top, left)
  frame[g_top:g_bottom, g_left:g_right][glyph] = 0.0


def _paste_clutter(rng: np.random.Generator, frame: np.ndarray) -> None:
  """Draws 1-3 rectangles whose colours are far from the pad's yellow."""
  h, w, _ = frame.shape
  for _ in range(rng.integers(1, 4)):
    rh, rw = rng.integers(4, 14, size=2)
    top, left = rng.integers(0, h - rh), rng.integers(0, w - rw)
    # Blue-ish, red-ish, green-ish or grey: never yellow (high R and G, low B).
    kind = rng.integers(4)
    colour = {
        0: [rng.uniform(0, 80), rng.uniform(0, 120), rng.uniform(150, 255)],
        1: [rng.uniform(150, 255), rng.uniform(0, 80), rng.uniform(0, 120)],
        2: [rng.uniform(0, 90), rng.uniform(130, 230), rng.uniform(0, 90)],
        3: [rng.uniform(60, 200)] * 3,
    }[int(kind)]
    frame[top:top + rh, left:left + rw] = colour


def render_video(rng: np.random.Generator, label: int, class_glyphs: np.ndarray,
                 decoy_glyphs: np.ndarray,
                 spec: DemoVideoSpec = DemoVideoSpec()
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Renders one demo video of class `label`.

  Args:
    rng: the video's own random generator (the caller derives it from a seed).
    label: class index into `class_glyphs`.
    class_glyphs: int [C, 2, 2], one glyph code per class (see `glyph_bank`).
    decoy_glyphs: int [D, 2, 2], glyph codes that belong to no class.
    spec: frame count and size.

  Returns:
    frames: uint8 [L, H, W, 3].
    evidence: bool [L], True where the class glyph is shown.
    glyph_boxes: int32 [L, 4], the class glyph's box (`glyph_box`) on evidence frames,
      (0, 0, 0, 0) on the others (a decoy's glyph is no class glyph).
  """
  n = spec.num_frames
  num_evidence = int(rng.integers(spec.min_evidence, spec.max_evidence + 1))
  order = rng.permutation(n)
  evidence = np.zeros(n, bool)
  evidence[order[:num_evidence]] = True
  num_decoys = int(rng.integers(0, spec.max_decoys + 1))
  decoy = np.zeros(n, bool)
  decoy[order[num_evidence:num_evidence + num_decoys]] = True

  background = _background(rng, spec)
  pad_colour = PAD_COLOUR + rng.uniform(-15, 5, size=3).astype(np.float32)
  # Pads lie in the region every crop of side `crop` contains: the evaluation
  # centre crop and the 13 fixed training crop positions (offsets up to
  # 4 * ((side - crop) // 4)), so no clip loses its evidence to the crop.
  lo_row, hi_row = 4 * ((spec.height - spec.crop) // 4), spec.crop - PAD_SIDE
  lo_col, hi_col = 4 * ((spec.width - spec.crop) // 4), spec.crop - max(PAD_WIDTHS)
  frames = np.empty((n, spec.height, spec.width, 3), np.float32)
  glyph_boxes = np.zeros((n, 4), np.int32)  # recorded from the pads' draws: no draw of its own
  for t in range(n):
    frame = background + rng.normal(0.0, 4.0, size=background.shape)
    if rng.random() < 0.6:
      _paste_clutter(rng, frame)
    if evidence[t] or decoy[t]:
      if evidence[t]:
        code, width = class_glyphs[label], PAD_WIDTHS[label % 2]
      else:
        code = decoy_glyphs[rng.integers(len(decoy_glyphs))]
        width = PAD_WIDTHS[rng.integers(len(PAD_WIDTHS))]
      if rng.random() < 0.5:
        code = mirror(code)  # both orientations exist, as after a flip
      glyph = draw_glyph(rng, code)
      top = int(rng.integers(lo_row, hi_row + 1))
      left = int(rng.integers(lo_col, hi_col + 1))
      _paste_pad(frame, glyph, top, left, width, pad_colour)
      if evidence[t]:
        glyph_boxes[t] = glyph_box(top, left)
    frames[t] = frame
  return np.clip(np.rint(frames), 0, 255).astype(np.uint8), evidence, glyph_boxes
