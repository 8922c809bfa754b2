"""MobileNetV2 feature extractor in torchvision's layout (the AR-Net policy CNN).

`[N, H, W, 3] -> [N, F]` pooled features, F = 1280 at width 1.0.
`pool=False`: the last feature map `[N, h, w, F]` instead (AdaFocus's global CNN).

Names follow torchvision's `features.i...` with '.' -> '_': `features_0` is the stem
(`conv`/`bn` = torchvision `features.0.0`/`.1`); inverted residual `features_i` holds `conv_j`
entries numbered as torchvision's `features.i.conv.j`, where a ConvBNReLU entry has `conv`/`bn`
children. The 3x3 depthwise convolutions are `layers.DepthwiseConv`, computed by the active
kernel set (shifted multiply-adds on CPU, XLA's grouped convolution elsewhere).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from arnet_jax.models import layers

# t (expansion), c (channels), n (repeats), s (stride): torchvision's inverted_residual_setting.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
  """torchvision's `_make_divisible`: round to a multiple of divisor, never below 90%."""
  new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if new_value < 0.9 * value:
    new_value += divisor
  return new_value


class ConvBNReLU(nn.Module):
  """Conv (dense or depthwise) + BN + ReLU6; children `conv`, `bn`."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  depthwise: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.depthwise:
      x = layers.DepthwiseConv(self.kernel_size, self.strides, dtype=self.dtype, name='conv')(x)
    else:
      x = layers.conv(self.features, self.kernel_size, strides=self.strides, dtype=self.dtype,
                      name='conv')(x)
    x = layers.batch_norm(train, dtype=self.dtype, name='bn')(x)
    return layers.relu6(x)


class InvertedResidual(nn.Module):
  features: int
  strides: int
  expand_ratio: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    in_features = x.shape[-1]
    hidden = int(round(in_features * self.expand_ratio))
    kw = dict(dtype=self.dtype)
    y, j = x, 0
    if self.expand_ratio != 1:
      y = ConvBNReLU(hidden, 1, name='conv_0', **kw)(y, train)
      j = 1
    y = ConvBNReLU(hidden, 3, self.strides, depthwise=True, name=f'conv_{j}', **kw)(y, train)
    y = layers.conv(self.features, 1, dtype=self.dtype, name=f'conv_{j + 1}')(y)
    y = layers.batch_norm(train, dtype=self.dtype,
                          name=f'conv_{j + 2}')(y)
    if self.strides == 1 and in_features == self.features:
      y = x + y
    return y


class MobileNetV2(nn.Module):
  """`[N, H, W, 3] -> [N, last_channel]`."""
  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  last_channel: int | None = None  # torchvision: 1280 * max(1, width)
  setting: Sequence[Sequence[int]] = INVERTED_RESIDUAL_SETTING
  dtype: Any = jnp.float32
  pool: bool = True  # False: the last feature map `[N, h, w, F]` instead of its average

  @property
  def num_features(self) -> int:
    return self.last_channel or make_divisible(1280 * max(1.0, self.width_multiplier))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    kw = dict(dtype=self.dtype)
    x = ConvBNReLU(make_divisible(32 * self.width_multiplier), 3, 2, name='features_0',
                   **kw)(x, train)
    index = 1
    for t, c, n, s in self.setting:
      features = make_divisible(c * self.width_multiplier)
      for i in range(max(1, round(n * self.depth_multiplier))):
        x = InvertedResidual(features, s if i == 0 else 1, t, name=f'features_{index}',
                             **kw)(x, train)
        index += 1
    x = ConvBNReLU(self.num_features, 1, name=f'features_{index}', **kw)(x, train)
    return layers.GlobalAvgPool(name='avgpool')(x) if self.pool else x


def mobilenet_v2(*, width_multiplier: float = 1.0, depth_multiplier: float = 1.0,
                 dtype: Any = jnp.float32,
                 **kwargs) -> MobileNetV2:
  """torchvision's MobileNetV2 at width 1; thinner widths also thin the last layer."""
  last = None if width_multiplier >= 1 else make_divisible(1280 * width_multiplier)
  return MobileNetV2(width_multiplier, depth_multiplier, last, dtype=dtype, **kwargs)
