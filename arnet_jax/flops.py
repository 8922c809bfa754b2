"""GFLOPs of AR-Net's actions, derived from the model definitions, and of a batch of decisions.

Counts come from tracing the Flax modules abstractly (`jax.eval_shape`) with an interceptor that
sees every Conv, depthwise conv, Dense, BatchNorm and global pooling call with its input and output
shapes, so any width, depth or resolution is counted, not looked up.

Two conventions (`convention=`):
- 'paper' reproduces the AR-Net paper, i.e. the original code: thop's counts (multiply-accumulates
  of convolutions and linear layers, +1 per output of a biased convolution, 4 ops per BatchNorm
  element, (k + 1) per output of adaptive average pooling) for ResNet and MobileNetV2. For
  EfficientNet the original scales the published cost (multiply-accumulates at the network's
  *native* resolution) by (R / 224)^2, which for B3@224 is ~1.9x what runs; we derive the same
  figure the same way. The LSTM costs 2 * F^2 for F input features (the original's formula).
- 'macs' counts the multiply-accumulates of what runs: convolutions and linear layers at the
  actual resolution and the LSTM's 4 * H * (F + H).

GFLOPs per video = sum over its T frames; per frame = per video / T (the paper's GFLOPs/V = 16 x
GFLOPs/f). The policy network (CNN + LSTM + action head) runs on every frame of a policy-driven
model: our batched implementation computes its features for all T frames before the scan.

`python -m arnet_jax.flops --config=configs/activitynet.py [--json] [--convention=macs]`
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from arnet_jax import models
from arnet_jax.models import efficientnet, layers

CONVENTIONS = ('paper', 'macs')


@dataclasses.dataclass(frozen=True)
class OpCounts:
  """Per-image operation counts of a network (operations, not G)."""
  conv_macs: float = 0.0
  conv_bias: float = 0.0   # outputs of biased convolutions
  linear_macs: float = 0.0
  norm_elements: float = 0.0
  pool_ops: float = 0.0

  def gflops(self, convention: str) -> float:
    _check_convention(convention)
    total = self.conv_macs + self.linear_macs
    if convention == 'paper':
      total += self.conv_bias + 4 * self.norm_elements + self.pool_ops
    return total / 1e9


def _check_convention(convention: str):
  if convention not in CONVENTIONS:
    raise ValueError(f'convention must be one of {CONVENTIONS}, got {convention!r}')


def count_ops(module: nn.Module, input_shape: Sequence[int], **call_kwargs) -> OpCounts:
  """Counts the operations of one `module` call on an input of `input_shape`, per batch item."""
  counts = dict(conv_macs=0.0, conv_bias=0.0, linear_macs=0.0, norm_elements=0.0, pool_ops=0.0)

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name != '__call__':
      return out
    m, x = context.module, args[0] if args else None
    if isinstance(m, nn.Conv):
      taps = int(np.prod(m.kernel_size)) * x.shape[-1] // m.feature_group_count
      counts['conv_macs'] += out.size * taps
      counts['conv_bias'] += out.size if m.use_bias else 0
    elif isinstance(m, layers.DepthwiseConv):
      counts['conv_macs'] += out.size * m.kernel_size ** 2
    elif isinstance(m, nn.Dense):
      counts['linear_macs'] += out.size * x.shape[-1]
    elif isinstance(m, nn.BatchNorm):
      counts['norm_elements'] += x.size
    elif isinstance(m, layers.GlobalAvgPool):
      counts['pool_ops'] += (x.shape[1] * x.shape[2] + 1) * out.size
    return out

  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1), 'gumbel': jax.random.key(2)}
  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda x: module.init(rngs, x, **call_kwargs), x)
  return OpCounts(**{k: v / input_shape[0] for k, v in counts.items()})


@functools.lru_cache(maxsize=None)
def backbone_gflops(name: str, resolution: int, num_classes: int | None = None, *,
                    convention: str = 'paper', width_multiplier: float = 1.0,
                    depth_multiplier: float = 1.0) -> float:
  """GFLOPs of backbone `name` on one `resolution`^2 image, with a C-class head if given."""
  _check_convention(convention)
  net = models.create_backbone(name, width_multiplier=width_multiplier,
                               depth_multiplier=depth_multiplier)
  counted_at = resolution
  if convention == 'paper' and name in efficientnet.PARAMS:
    counted_at, convention = efficientnet.PARAMS[name][2], 'macs'
  if num_classes:
    net = models.Classifier(net, num_classes)
  gflops = count_ops(net, (1, counted_at, counted_at, 3)).gflops(convention)
  return gflops * (resolution / 224) ** 2 if counted_at != resolution else gflops


@functools.lru_cache(maxsize=None)
def num_features(name: str, width_multiplier: float = 1.0, depth_multiplier: float = 1.0) -> int:
  return models.create_backbone(name, width_multiplier=width_multiplier,
                                depth_multiplier=depth_multiplier).num_features


def lstm_gflops(input_features: int, hidden: int, convention: str = 'paper') -> float:
  """One LSTMCell step: 2 F^2 ('paper', the original's formula) or 4 H (F + H) ('macs')."""
  _check_convention(convention)
  if convention == 'paper':
    return 2 * input_features ** 2 / 1e9
  return 4 * hidden * (input_features + hidden) / 1e9


@dataclasses.dataclass(frozen=True)
class CostTable:
  """GFLOPs per frame of each action and of the policy network.

  action_gflops[a]: the backbone and head behind action a (the lite head for the policy action,
  0 for skips). policy_gflops: CNN + LSTM + action head, paid on every frame the policy sees
  (0 when the model has no policy).
  """
  action_names: tuple[str, ...]
  action_gflops: tuple[float, ...]
  policy_cnn_gflops: float
  lstm_gflops: float
  convention: str

  @property
  def policy_gflops(self) -> float:
    return self.policy_cnn_gflops + self.lstm_gflops


def cost_table(model_config: ml_collections.ConfigDict, convention: str = 'paper') -> CostTable:
  """The cost of every action of `model_config` (its method's, see `arnet_jax.registry`)."""
  from arnet_jax import registry  # pylint: disable=g-import-not-at-top
  _check_convention(convention)
  return registry.get(model_config.variant).cost_table(model_config, convention)


def decision_gflops(actions: np.ndarray, table: CostTable,
                    policy_frames: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """GFLOPs of a batch of decisions.

  Args:
    actions: `[B, T, A]` actions in effect per frame (one-hot; Multi-Scale: all resolution
      actions set).
    table: the model's `CostTable`.
    policy_frames: `[B]` frames the policy network ran on (default: all T).

  Returns: per_video `[B]` and per_frame `[B]` (= per_video / T).
  """
  actions = np.asarray(actions, np.float64)
  t = actions.shape[1]
  per_video = np.einsum('bta,a->b', actions, np.asarray(table.action_gflops))
  if policy_frames is None:
    policy_frames = np.full(actions.shape[0], t)
  per_video = per_video + table.policy_gflops * np.asarray(policy_frames, np.float64)
  return dict(per_video=per_video, per_frame=per_video / t)


def summary(model_config: ml_collections.ConfigDict, convention: str = 'paper') -> dict:
  """The table printed by the CLI: every action, the policy, Uniform and Multi-Scale per frame."""
  from arnet_jax import registry  # pylint: disable=g-import-not-at-top
  table = cost_table(model_config, convention)
  baseline = lambda variant: cost_table(registry.with_variant(model_config, variant), convention)
  uniform, multiscale = baseline('uniform'), baseline('multiscale')
  return dict(
      actions=[dict(name=n, gflops=g) for n, g in zip(table.action_names, table.action_gflops)],
      uniform_gflops_per_frame=uniform.action_gflops[0],
      multiscale_gflops_per_frame=sum(multiscale.action_gflops) + multiscale.policy_gflops,
      policy_gflops_per_frame=table.policy_gflops,
      policy_cnn_gflops=table.policy_cnn_gflops,
      lstm_gflops=table.lstm_gflops,
      convention=convention)


def main(argv):
  del argv
  from absl import flags, logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  config = flags.FLAGS.config
  result = summary(config.model, flags.FLAGS.convention)
  print(f'GFLOPs per frame ({result["convention"]} convention, {config.model.num_classes} '
        'classes)')
  for row in result['actions']:
    print(f'  {row["name"]:<28} {row["gflops"]:8.4f}')
  print(f'  {"policy CNN":<28} {result["policy_cnn_gflops"]:8.4f}')
  print(f'  {"policy LSTM + action head":<28} {result["lstm_gflops"]:8.4f}')
  print(f'  {"policy total":<28} {result["policy_gflops_per_frame"]:8.4f}')
  print(f'  {"Uniform":<28} {result["uniform_gflops_per_frame"]:8.4f}')
  print(f'  {"Multi-Scale":<28} {result["multiscale_gflops_per_frame"]:8.4f}')
  if flags.FLAGS.json:
    print(json.dumps(result))


if __name__ == '__main__':
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
  flags.DEFINE_bool('json', False, 'Also print the table as one JSON object on the last line.')
  flags.DEFINE_enum('convention', 'paper', CONVENTIONS, 'How operations are counted.')
  flags.mark_flags_as_required(['config'])
  app.run(main)
