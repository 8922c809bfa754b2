"""Measures what makes the demo dataset a test of adaptive resolution.

  python -m arnet_jax.data.demo_properties --data_dir=DIR [--epochs=6] [--json]

Trains the same tiny frame-level CNN at two input resolutions on the demo's
train split (through the real input pipeline: multi-scale crop + flip at 64,
then torch-style nearest downsampling to the lower resolution, as AR-Net feeds
its lower-resolution branches), averages per-frame logits over the T frames
as AR-Net does, and reports validation mAP for:
  (a) uniform at the lowest resolution (24),
  (b) uniform at the highest resolution (64),
  (c) the oracle: the 64 model on the evidence frames only (what a perfect
      policy would send to the top resolution), the other frames skipped.
The demo is as intended when (a) is >= 20 points below (b) and (c) >= (b) - 2.
Self-contained (its own CNN), so it does not depend on the model code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from arnet_jax import defaults
from arnet_jax.data import demo
from arnet_jax.data import pipeline

TOP, LOW = 64, 24


class FrameCNN(nn.Module):
  """Per-frame classifier: [B, T, R, R, 3] -> per-frame logits [B, T, C].

  Global max pooling: the glyph covers ~6% of a frame.
  """

  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, t = x.shape[:2]
    x = x.reshape((b * t,) + x.shape[2:])
    for features, kernel, stride in ((24, 4, 2), (48, 3, 2), (48, 3, 1)):
      x = nn.relu(nn.Conv(features, (kernel, kernel), strides=stride)(x))
    x = x.max(axis=(1, 2))
    return nn.Dense(self.num_classes)(x).reshape(b, t, self.num_classes)


def nearest_resize(video: jax.Array, size: int) -> jax.Array:
  """[B, T, S, S, 3] -> [B, T, size, size, 3]; source index floor(i * S / size), torch 'nearest'."""
  idx = (jnp.arange(size) * video.shape[2]) // size
  return video[:, :, idx][:, :, :, idx]


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
  """AP of one class: mean precision at each positive's rank (scores [N], positives bool [N])."""
  order = np.argsort(-scores, kind='stable')
  hits = positives[order]
  if not hits.any():
    return float('nan')
  precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(precision[hits].mean())


def mean_average_precision(logits: np.ndarray, labels: np.ndarray) -> float:
  """mAP in percent over classes of softmaxed video scores [N, C] with first labels [N]."""
  probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
  aps = [average_precision(probs[:, c], labels == c) for c in range(logits.shape[1])]
  return 100.0 * float(np.nanmean(aps))


def run(data_dir: str | None, epochs: int, batch_size: int, seed: int,
        resolutions: tuple[int, ...]) -> dict:
  """Trains one FrameCNN per resolution; returns the measured mAPs and timings."""
  start = time.time()
  demo.ensure_demo_dataset(data_dir)
  cfg = defaults.data_config('demo')
  cfg.data_dir = data_dir
  cfg.image_size = TOP
  num_classes = pipeline.get_builder(cfg).info.features['label'].num_classes
  train_it, num_train = pipeline.create_split(cfg, 'train', batch_size=batch_size, train=True,
                                              num_classes=num_classes, seed=seed)
  steps = epochs * pipeline.steps_per_epoch(num_train, batch_size)

  model = FrameCNN(num_classes)
  tx = optax.adam(2e-3)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(resolutions))
  params = {r: model.init(k, jnp.zeros((1, 1, r, r, 3))) for r, k in zip(resolutions, keys)}
  opt = {r: tx.init(p) for r, p in params.items()}

  def loss_fn(p, video, label, r):
    logits = model.apply(p, nearest_resize(video, r) if r != TOP else video).mean(axis=1)
    return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()

  @jax.jit
  def train_step(params, opt, video, label):
    new_params, new_opt, losses = {}, {}, {}
    for r in resolutions:  # every resolution learns from the same clips
      losses[r], grads = jax.value_and_grad(loss_fn)(params[r], video, label, r)
      updates, new_opt[r] = tx.update(grads, opt[r], params[r])
      new_params[r] = optax.apply_updates(params[r], updates)
    return new_params, new_opt, losses

  @jax.jit
  def frame_logits(params, video):
    return {r: model.apply(params[r], nearest_resize(video, r) if r != TOP else video)
            for r in resolutions}

  for step in range(steps):
    batch = next(train_it)
    params, opt, losses = train_step(params, opt, batch['video'], batch['label'])
    if (step + 1) % pipeline.steps_per_epoch(num_train, batch_size) == 0:
      epoch = (step + 1) // pipeline.steps_per_epoch(num_train, batch_size)
      text = ', '.join(f'{r}px {float(v):.3f}' for r, v in losses.items())
      print(f'epoch {epoch}/{epochs}: train loss {text} ({time.time() - start:.0f} s)',
            file=sys.stderr, flush=True)

  eval_it, _ = pipeline.create_split(cfg, 'validation', batch_size=batch_size, train=False,
                                     num_classes=num_classes)
  per_res = {r: [] for r in resolutions}
  labels, evidence = [], []
  for batch in eval_it:
    keep = batch['mask'] > 0
    for r, v in frame_logits(params, batch['video']).items():
      per_res[r].append(np.asarray(v)[keep])
    labels.append(batch['label'][keep])
    evidence.append(batch['evidence'][keep])
  labels, evidence = np.concatenate(labels), np.concatenate(evidence)
  frames = {r: np.concatenate(v) for r, v in per_res.items()}
  result = {f'uniform_{r}': mean_average_precision(frames[r].mean(axis=1), labels)
            for r in resolutions}
  ev = evidence[..., None].astype(np.float32)
  oracle = (frames[TOP] * ev).sum(axis=1) / np.maximum(ev.sum(axis=1), 1.0)
  result[f'oracle_evidence_{TOP}'] = mean_average_precision(oracle, labels)
  result['evidence_frames_per_clip'] = float(evidence.sum(axis=1).mean())
  result.update(epochs=epochs, batch_size=batch_size, seed=seed,
                num_train=num_train, num_validation=int(len(labels)),
                seconds=round(time.time() - start, 1))
  return result


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog='python -m arnet_jax.data.demo_properties',
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--data_dir', default=None, help='TFDS data_dir (the demo is built if absent)')
  p.add_argument('--epochs', type=int, default=6)
  p.add_argument('--batch_size', type=int, default=16)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--all_resolutions', action='store_true',
                 help='also train at 32 and 48 (the demo config\'s middle resolutions)')
  p.add_argument('--json', action='store_true', help='end with one JSON line')
  args = p.parse_args(argv)
  resolutions = (TOP, 48, 32, LOW) if args.all_resolutions else (TOP, LOW)
  r = run(args.data_dir, args.epochs, args.batch_size, args.seed, resolutions)
  print(f'demo validation mAP ({r["num_validation"]} videos, {r["epochs"]} epochs, '
        f'{r["seconds"]:.0f} s):')
  for res in sorted(resolutions):
    print(f'  uniform at {res:>2} px           {r[f"uniform_{res}"]:5.1f}')
  print(f'  oracle: evidence frames at {TOP} {r[f"oracle_evidence_{TOP}"]:5.1f}  '
        f'({r["evidence_frames_per_clip"]:.1f} of 16 frames)')
  gap = r[f'uniform_{TOP}'] - r[f'uniform_{LOW}']
  oracle_gap = r[f'oracle_evidence_{TOP}'] - r[f'uniform_{TOP}']
  print(f'  highest - lowest = {gap:.1f} points (target >= 20); '
        f'oracle - highest = {oracle_gap:+.1f} points (target >= -2)')
  if args.json:
    print(json.dumps(r))
  return 0


if __name__ == '__main__':
  sys.exit(main())
