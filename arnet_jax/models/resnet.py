"""ResNet-18/34/50 feature extractors in torchvision's layout.

`[N, H, W, 3] -> [N, F]` pooled features, F = 512 (basic blocks) or 2048 (bottlenecks) at width 64.
`pool=False`: the last feature map `[N, h, w, F]` instead (AdaFocus's global CNN).

Parameter names follow torchvision with '.' -> '_' (`layer2_0/downsample_0/kernel` is
`layer2.0.downsample.0.weight`), so a converter maps them one to one. Width (`base_width`) and
depth (`stage_sizes`) are free, so the CPU demo can use a tiny network of the same structure.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from arnet_jax.models import layers

ARCHITECTURES = {
    'resnet18': ('basic', (2, 2, 2, 2)),
    'resnet34': ('basic', (3, 4, 6, 3)),
    'resnet50': ('bottleneck', (3, 4, 6, 3)),
    'resnet101': ('bottleneck', (3, 4, 23, 3)),
}


class BasicBlock(nn.Module):
  features: int
  strides: int
  downsample: bool
  dtype: Any
  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name: layers.batch_norm(train, dtype=self.dtype,
                                        name=name)
    y = layers.conv(self.features, 3, strides=self.strides, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(bn('bn1')(y))
    y = layers.conv(self.features, 3, dtype=self.dtype, name='conv2')(y)
    y = bn('bn2')(y)
    if self.downsample:
      x = layers.conv(self.features, 1, strides=self.strides, dtype=self.dtype,
                      name='downsample_0')(x)
      x = bn('downsample_1')(x)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """torchvision's v1.5 bottleneck: the stride sits on the 3x3 convolution."""
  features: int
  strides: int
  downsample: bool
  dtype: Any
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    bn = lambda name: layers.batch_norm(train, dtype=self.dtype,
                                        name=name)
    y = layers.conv(self.features, 1, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(bn('bn1')(y))
    y = layers.conv(self.features, 3, strides=self.strides, dtype=self.dtype, name='conv2')(y)
    y = nn.relu(bn('bn2')(y))
    y = layers.conv(self.features * 4, 1, dtype=self.dtype, name='conv3')(y)
    y = bn('bn3')(y)
    if self.downsample:
      x = layers.conv(self.features * 4, 1, strides=self.strides, dtype=self.dtype,
                      name='downsample_0')(x)
      x = bn('downsample_1')(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """`[N, H, W, 3] -> [N, 8 * base_width * expansion]`."""
  block: str = 'bottleneck'
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  base_width: int = 64
  dtype: Any = jnp.float32
  pool: bool = True  # False: the last feature map `[N, h, w, F]` instead of its average

  @property
  def num_features(self) -> int:
    return self.base_width * 8 * (4 if self.block == 'bottleneck' else 1)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    block_cls = {'basic': BasicBlock, 'bottleneck': Bottleneck}[self.block]
    x = layers.conv(self.base_width, 7, strides=2, dtype=self.dtype, name='conv1')(x)
    x = layers.batch_norm(train, dtype=self.dtype, name='bn1')(x)
    x = nn.relu(x)
    x = layers.max_pool(x, 3, 2, 1)
    in_features = self.base_width
    for stage, num_blocks in enumerate(self.stage_sizes):
      features = self.base_width * 2**stage
      for i in range(num_blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = block_cls(
            features, strides,
            downsample=(i == 0 and (strides != 1 or in_features != features * block_cls.expansion)),
            dtype=self.dtype,
            name=f'layer{stage + 1}_{i}')(x, train)
        in_features = features * block_cls.expansion
    return layers.GlobalAvgPool(name='avgpool')(x) if self.pool else x


def resnet(arch: str, *, width_multiplier: float = 1.0, depth_multiplier: float = 1.0,
           dtype: Any = jnp.float32, **kwargs) -> ResNet:
  """ResNet by torchvision name, optionally thinner/shallower with the same structure."""
  block, stages = ARCHITECTURES[arch]
  return ResNet(block=block,
                stage_sizes=tuple(max(1, round(n * depth_multiplier)) for n in stages),
                base_width=max(1, round(64 * width_multiplier)), dtype=dtype, **kwargs)
