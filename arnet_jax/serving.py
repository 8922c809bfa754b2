"""Runs a model exported by `python -m arnet_jax.export` with JAX alone (docs/export.md).

  from arnet_jax import serving   # or copy this file: it imports only jax, numpy, the stdlib
  model = serving.load('exported/my_run')
  out = model(video)               # video [B, T, S, S, 3], ImageNet-normalised (manifest.json)
  out['logits'], out['actions'], out['gflops']

Nothing of the model's code is needed: no Flax, no `arnet_jax.models`, no TensorFlow. The
folder holds the method's evaluation forward as a serialized `jax.export.Exported`
(`model.jax_export`, called as `exported.call(weights, video)`), its weights
(`variables.npz`, `{'params/backbone_0/...': array}`) and `manifest.json`.

`model(video)` returns, as numpy arrays, what the method's evaluation forward returns (AR-Net:
logits `[B, C]`, frame_logits `[B, T, C]`, actions `[B, T, A]`, decided `[B, T]`, processed
`[B, T]`, action_logits `[B, T, A]`; the manifest's `outputs` lists them with their shapes), and
`gflops` `[B]`: each video's GFLOPs as evaluation counts them, actions `[B, T, A]` times the
manifest's per-action GFLOPs plus the policy's GFLOPs on each of the T frames.

The batch shape is fixed at export: a video of another shape, or not floating point, is a
ValueError saying what the model takes.

Shape letters: B videos, T frames, S the frame side, A actions, C classes.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = 'arnet_jax.export/1'
MANIFEST = 'manifest.json'


def read_manifest(folder: str) -> dict:
  """The manifest of an exported folder; a missing folder or manifest is a FileNotFoundError,
  a folder of another format a ValueError."""
  path = os.path.join(folder, MANIFEST)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{folder} holds no exported model ({MANIFEST} is missing). Write '
                            'one with `python -m arnet_jax.export --checkpoint=DIR --out=FOLDER`.')
  with open(path, encoding='utf-8') as f:
    manifest = json.load(f)
  if manifest.get('format') != FORMAT:
    raise ValueError(f'{path} is of format {manifest.get("format")!r}; this loader reads '
                     f'{FORMAT!r}. Export the checkpoint again with this version.')
  return manifest


def describe_input(spec: dict) -> str:
  """'[2, 16, 64, 64, 3] float32 (2 videos of 16 frames, 64x64 RGB, ImageNet-normalised)'."""
  b, t, h, w, _ = spec['shape']
  return (f'{list(spec["shape"])} {spec["dtype"]} ({b} video{"s" * (b != 1)} of {t} frames, '
          f'{h}x{w} RGB, {spec["normalisation"]["name"]})')


def check_video(video: Any, spec: dict) -> jax.Array:
  """`video` as the array the program takes (`spec`: the manifest's `input`); another shape or
  a non-float array is a ValueError naming what the model takes."""
  if not (hasattr(video, 'shape') and hasattr(video, 'dtype')):
    video = np.asarray(video)
  shape, wanted = tuple(video.shape), tuple(spec['shape'])
  if shape != wanted:
    fix = 'sample, resize and crop the clips as the manifest\'s "preprocessing" says'
    if len(shape) == 5 and shape[1:] == wanted[1:]:
      fix = (f'pad the batch to {wanted[0]} videos (and drop the padding outputs)'
             if shape[0] < wanted[0] else f'call it on {wanted[0]} videos at a time')
      fix += f' or export again with --batch_size={shape[0]}'
    raise ValueError(f'video has shape {list(shape)}, but this model was exported for '
                     f'{describe_input(spec)}: {fix}.')
  if not jnp.issubdtype(video.dtype, jnp.floating):
    raise ValueError(f'video is {video.dtype}, but this model takes {describe_input(spec)}: scale '
                     'uint8 frames to [0, 1], then subtract the manifest\'s mean and divide by '
                     'its std.')
  return jnp.asarray(video, dtype=spec['dtype'])


def video_gflops(actions: np.ndarray, gflops: dict) -> np.ndarray:
  """GFLOPs of each video `[B]` from its actions `[B, T, A]` and the manifest's `gflops`."""
  actions = np.asarray(actions, np.float64)
  per_video = np.einsum('bta,a->b', actions, np.asarray(gflops['action_gflops'], np.float64))
  return per_video + gflops['policy_gflops'] * actions.shape[1]


class ExportedModel:
  """An exported folder, loaded: `model(video) -> dict of numpy arrays` (see the module doc).

  The weights are put on the default device once, when loading; the program compiles on the
  first call (once: every call has the exported shape).
  """

  def __init__(self, folder: str):
    self.folder = folder
    self.manifest = read_manifest(folder)
    with open(os.path.join(folder, self.manifest['program']), 'rb') as f:
      self.exported = jax.export.deserialize(bytearray(f.read()))
    with np.load(os.path.join(folder, self.manifest['variables'])) as weights:
      self.weights = {k: jax.device_put(weights[k]) for k in weights.files}

  def __call__(self, video: Any) -> dict[str, np.ndarray]:
    video = check_video(video, self.manifest['input'])
    out = {k: np.asarray(v) for k, v in self.exported.call(self.weights, video).items()}
    out['gflops'] = video_gflops(out['actions'], self.manifest['gflops'])
    return out


def load(folder: str) -> ExportedModel:
  """The model exported to `folder`, ready to call (see `ExportedModel`)."""
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'Exported model folder {folder} does not exist.')
  return ExportedModel(folder)
