"""Synthetic videos for the built-in demo dataset (pure numpy, deterministic).

The demo is built so that AR-Net's premise holds by construction:

* The class evidence is a tiny binary glyph (5x5 cells of 1 pixel) printed in
  black on a small yellow pad. Its identity needs the full 64-pixel crop: the
  24-pixel input of the cheapest branch, resized by nearest neighbour (every
  ~2.7th pixel), keeps about 4 of the 25 cells, at a phase that changes with
  the glyph's position, and every glyph has the same number of ink cells.
* The yellow pad, i.e. the *presence* of something worth a closer look, stays
  visible at 24 pixels, so a cheap policy can decide which frames deserve the
  expensive resolution.
* The evidence is present in only a few frames (3 to 6 of 16). The other frames
  hold nothing, coloured clutter, or decoys: the same yellow pad with a glyph
  that belongs to no class (only resolvable at high resolution, like the real
  evidence).
* Nothing else (background, positions, number of evidence frames, pad colour)
  depends on the class.

Shapes: L = frames per video, H x W = frame size, G = 5 (glyph side in cells).
"""

from __future__ import annotations

import dataclasses

import numpy as np

GLYPH_SIDE = 5  # G: glyph cells per side; one cell = one pixel at the stored size
GLYPH_INK = 12  # ink cells per glyph, equal for all glyphs so density tells nothing
PAD_MARGIN = 2  # yellow margin around the glyph, in pixels
PAD_SIDE = GLYPH_SIDE + 2 * PAD_MARGIN
PAD_COLOUR = np.array([250, 215, 20], np.float32)
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


def glyph_bank(num_glyphs: int, seed: int = _GLYPH_SEED) -> np.ndarray:
  """Returns `num_glyphs` distinct binary glyphs, bool [N, G, G].

  Each glyph touches all four sides of its G x G box (so no glyph is a shifted
  copy of another) and differs from every other glyph, and from every other
  glyph's mirror image (training flips frames), in at least 6 cells.
  """
  rng = np.random.default_rng(seed)
  glyphs: list[np.ndarray] = []
  while len(glyphs) < num_glyphs:
    cells = np.zeros(GLYPH_SIDE * GLYPH_SIDE, bool)
    cells[rng.choice(cells.size, GLYPH_INK, replace=False)] = True
    g = cells.reshape(GLYPH_SIDE, GLYPH_SIDE)
    if not (g[0].any() and g[-1].any() and g[:, 0].any() and g[:, -1].any()):
      continue
    if (g == g[:, ::-1]).all():
      continue  # a symmetric glyph would be its own mirror: fine, but skip for variety
    far = all(
        (g != h).sum() >= 6 and (g != h[:, ::-1]).sum() >= 6 for h in glyphs)
    if far:
      glyphs.append(g)
  return np.stack(glyphs)


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


def _paste_pad(frame: np.ndarray, glyph: np.ndarray, top: int, left: int,
               colour: np.ndarray) -> None:
  """Draws a yellow pad with a black glyph at (top, left), in place."""
  frame[top:top + PAD_SIDE, left:left + PAD_SIDE] = colour
  inner = frame[top + PAD_MARGIN:top + PAD_MARGIN + GLYPH_SIDE,
                left + PAD_MARGIN:left + PAD_MARGIN + GLYPH_SIDE]
  inner[glyph] = 0.0


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
                 spec: DemoVideoSpec = DemoVideoSpec()) -> tuple[np.ndarray, np.ndarray]:
  """Renders one demo video of class `label`.

  Args:
    rng: the video's own random generator (the caller derives it from a seed).
    label: class index into `class_glyphs`.
    class_glyphs: bool [C, G, G], one glyph per class.
    decoy_glyphs: bool [D, G, G], glyphs that belong to no class.
    spec: frame count and size.

  Returns:
    frames: uint8 [L, H, W, 3].
    evidence: bool [L], True where the class glyph is shown.
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
  lo_col, hi_col = 4 * ((spec.width - spec.crop) // 4), spec.crop - PAD_SIDE
  frames = np.empty((n, spec.height, spec.width, 3), np.float32)
  for t in range(n):
    frame = background + rng.normal(0.0, 4.0, size=background.shape)
    if rng.random() < 0.6:
      _paste_clutter(rng, frame)
    if evidence[t] or decoy[t]:
      glyph = (class_glyphs[label] if evidence[t]
               else decoy_glyphs[rng.integers(len(decoy_glyphs))])
      if rng.random() < 0.5:
        glyph = glyph[:, ::-1]  # both orientations exist, as after a flip
      top = int(rng.integers(lo_row, hi_row + 1))
      left = int(rng.integers(lo_col, hi_col + 1))
      _paste_pad(frame, glyph, top, left, pad_colour)
    frames[t] = frame
  return np.clip(np.rint(frames), 0, 255).astype(np.uint8), evidence
