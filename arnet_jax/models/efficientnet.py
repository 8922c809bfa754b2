"""EfficientNet-B0..B3 feature extractors in efficientnet_pytorch's layout.

`[N, H, W, 3] -> [N, F]` pooled features (F = 1280 for B0/B1, 1408 B2, 1536 B3).

Names follow efficientnet_pytorch without the leading underscore (`conv_stem`, `bn0`,
`blocks_7/depthwise_conv`, `conv_head`, `bn1`). BatchNorm uses eps 1e-3 and torch momentum 0.01.
Padding is efficientnet_pytorch's *static* 'same' padding, computed once for the network's native
image size (224 B0, 240 B1, 260 B2, 300 B3) and kept whatever the input size, exactly as the
PyTorch model (and therefore AR-Net's EfficientNet variant) computes it.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from arnet_jax.models import layers

# (width, depth, native resolution, head dropout) from efficientnet_pytorch's params table.
PARAMS = {
    'efficientnet_b0': (1.0, 1.0, 224, 0.2),
    'efficientnet_b1': (1.0, 1.1, 240, 0.2),
    'efficientnet_b2': (1.1, 1.2, 260, 0.3),
    'efficientnet_b3': (1.2, 1.4, 300, 0.3),
}
# repeats, kernel, stride, expand ratio, in channels, out channels (se ratio 0.25 everywhere).
BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
SE_RATIO = 0.25
DROP_CONNECT_RATE = 0.2
BN_MOMENTUM = 0.99  # torch momentum 0.01
BN_EPS = 1e-3


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  filters *= width
  new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
  if new < 0.9 * filters:
    new += divisor
  return int(new)


def round_repeats(repeats: int, depth: float) -> int:
  return int(math.ceil(depth * repeats))


def swish(x: jax.Array) -> jax.Array:
  return x * jax.nn.sigmoid(x)


class MBConvBlock(nn.Module):
  """Mobile inverted bottleneck with squeeze-excitation; `native_size` fixes the padding."""
  kernel_size: int
  strides: int
  expand_ratio: int
  features: int
  native_size: int
  drop_connect_rate: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name: layers.batch_norm(train, dtype=self.dtype,
                                        momentum=BN_MOMENTUM, epsilon=BN_EPS, name=name)
    in_features = x.shape[-1]
    hidden = in_features * self.expand_ratio
    y = x
    if self.expand_ratio != 1:
      y = swish(bn('bn0')(layers.conv(hidden, 1, dtype=self.dtype, name='expand_conv')(y)))
    pad = layers.same_padding(self.native_size, self.kernel_size, self.strides)
    y = layers.DepthwiseConv(self.kernel_size, self.strides, padding=(pad, pad),
                             dtype=self.dtype, name='depthwise_conv')(y)
    y = swish(bn('bn1')(y))
    squeezed = max(1, int(in_features * SE_RATIO))
    s = jnp.mean(y, axis=(1, 2), keepdims=True)
    s = layers.conv(squeezed, 1, use_bias=True, dtype=self.dtype, name='se_reduce')(s)
    s = layers.conv(hidden, 1, use_bias=True, dtype=self.dtype, name='se_expand')(swish(s))
    y = y * jax.nn.sigmoid(s)
    y = bn('bn2')(layers.conv(self.features, 1, dtype=self.dtype, name='project_conv')(y))
    if self.strides == 1 and in_features == self.features:
      if train and self.drop_connect_rate > 0:
        keep = 1.0 - self.drop_connect_rate
        mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (y.shape[0], 1, 1, 1))
        y = y * mask.astype(y.dtype) / keep
      y = y + x
    return y


class EfficientNet(nn.Module):
  """`[N, H, W, 3] -> [N, round_filters(1280)]`."""
  width: float = 1.0
  depth: float = 1.0
  native_size: int = 224
  drop_connect_rate: float = DROP_CONNECT_RATE
  dtype: Any = jnp.float32

  @property
  def num_features(self) -> int:
    return round_filters(1280, self.width)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    bn = lambda name: layers.batch_norm(train, dtype=self.dtype,
                                        momentum=BN_MOMENTUM, epsilon=BN_EPS, name=name)
    size = self.native_size
    pad = layers.same_padding(size, 3, 2)
    x = layers.conv(round_filters(32, self.width), 3, strides=2, padding=(pad, pad),
                    dtype=self.dtype, name='conv_stem')(x)
    x = swish(bn('bn0')(x))
    size = -(-size // 2)
    specs = []
    for repeats, k, s, e, _, out in BLOCKS:
      for i in range(round_repeats(repeats, self.depth)):
        specs.append((k, s if i == 0 else 1, e, round_filters(out, self.width)))
    for index, (k, s, e, out) in enumerate(specs):
      x = MBConvBlock(k, s, e, out, size, self.drop_connect_rate * index / len(specs),
                      dtype=self.dtype,
                      name=f'blocks_{index}')(x, train)
      size = -(-size // s)
    x = layers.conv(self.num_features, 1, dtype=self.dtype, name='conv_head')(x)
    x = swish(bn('bn1')(x))
    return layers.GlobalAvgPool(name='avgpool')(x)


def efficientnet(arch: str, *, width_multiplier: float = 1.0, depth_multiplier: float = 1.0,
                 dtype: Any = jnp.float32, **kwargs) -> EfficientNet:
  """EfficientNet-Bn by name; the multipliers scale its own width/depth coefficients."""
  width, depth, native, _ = PARAMS[arch]
  return EfficientNet(width * width_multiplier, depth * depth_multiplier, native, dtype=dtype,
                      **kwargs)
