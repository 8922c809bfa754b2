"""Where each of our variables lives in a PyTorch state dict: the importer's naming rules.

Our parameter names are the reference implementations' with '.' -> '_' (see the backbone module
docstrings), so one rule per architecture maps a variable path to a torch key:

  variable                                  torch key (after the mount's prefix)
  ResNet  layer2_0/downsample_0/kernel      layer2.0.downsample.0.weight
  MobV2   features_3/conv_1/conv/kernel     features.3.conv.1.0.weight  (torchvision)
                                            features.3.conv.3.weight    (flat, older/TSM naming)
  EffNet  blocks_7/se_reduce/bias           _blocks.7._se_reduce.bias
  Dense   head/kernel                       new_fc.weight (transposed)
  LSTM    lstm_ih/kernel, lstm_ih/bias      rnn.weight_ih (transposed), rnn.bias_ih + rnn.bias_hh
          lstm_hh                           rnn.weight_hh (transposed)
                                            (the gate order is torch's i, f, g, o in both)
  GRU     gru/ih/kernel, gru/ih/bias        gru.weight_ih_l0 (transposed), gru.bias_ih_l0
          gru/hh/kernel, gru/hh/bias        gru.weight_hh_l0 (transposed), gru.bias_hh_l0
                                            (torch.nn.GRU's layer 0, gates r, z, n in both; the
                                            biases stay apart: b_hn is gated by r)

Leaves: kernel/scale -> weight, bias -> bias, BatchNorm batch_stats mean/var -> running_mean/var.
Layouts: 'conv' torch [O, I/groups, kh, kw] <-> ours [kh, kw, I/groups, O] (a depthwise
[C, 1, k, k] becomes [k, k, 1, C]); 'dense' torch [out, in] <-> ours [in, out]; 'vector' as is.

A *mount* attaches a torch key prefix to a subtree of our variables and says what is there: a
backbone architecture, 'linear' (any module with weight/bias, BatchNorm statistics), 'lstm_ih',
'lstm_hh', 'gru_ih' or 'gru_hh'.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

import numpy as np

from arnet_jax.models import efficientnet, resnet

LEAVES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
          'var': 'running_var'}
NAMINGS = ('nested', 'flat')  # MobileNetV2 key namings


@dataclasses.dataclass(frozen=True)
class Source:
  """The torch key(s) one variable is read from; several keys are summed (LSTM biases)."""
  keys: tuple[str, ...]
  layout: str  # 'conv' | 'dense' | 'vector'


@dataclasses.dataclass(frozen=True)
class Mount:
  """Our variables under `ours` come from torch keys under `torch` (a module name)."""
  ours: tuple[str, ...]
  torch: str
  what: str  # a backbone architecture, 'linear', 'lstm_ih', 'lstm_hh', 'gru_ih' or 'gru_hh'


def to_ours(value: np.ndarray, layout: str) -> np.ndarray:
  if layout == 'conv':
    return np.transpose(value, (2, 3, 1, 0))
  if layout == 'dense':
    return value.T
  return value


def torch_shape(our_shape: Sequence[int], layout: str) -> tuple[int, ...]:
  """The torch shape that becomes `our_shape` under `layout`."""
  s = tuple(our_shape)
  if layout == 'conv':
    return (s[3], s[2], s[0], s[1])
  if layout == 'dense':
    return s[::-1]
  return s


def _layout(leaf: str, ndim: int) -> str:
  if leaf != 'kernel':
    return 'vector'
  return {4: 'conv', 2: 'dense'}[ndim]


def module_name(arch: str, path: Sequence[str], leaf: str, naming: str = 'nested') -> str:
  """The torch module name of our module `path` inside a backbone of architecture `arch`."""
  if arch in resnet.ARCHITECTURES:
    return '.'.join(p.replace('_', '.') for p in path)
  if arch in efficientnet.PARAMS:
    return '.'.join(f'_blocks.{p[7:]}' if re.fullmatch(r'blocks_\d+', p) else f'_{p}'
                    for p in path)
  if arch == 'mobilenet_v2':
    return _mobilenet_v2_name(path, leaf, naming)
  raise ValueError(f'No torch naming rule for architecture {arch!r}.')


def _mobilenet_v2_name(path: Sequence[str], leaf: str, naming: str) -> str:
  # Nested (torchvision): an inverted residual's `conv` holds ConvBNReLU entries j (`conv.j.0`
  # conv, `conv.j.1` BN), then the projection conv `conv.n` and its BN `conv.n+1`.
  # Flat (torchvision 0.2 / TSM): one Sequential with the ReLU6s counted, so ConvBNReLU j is
  # `conv.3j`, `conv.3j+1`, and the projection `conv.3n`, `conv.3n+1`.
  child = {'conv': 0, 'bn': 1}
  block = path[0].replace('_', '.')
  if len(path) == 2 and path[1] in child:  # the stem or the last 1x1 ConvBNReLU
    return f'{block}.{child[path[1]]}'
  j = int(path[1].split('_')[1])
  if len(path) == 3:
    k = child[path[2]]
    return f'{block}.conv.{3 * j + k}' if naming == 'flat' else f'{block}.conv.{j}.{k}'
  if naming == 'flat':
    return f'{block}.conv.{3 * j if leaf == "kernel" else 3 * j - 2}'
  return f'{block}.conv.{j}'


def source(mount: Mount, rest: Sequence[str], ndim: int, naming: str = 'nested') -> Source:
  """Where our variable `mount.ours + rest` (of rank `ndim`) is read from."""
  t = mount.torch
  if mount.what == 'lstm_hh':
    return Source((f'{t}.weight_hh',), 'dense')
  leaf = rest[-1]
  if mount.what in ('gru_ih', 'gru_hh'):  # torch.nn.GRU's layer 0: weight_ih_l0, bias_hh_l0, ...
    kind = 'weight' if leaf == 'kernel' else 'bias'
    return Source((f'{t}.{kind}_{mount.what[4:]}_l0',), 'dense' if leaf == 'kernel' else 'vector')
  if mount.what == 'lstm_ih':
    if leaf == 'bias':
      return Source((f'{t}.bias_ih', f'{t}.bias_hh'), 'vector')
    return Source((f'{t}.weight_ih',), 'dense')
  if mount.what == 'linear':
    return Source((f'{t}.{LEAVES[leaf]}',), _layout(leaf, ndim))
  module = module_name(mount.what, rest[:-1], leaf, naming)
  prefix = f'{t}.' if t else ''
  return Source((f'{prefix}{module}.{LEAVES[leaf]}',), _layout(leaf, ndim))


def under(prefix: str, keys) -> list[str]:
  """The keys inside module `prefix` ('' = all)."""
  return [k for k in keys if not prefix or k.startswith(prefix + '.')]


def mobilenet_v2_naming(keys, prefix: str = '') -> str:
  """'nested' or 'flat': which MobileNetV2 key naming the keys under `prefix` use."""
  nested = re.compile(r'(^|\.)features\.\d+\.conv\.\d+\.\d+\.')
  return 'nested' if any(nested.search(k) for k in under(prefix, keys)) else 'flat'


def infer_architecture(shapes: Mapping[str, Sequence[int]], prefix: str = '') -> str | None:
  """The backbone architecture whose keys sit under `prefix`, or None if none fits exactly.

  Distinguishes ResNet-18/34/50/101 (blocks per stage, bottleneck or not), MobileNetV2, and
  EfficientNet-B0..B3 (number of blocks, stem and head widths).
  """
  p = f'{prefix}.' if prefix else ''
  if f'{p}conv1.weight' in shapes and f'{p}layer1.0.conv1.weight' in shapes:
    block = 'bottleneck' if f'{p}layer1.0.conv3.weight' in shapes else 'basic'
    stages = tuple(_count(shapes, rf'{re.escape(p)}layer{s}\.(\d+)\.') for s in range(1, 5))
    width = shapes[f'{p}conv1.weight'][0]
    for name, spec in resnet.ARCHITECTURES.items():
      if spec == (block, stages) and width == 64:
        return name
    return None
  if f'{p}features.0.0.weight' in shapes and (f'{p}features.1.conv.0.weight' in shapes or
                                               f'{p}features.1.conv.0.0.weight' in shapes):
    return 'mobilenet_v2' if shapes[f'{p}features.0.0.weight'][0] == 32 else None
  if f'{p}_conv_stem.weight' in shapes and f'{p}_conv_head.weight' in shapes:
    found = (_count(shapes, rf'{re.escape(p)}_blocks\.(\d+)\.'),
             shapes[f'{p}_conv_stem.weight'][0], shapes[f'{p}_conv_head.weight'][0])
    for name, (width, depth, _, _) in efficientnet.PARAMS.items():
      blocks = sum(efficientnet.round_repeats(b[0], depth) for b in efficientnet.BLOCKS)
      if found == (blocks, efficientnet.round_filters(32, width),
                   efficientnet.round_filters(1280, width)):
        return name
  return None


def _count(keys, pattern: str) -> int:
  indices = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
  return max(indices) + 1 if indices else 0
