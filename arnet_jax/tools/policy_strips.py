"""Policy strips (the paper's Figure 4): each frame of a video as the backbone saw it.

Shape letters: N videos, T frames, A actions, S the eval crop side (data.image_size), D the
displayed side of one frame (S scaled up by a whole factor to at least `MIN_DISPLAY` pixels).

A frame processed at resolution r is the eval crop resized to r x r the way the model does it
(`models.arnet.resize`, config.model.resize), then scaled up to D x D with nearest neighbours, so
a low resolution shows as blocks. A skipped frame is drawn at full resolution in faded grey.
For a model that reads one patch per frame (its predictions carry `patch_boxes` `[N, T, 4]`,
top, left, bottom, right in eval-crop pixels), every frame is drawn at full resolution with a
1-pixel outline on the patch's edges (PATCH_COLOUR) and, on the demo, on the class glyph's
(GLYPH_COLOUR, under the patch's where they meet).
Strips are numpy arrays (`strip_array`); the figure places them pixel-exact (`Figure.figimage`)
and adds the text.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import ml_collections
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from arnet_jax.tools import charts

MIN_DISPLAY = 128  # px: a frame is shown at least this large
GAP = 4            # px between frames
BAR = 7            # px: the action's colour above a frame, the evidence mark below it
EVIDENCE_COLOUR = (214, 39, 40)
PATCH_COLOUR = (0, 255, 255)   # cyan: the patch the model read
GLYPH_COLOUR = (255, 0, 255)   # magenta: the class glyph (demo)


@dataclasses.dataclass(frozen=True)
class Clip:
  """One evaluation clip as the model saw it (before normalisation)."""
  index: int            # position in the eval split
  video_id: str
  label: int | None     # None: not known (a video given to `arnet_jax.predict`)
  frames: np.ndarray    # uint8 [T, S, S, 3]
  evidence: np.ndarray | None  # bool [T] (demo only: the frame shows the class glyph)
  glyph_box: np.ndarray | None = None  # float [T, 4] in pixels of `frames` (demo only)


def read_clips(data_config: ml_collections.ConfigDict, indices: Sequence[int]) -> list[Clip]:
  """The eval clips at `indices` of data.eval_split: TSN eval sampling (segment centres) and the
  eval crop of the stored frames, exactly as `data.create_split(train=False)` makes them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from arnet_jax.data import sampling, transforms  # pylint: disable=g-import-not-at-top
  builder = data_lib.get_builder(data_config)
  split, t = data_config.eval_split, data_config.num_frames
  clips = []
  for i in indices:
    ds = builder.as_dataset(split=f'{split}[{int(i)}:{int(i) + 1}]', shuffle_files=False,
                            decoders={'frames': tfds.decode.SkipDecoding()})
    ex = next(iter(ds))
    idx = sampling.eval_indices_np(int(tf.shape(ex['frames'])[0]), t)
    frames = tf.stack([tf.io.decode_jpeg(ex['frames'][j], channels=3) for j in idx])
    view = transforms.eval_view(frames, data_config.image_size).numpy()
    evidence = ex['evidence'].numpy()[idx].astype(bool) if 'evidence' in ex else None
    glyph_box = None
    if 'glyph_box' in ex:
      glyph_box = transforms.eval_boxes(tf.gather(ex['glyph_box'], idx), tf.shape(frames)[1],
                                        tf.shape(frames)[2], data_config.image_size).numpy()
    clips.append(Clip(int(i), ex['video_id'].numpy().decode(), int(ex['label']),
                      np.rint(view * 255.0).astype(np.uint8), evidence, glyph_box))
  return clips


def choose_videos(label: np.ndarray, n: int) -> list[int]:
  """Rows of `label` `[N]` to show: one video per class in turn (first of each class in eval
  order, then the second, ...), so a few strips cover as many classes as possible."""
  label = np.asarray(label)
  by_class = [np.nonzero(label == c)[0].tolist() for c in dict.fromkeys(label.tolist())]
  chosen = []
  for rank in range(max((len(v) for v in by_class), default=0)):
    chosen += [v[rank] for v in by_class if rank < len(v)]
  return sorted(chosen[:n])


def resolution_of(name: str) -> int | None:
  """'resnet50@224' -> 224; a skip -> None."""
  m = re.fullmatch(r'.*@(\d+)', name)
  return int(m.group(1)) if m else None


def frame_labels(actions: np.ndarray, decided: np.ndarray, names: Sequence[str]) -> list[str]:
  """The caption of each frame: the action in effect; 'skipped' for frames covered by an earlier
  skip; 'all k' when a frame takes every one of k resolution actions (Multi-Scale).

  actions `[T, A]`, decided `[T]`.
  """
  resolution_actions = [n for n in names if resolution_of(n) is not None]
  labels = []
  for a, d in zip(np.asarray(actions) > 0.5, np.asarray(decided)):
    on = [n for n, x in zip(names, a) if x]
    res = [n for n in on if resolution_of(n) is not None]
    if len(res) > 1:
      labels.append(f'all {len(res)}' if len(res) == len(resolution_actions) else '+'.join(res))
    elif res:
      labels.append(res[0])
    elif on:
      labels.append(on[0] if d else 'skipped')
    else:
      labels.append('none')
  return labels


def as_seen(frame: np.ndarray, resolution: int, display: int, method: str = 'nearest'
            ) -> np.ndarray:
  """uint8 `[S, S, 3]` -> uint8 `[D, D, 3]`: resized to `resolution` as the model does, then
  scaled to `display` with nearest neighbours (each input pixel becomes a visible block)."""
  from arnet_jax.models import arnet  # pylint: disable=g-import-not-at-top
  small = np.asarray(arnet.resize(frame[None].astype(np.float32), resolution, method))[0]
  small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
  return upscale(small, display)


def upscale(image: np.ndarray, size: int) -> np.ndarray:
  """Nearest-neighbour resize of `[h, w, 3]` to `[size, size, 3]`."""
  rows = np.floor(np.arange(size) * image.shape[0] / size).astype(int)
  cols = np.floor(np.arange(size) * image.shape[1] / size).astype(int)
  return image[rows][:, cols]


def grey_out(image: np.ndarray) -> np.ndarray:
  """A skipped frame: luminance only, faded towards white (R = G = B)."""
  lum = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  grey = np.rint(255.0 - 0.4 * (255.0 - lum)).astype(np.uint8)
  return np.repeat(grey[..., None], 3, axis=-1)


def display_size(image_size: int) -> int:
  """D: S times the smallest whole factor reaching MIN_DISPLAY (S itself if already larger)."""
  return image_size * max(1, -(-MIN_DISPLAY // image_size))


def frame_left(t: int, display: int) -> int:
  """Left pixel column of frame t in a strip."""
  return t * (display + GAP)


def draw_box(image: np.ndarray, box: np.ndarray, scale: float,
             colour: tuple[int, int, int]) -> None:
  """Draws on `image` `[D, D, 3]` (in place) the 1-pixel outline of `box` (top, left, bottom,
  right in S-pixel frame coordinates, bottom and right exclusive) scaled by `scale` = D / S and
  rounded to display pixels: the box's outermost rows and columns, cut to the image. An empty
  box draws nothing."""
  h, w = image.shape[:2]
  top, left, bottom, right = (int(round(float(v) * scale)) for v in box)
  y0, y1, x0, x1 = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
  if y1 <= y0 or x1 <= x0:  # empty, or outside the image
    return
  for y in (top, bottom - 1):
    if 0 <= y < h:
      image[y, x0:x1] = colour
  for x in (left, right - 1):
    if 0 <= x < w:
      image[y0:y1, x] = colour


def strip_array(frames: np.ndarray, actions: np.ndarray, names: Sequence[str],
                colours: dict[str, tuple[float, float, float]], *, resize_method: str = 'nearest',
                evidence: np.ndarray | None = None, patch_boxes: np.ndarray | None = None,
                glyph_boxes: np.ndarray | None = None) -> np.ndarray:
  """One video's strip, uint8 `[BAR + D + BAR, T * (D + GAP) - GAP, 3]`.

  Row bands, top to bottom: the colour of each frame's action (BAR px), the frames (D px, see
  the module docstring), a red mark under frames with class evidence (BAR px; demo only).

  Args:
    frames: uint8 `[T, S, S, 3]`, the eval clip.
    actions: `[T, A]` actions in effect per frame.
    names: the A action names ('<backbone>@<pixels>', 'skip<k>').
    colours: action name -> RGB in [0, 1] (`charts.action_colours`).
    resize_method: config.model.resize.
    evidence: optional bool `[T]`.
    patch_boxes: optional `[T, 4]`, the patch a patch model read on each frame (S pixels):
      frames are then drawn at full resolution with its outline.
    glyph_boxes: optional `[T, 4]`, the class glyph's box ((0, 0, 0, 0): none); outlined only
      with `patch_boxes`.
  """
  t, s = frames.shape[:2]
  d = display_size(s)
  out = np.full((BAR + d + BAR, frame_left(t, d) - GAP, 3), 255, np.uint8)
  for i in range(t):
    on = [n for n, x in zip(names, np.asarray(actions[i]) > 0.5) if x]
    res = [resolution_of(n) for n in on if resolution_of(n) is not None]
    left = frame_left(i, d)
    if patch_boxes is not None and on:  # the patch is read at full resolution
      image = upscale(frames[i], d)
      if glyph_boxes is not None:
        draw_box(image, glyph_boxes[i], d / s, GLYPH_COLOUR)
      draw_box(image, patch_boxes[i], d / s, PATCH_COLOUR)
    elif res:  # Multi-Scale takes several: show the finest
      image = as_seen(frames[i], max(res), d, resize_method)
    else:
      image = grey_out(upscale(frames[i], d))
    out[BAR:BAR + d, left:left + d] = image
    if on:
      shown = max(on, key=lambda n: resolution_of(n) or 0)
      out[:BAR - 2, left:left + d] = np.rint(255 * np.asarray(colours[shown]))
    if evidence is not None and evidence[i]:
      out[BAR + d + 2:, left:left + d] = EVIDENCE_COLOUR
  return out


def plot_policy_strips(clips: Sequence[Clip], actions: np.ndarray, decided: np.ndarray,
                       predicted: np.ndarray, names: Sequence[str], class_names: Sequence[str],
                       path: str, *, resize_method: str = 'nearest', title: str = '',
                       patch_boxes: np.ndarray | None = None) -> dict:
  """Writes one strip per clip to `path`.

  Args:
    clips: the videos (`read_clips`).
    actions: `[N, T, A]` and decided `[N, T]` of the same videos, in the same order.
    predicted: `[N]` predicted class of each.
    names: the A action names; class_names: the C class names.
    path: the PNG to write.
    resize_method: config.model.resize.
    title: the first line of the header (which run, which split).
    patch_boxes: `[N, T, 4]` of a patch model (predictions.npz `patch_boxes`), or None.

  Returns:
    {'strips': [uint8 arrays as drawn], 'origins': [(x, y) of each strip's top-left pixel in the
    PNG], 'labels': [[frame captions]], 'size': (width, height) in pixels}.
  """
  colours = charts.action_colours(names)
  patches = patch_boxes is not None
  strips = [strip_array(c.frames, actions[i], names, colours, resize_method=resize_method,
                        evidence=c.evidence, patch_boxes=patch_boxes[i] if patches else None,
                        glyph_boxes=c.glyph_box) for i, c in enumerate(clips)]
  labels = [frame_labels(actions[i], decided[i], names) for i in range(len(clips))]
  d = display_size(clips[0].frames.shape[1]) if clips else MIN_DISPLAY
  k = d / MIN_DISPLAY  # text grows with the frames, so it stays readable when viewed scaled down
  px = lambda v: int(round(v * k))
  margin, header, title_h, caption_h, row_gap = px(16), px(92), px(24), px(17), px(18)
  strip_w = max((s.shape[1] for s in strips), default=600)
  row_h = title_h + caption_h + (strips[0].shape[0] if strips else 0) + row_gap
  width, height = strip_w + 2 * margin, header + row_h * len(clips) + margin
  fig = Figure(figsize=(width / charts.DPI, height / charts.DPI), dpi=charts.DPI)
  text = lambda x, y, s, size, **kw: fig.text(x / width, 1 - y / height, s, va='top',
                                              fontsize=size * k, **kw)
  text(margin, px(8), title or 'Policy decisions', 14, weight='bold')
  if patches:
    glyphs = any(c.glyph_box is not None for c in clips)
    text(margin, px(34), 'Each frame is drawn at full resolution, outlined in cyan: the patch '
         "the model's local CNN read on it" + (', in magenta: the class glyph (demo data)'
                                                if glyphs else '')
         + '. Caption and colour bar: the action.', 11)
  else:
    text(margin, px(34), 'Each frame is drawn at the resolution its backbone processed it at '
         '(blocky = low resolution); faded grey frames were skipped. Caption and colour bar: the '
         'action (backbone@input pixels, or skip k frames).', 11)
  text(margin, px(59), 'Actions:', 10)
  ordered = charts.action_order(names)
  handles, entries = [Patch(facecolor=colours[n]) for n in ordered], list(ordered)
  if patches:
    rgb = lambda c: tuple(v / 255 for v in c)
    handles.append(Patch(facecolor='white', edgecolor=rgb(PATCH_COLOUR), linewidth=1.5))
    entries.append('patch read')
    if glyphs:
      handles.append(Patch(facecolor='white', edgecolor=rgb(GLYPH_COLOUR), linewidth=1.5))
      entries.append('class glyph')
  fig.legend(handles, entries, loc='upper left',
             bbox_to_anchor=((margin + px(62)) / width, 1 - px(55) / height), ncol=len(handles),
             frameon=False, fontsize=10 * k, handlelength=1.4, columnspacing=1.6, borderpad=0,
             borderaxespad=0)
  if any(c.evidence is not None for c in clips):
    text(width - margin, px(58), 'red bar under a frame: the frame shows the class evidence '
         '(demo data)', 10, ha='right', color='#b71c1c')
  origins = []
  for i, (clip, strip) in enumerate(zip(clips, strips)):
    top = header + i * row_h
    known = clip.label is not None
    ok = known and int(predicted[i]) == clip.label
    processed = sum(any(resolution_of(n) is not None for n, x in zip(names, a) if x)
                    for a in np.asarray(actions[i]) > 0.5)
    true = f'   true: {class_names[clip.label]}' if known else ''
    text(margin, top, f'{clip.video_id}{true}', 12, weight='bold')
    verdict = ('(correct) ' if ok else '(wrong) ') if known else ''
    text(margin + strip_w, top, f'predicted: {class_names[int(predicted[i])]} {verdict}'
         f'  \u2022   {processed}/{len(labels[i])} frames processed', 12, weight='bold',
         ha='right', color='black' if not known else '#1a7f37' if ok else '#c62828')
    for t, lab in enumerate(labels[i]):
      text(margin + frame_left(t, d) + d / 2, top + title_h, lab, 10, ha='center',
           color='#777777' if lab == 'skipped' else 'black',
           style='italic' if lab == 'skipped' else 'normal')
    y0 = top + title_h + caption_h
    origins.append((margin, y0))
    fig.figimage(strip, xo=margin, yo=height - y0 - strip.shape[0], origin='upper')
  fig.savefig(path, dpi=charts.DPI)
  return dict(strips=strips, origins=origins, labels=labels, size=(width, height))
