"""The report's charts: GFLOPs per video against mAP, and action usage (overall and per class).

Shape letters: N videos, T frames, A actions, C classes. Every plotting function draws with a
plain `matplotlib.figure.Figure` (no pyplot, no global backend), saves a PNG of a fixed pixel size
(`figsize * DPI`, no tight bounding box) and returns the numbers it plotted, so tests can compare
them with the evaluation JSON.
"""
from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.text import Text

DPI = 100

# The paper's ActivityNet-v1.3 results (mAP %, GFLOPs per video): Table 1 (baselines with the
# ResNet and EfficientNet families) and Table 2 (other efficient methods). Label offsets (points)
# are hand-placed so the labels of this fixed set do not overlap.
PAPER_POINTS = (
    # (label, family, mAP, GFLOPs/V, label offset)
    ('Uniform', 'ResNet', 72.5, 65.76, (-46, 4)),
    ('LSTM', 'ResNet', 71.2, 65.89, (-34, -10)),
    ('Random policy', 'ResNet', 65.0, 16.57, (6, 2)),
    ('Multi-Scale', 'ResNet', 73.5, 110.43, (-30, 7)),
    ('AR-Net', 'ResNet', 73.8, 33.47, (6, 5)),
    ('Uniform', 'EfficientNet', 78.8, 28.80, (7, -2)),
    ('LSTM', 'EfficientNet', 78.0, 28.88, (7, -8)),
    ('Random policy', 'EfficientNet', 72.5, 6.11, (-10, -14)),
    ('Multi-Scale', 'EfficientNet', 79.5, 37.56, (6, 2)),
    ('AR-Net', 'EfficientNet', 79.7, 15.29, (-14, 7)),
    ('AdaFrame', 'other', 71.5, 78.97, (5, -11)),
    ('LiteEval', 'other', 72.7, 95.10, (-16, 7)),
    ('ListenToLook (Image)', 'other', 72.3, 81.36, (-36, 8)),
    ('SCSampler', 'other', 72.9, 41.95, (6, 2)),
)
PAPER_STYLE = {  # family -> (marker, colour, legend text)
    'ResNet': ('s', '#7f7f7f', 'paper: ResNet family (Table 1)'),
    'EfficientNet': ('D', '#b07aa1', 'paper: EfficientNet family (Table 1)'),
    'other': ('^', '#9c755f', 'paper: other methods (Table 2)'),
}


def action_sort_key(name: str) -> tuple:
  """Resolution actions from the highest resolution down, then skips from the shortest."""
  if (m := re.fullmatch(r'.*@(\d+)', name)):
    return (0, -int(m.group(1)), name)
  if (m := re.fullmatch(r'skip(\d+)', name)):
    return (1, int(m.group(1)), name)
  return (2, 0, name)


def action_order(names: Sequence[str]) -> list[str]:
  """The distinct `names`, in the order the charts use (see `action_sort_key`)."""
  return sorted(set(names), key=action_sort_key)


def is_skip(name: str) -> bool:
  return re.fullmatch(r'skip\d+', name) is not None


def action_colours(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
  """One colour per action, shared by all figures: resolution actions dark (high resolution) to
  light (low) along viridis; skips in greys, since skipped frames are drawn grey."""
  ordered = action_order(names)
  res = [n for n in ordered if not is_skip(n)]
  skips = [n for n in ordered if is_skip(n)]
  viridis, greys = colormaps['viridis'], colormaps['Greys']
  colours = {}
  for i, n in enumerate(res):
    colours[n] = viridis(0.05 + 0.8 * i / max(1, len(res) - 1))[:3]
  for i, n in enumerate(skips):
    colours[n] = greys(0.3 + 0.35 * i / max(1, len(skips) - 1))[:3]
  return colours


# --- GFLOPs per video against mAP (the paper's Figure 3). ------------------------------------


@dataclasses.dataclass(frozen=True)
class Point:
  label: str
  gflops_per_video: float
  mAP: float


def merge_coincident(points: Sequence[Point]) -> list[Point]:
  """Points at the same place (e.g. a stage's final evaluation and the recipe row evaluating the
  same checkpoint) become one point whose label names all of them."""
  merged: dict[tuple[float, float], list[str]] = {}
  for p in points:
    key = (round(p.gflops_per_video, 9), round(p.mAP, 6))
    merged.setdefault(key, []).append(p.label)
  return [Point(' = '.join(labels), g, m) for (g, m), labels in merged.items()]


def paper_on_same_axes(points: Sequence[Point]) -> bool:
  """True when the runs' GFLOPs are within 10x of the paper's (e.g. a full-size ActivityNet
  run), so both fit one axis; the demo's (~0.01 GFLOPs/video) get a panel of their own."""
  if not points:
    return False
  ours = np.median([p.gflops_per_video for p in points])
  paper = np.median([p[3] for p in PAPER_POINTS])
  return 0.1 <= ours / paper <= 10


class Curve(NamedTuple):
  """A method's conditional-exit curve: (GFLOPs per video, mAP in %) for each exit setting, and
  the same model without exit (`end`), where the curve ends. A plain (label, points) works too."""
  label: str
  points: Sequence[tuple[float, float]]
  end: tuple[float, float] | None = None


def curve_end(curve: Curve) -> tuple[float, float] | None:
  """The curve's end point, if it has a finite one."""
  if curve.end is None or not np.isfinite(curve.end).all():
    return None
  return float(curve.end[0]), float(curve.end[1])


def curve_points(curve: Curve) -> list[tuple[float, float]]:
  """The curve's finite points by GFLOPs (then mAP), coincident ones merged, `curve_end` last
  (even if an exit setting's rounding made it cost a hair more)."""
  key = lambda p: (round(p[0], 9), round(p[1], 6))  # as `merge_coincident`
  end = curve_end(curve)
  merged = {}
  for g, m in sorted((float(g), float(m)) for g, m in curve.points):
    if np.isfinite([g, m]).all() and (end is None or key((g, m)) != key(end)):
      merged.setdefault(key((g, m)), (g, m))
  return list(merged.values()) + ([end] if end is not None else [])


def plot_gflops_map(points: Sequence[Point], path: str, *, paper_points: bool = False,
                    title: str = '', curves: Sequence[Curve | tuple] = ()) -> dict:
  """Writes the GFLOPs-mAP scatter to `path`.

  Args:
    points: one per run (label, GFLOPs per video, mAP in %).
    path: the PNG to write.
    paper_points: also plot the paper's published ActivityNet points (`PAPER_POINTS`): on the
      same axes when the scales match, else in a second panel.
    title: what the runs are (e.g. the workdir); shown above the runs' panel.
    curves: conditional-exit curves (`Curve`s, or (label, [(GFLOPs per video, mAP)])), each
      drawn in the runs' panel as a line through its points by GFLOPs, with a legend entry and
      a larger marker at its end (the model without exit).

  Returns:
    {'runs': [(label, gflops_per_video, mAP)] as plotted (coincident runs merged), 'paper':
    [(label, family, gflops_per_video, mAP)] or [], 'curves': [(label, [(gflops_per_video,
    mAP)])] as plotted (see `curve_points`), 'size': (width, height) in pixels}.
  """
  merged = merge_coincident(points)
  curves = [Curve(*c) for c in curves]
  plotted_curves = [(c.label, curve_points(c)) for c in curves]
  ends = [curve_end(c) is not None for c in curves]
  on_curves = [Point(label, g, m) for label, ps in plotted_curves for g, m in ps]
  shared = paper_points and paper_on_same_axes(merged + on_curves)
  two_panels = paper_points and not shared
  size = (1500, 620) if two_panels else (900, 620)
  fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout='constrained')
  axes = fig.subplots(1, 2 if two_panels else 1, squeeze=False)[0]
  ax = axes[0]
  labels = _scatter_runs(ax, merged)
  _draw_curves(ax, plotted_curves, ends, first_colour=len(merged))
  if not shared:
    _set_limits(ax, merged + on_curves)
  ax.set_title((title or 'Runs found') + ('\nwith the published ActivityNet-v1.3 results (paper '
                                          'Tables 1-2)' if shared else ''), fontsize=12)
  plotted_paper = []
  if paper_points:
    paper_ax = ax if shared else axes[1]
    plotted_paper = _scatter_paper(paper_ax)
    if two_panels:
      paper_ax.set_title('Published (paper Fig. 3 / Tables 1-2): ActivityNet-v1.3,\n'
                         'full-size networks at 224 px; not comparable in scale to the runs',
                         fontsize=11)
  for a in axes:
    a.set_xlabel('GFLOPs per video (lower is cheaper)', fontsize=11)
    a.set_ylabel('mAP (%) (higher is better)', fontsize=11)
    a.grid(True, alpha=0.3)
    a.tick_params(labelsize=10)
    if a.get_legend_handles_labels()[0]:
      a.legend(fontsize=9, loc='lower right')
  fig.suptitle('Accuracy against computation per video', fontsize=14)
  _declutter(fig, ax, labels)
  fig.savefig(path, dpi=DPI)
  return dict(runs=[(p.label, p.gflops_per_video, p.mAP) for p in merged],
              paper=plotted_paper, curves=plotted_curves, size=size)


def _scatter_runs(ax, points: Sequence[Point]) -> list:
  colours = colormaps['tab10']
  labels = []
  for i, p in enumerate(points):
    colour = colours(i % 10)
    ax.scatter([p.gflops_per_video], [p.mAP], s=70, color=colour, zorder=3, edgecolor='black',
               linewidth=0.6)
    # In the point's colour, with a leader line once `_declutter` moves it away.
    labels.append(ax.annotate(
        p.label, (p.gflops_per_video, p.mAP), xytext=(7, -4), textcoords='offset points',
        fontsize=10, weight='bold', color=colour, arrowprops=dict(
            arrowstyle='-', color=colour, lw=0.7, shrinkA=1, shrinkB=5, relpos=(0, 0.5))))
  return labels


def _draw_curves(ax, curves: Sequence[tuple[str, list[tuple[float, float]]]],
                 ends: Sequence[bool], first_colour: int) -> None:
  """Each curve a line with small markers; its end (no exit, when it has one) a larger ring,
  open so that the run evaluating the same model, usually at that point, stays visible. Colours
  continue the runs' so that no curve looks like one of the runs."""
  colours = colormaps['tab10']
  for i, ((label, points), has_end) in enumerate(zip(curves, ends)):
    if not points:
      continue
    colour = colours((first_colour + i) % 10)
    xs, ys = zip(*points)
    ax.plot(xs, ys, '-o', color=colour, markersize=3.5, linewidth=1.4, label=label, zorder=2)
    if has_end:
      ax.scatter(xs[-1:], ys[-1:], s=160, facecolors='none', edgecolors=[colour],
                 linewidth=1.8, zorder=4)


def _set_limits(ax, points: Sequence[Point]) -> None:
  """From zero, room on the right for the labels, and a y range of at least 10 points."""
  if not points:
    ax.text(0.5, 0.5, 'no evaluated runs found', ha='center', transform=ax.transAxes)
    return
  xs = np.array([p.gflops_per_video for p in points])
  ys = np.array([p.mAP for p in points])
  ax.set_xlim(min(0.0, xs.min()), max(1.45 * xs.max(), 1e-9))
  mid, half = (ys.max() + ys.min()) / 2, max(5.0, 0.6 * (ys.max() - ys.min()))
  ax.set_ylim(max(0.0, mid - half), min(100.0, mid + half) + 2)


def _declutter(fig, ax, labels: list) -> None:
  """Moves run labels that would overlap another (or leave the axes on the right) to the left
  of their point, then downwards, until none overlap."""
  if not labels:
    return
  fig.draw_without_rendering()  # the final layout, so label extents are final
  inside = ax.get_window_extent()
  text_box = lambda a: Text.get_window_extent(a)  # the text alone, without its leader line
  placed = []
  for label in sorted(labels, key=lambda a: -a.xy[1]):
    if text_box(label).x1 > inside.x1:
      label.set_horizontalalignment('right')
      label.arrowprops['relpos'] = (1, 0.5)
      label.xyann = (-7, label.xyann[1])
    for _ in range(50):
      box = text_box(label).expanded(1.0, 1.1)
      if not any(box.overlaps(other) for other in placed):
        break
      label.xyann = (label.xyann[0], label.xyann[1] - 4)
    placed.append(text_box(label))


def _scatter_paper(ax) -> list[tuple]:
  plotted = []
  for family, (marker, colour, legend) in PAPER_STYLE.items():
    rows = [p for p in PAPER_POINTS if p[1] == family]
    ax.scatter([r[3] for r in rows], [r[2] for r in rows], marker=marker, s=55, color=colour,
               edgecolor='black', linewidth=0.5, label=legend, zorder=2)
    for label, fam, m, g, offset in rows:
      ax.annotate(label, (g, m), xytext=offset, textcoords='offset points', fontsize=8.5,
                  color='#333333')
      plotted.append((label, fam, g, m))
  return plotted


# --- Action usage. -------------------------------------------------------------------------------


def per_class_usage(actions: np.ndarray, label: np.ndarray, num_classes: int
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Share of frames taking each action, per true class.

  Args:
    actions: `[N, T, A]` actions in effect per frame (predictions.npz `actions`).
    label: `[N]` true class of each video.
    num_classes: C.

  Returns:
    (usage `[C, A]`: mean over the frames of the class's videos, NaN for a class without
    videos; videos `[C]`: how many videos each class has).
  """
  actions = np.asarray(actions, np.float64)
  label = np.asarray(label)
  if actions.ndim != 3 or label.shape != actions.shape[:1]:
    raise ValueError(f'actions must be [N, T, A] and label [N]; got {actions.shape} and '
                     f'{label.shape}.')
  per_video = actions.mean(axis=1)  # [N, A]
  videos = np.bincount(label, minlength=num_classes)[:num_classes]
  usage = np.full((num_classes, actions.shape[-1]), np.nan)
  for c in np.nonzero(videos)[0]:
    usage[c] = per_video[label == c].mean(axis=0)
  return usage, videos


def plot_action_usage(overall: dict[str, dict[str, float]], path: str, *,
                      per_class: tuple[str, np.ndarray, np.ndarray, Sequence[str],
                                       Sequence[str]] | None = None,
                      max_classes: int = 40) -> dict:
  """Writes the action-usage chart to `path`.

  Args:
    overall: {run label: {action name: share of frames}} (metrics.json `action_usage`).
    path: the PNG to write.
    per_class: optional (run label, usage `[C, A]`, videos `[C]`, class names, action names) of
      one run (see `per_class_usage`); drawn as one stacked bar per class, classes sorted by
      their share of the highest resolution. Above `max_classes` classes, the half with the most
      and the half with the least top-resolution use are shown.

  Returns:
    {'overall': {run: {action: share}} as plotted, 'per_class': {class: {action: share}},
    'actions': the action order, 'size': (width, height) in pixels}.
  """
  names = action_order([a for usage in overall.values() for a in usage]
                       + (list(per_class[4]) if per_class else []))
  colours = action_colours(names)
  class_rows = _class_rows(per_class, names, max_classes) if per_class else []
  runs_h, class_h = 0.45 * len(overall) + 1.3, (0.32 * len(class_rows) + 1.5 if class_rows else 0)
  size = (1200, int(round(DPI * (runs_h + class_h + 1.2))))
  fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout='constrained')
  axes = fig.subplots(2 if class_rows else 1, 1, squeeze=False,
                      height_ratios=[runs_h, class_h] if class_rows else None)[:, 0]
  plotted = {run: {a: float(u.get(a, 0.0)) for a in names} for run, u in overall.items()}
  _stacked_bars(axes[0], [(run, plotted[run]) for run in overall], names, colours)
  axes[0].set_title('Share of frames taking each action, per run', fontsize=12, loc='left')
  plotted_classes = {}
  if class_rows:
    run, shown, present = per_class[0], len(class_rows), int((per_class[2] > 0).sum())
    _stacked_bars(axes[1], [(f'{c}  (n={n})', s) for c, n, s in class_rows], names, colours)
    which = ('' if shown == present else f'; the {shown // 2} classes using it most and the '
             f'{shown - shown // 2} using it least, of {present}')
    axes[1].set_title(f'Per true class (n videos), {run}: sorted by share of {names[0]}{which}',
                      fontsize=12, loc='left')
    plotted_classes = {c: s for c, _, s in class_rows}
  handles = [_patch(colours[n]) for n in names]
  fig.legend(handles, names, loc='outside upper center', ncol=min(len(names), 8), fontsize=10,
             title='action (backbone@input pixels, or skip k frames)', title_fontsize=10,
             frameon=False)
  fig.savefig(path, dpi=DPI)
  return dict(overall=plotted, per_class=plotted_classes, actions=names, size=size)


def _class_rows(per_class, names, max_classes) -> list[tuple[str, int, dict[str, float]]]:
  _, usage, videos, class_names, action_names = per_class
  rows = []
  for c, cls in enumerate(class_names):
    if videos[c] == 0:
      continue
    rows.append((cls, int(videos[c]),
                 {a: float(usage[c, action_names.index(a)]) if a in action_names else 0.0
                  for a in names}))
  rows.sort(key=lambda r: -r[2][names[0]])
  if len(rows) > max_classes:
    rows = rows[:max_classes // 2] + rows[-(max_classes - max_classes // 2):]
  return rows


def _stacked_bars(ax, rows: Sequence[tuple[str, dict[str, float]]], names, colours) -> None:
  """Horizontal 100% bars; a run whose frames take several actions at once (Multi-Scale) is
  drawn as shares of its frame-actions and says so."""
  labels = []
  for y, (label, shares) in enumerate(rows):
    total = sum(shares.values())
    several = total > 1.0 + 1e-6
    left = 0.0
    for a in names:
      width = shares[a] / total if total > 0 else 0.0
      if width <= 0:
        continue
      ax.barh(y, 100 * width, left=100 * left, color=colours[a], edgecolor='white', height=0.7)
      if width >= 0.06:
        rgb = colours[a]
        dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.5
        text = f'{100 * shares[a]:.0f}%'
        ax.text(100 * (left + width / 2), y, text, ha='center', va='center', fontsize=9,
                color='white' if dark else 'black')
      left += width
    labels.append(label + (f'\n(every frame takes all {sum(v > 0 for v in shares.values())})'
                           if several else ''))
  ax.set_yticks(range(len(rows)), labels, fontsize=10)
  ax.invert_yaxis()
  ax.set_xlim(0, 100)
  ax.set_xlabel('share of frames (%)', fontsize=11)
  ax.tick_params(axis='x', labelsize=10)


def _patch(colour):
  from matplotlib.patches import Patch  # pylint: disable=g-import-not-at-top
  return Patch(facecolor=colour, edgecolor='white')
