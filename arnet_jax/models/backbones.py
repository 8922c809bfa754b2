"""Backbone registry and the per-backbone classifier (features -> dropout -> Dense(C)).

`Classifier`: `[N, H, W, 3] -> [N, C]` logits; `Classifier.embed`: `[N, H, W, 3] -> [N, F]`.
Children: `features` (the backbone, reference parameter names) and `head`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from arnet_jax.models import efficientnet, layers, mobilenet_v2, resnet

BACKBONES = (*resnet.ARCHITECTURES, 'mobilenet_v2', *efficientnet.PARAMS)

# TSN / AR-Net initialise the new classification heads with N(0, 0.001) and zero bias.
head_init = layers.normal_init(0.001)


def create_backbone(arch: str, *, width_multiplier: float = 1.0, depth_multiplier: float = 1.0,
                    dtype: Any = jnp.float32, **module_kwargs) -> nn.Module:
  """A feature extractor `[N, H, W, 3] -> [N, F]` by architecture name (see `BACKBONES`).

  `module_kwargs` (e.g. `name`) go to the Flax module.
  """
  kw = dict(width_multiplier=width_multiplier, depth_multiplier=depth_multiplier, dtype=dtype,
            **module_kwargs)
  if arch in resnet.ARCHITECTURES:
    return resnet.resnet(arch, **kw)
  if arch == 'mobilenet_v2':
    return mobilenet_v2.mobilenet_v2(**kw)
  if arch in efficientnet.PARAMS:
    return efficientnet.efficientnet(arch, **kw)
  raise ValueError(f'Unknown backbone {arch!r}; choose one of {", ".join(BACKBONES)}.')


class Classifier(nn.Module):
  """A backbone with its own head: dropout (0.5 in AR-Net) + Dense(num_classes)."""
  features: nn.Module
  num_classes: int
  dropout_rate: float = 0.5

  def setup(self):
    self.head = nn.Dense(self.num_classes, kernel_init=head_init, name='head')
    self.dropout = nn.Dropout(self.dropout_rate)

  def embed(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.features(x, train)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    f = self.dropout(self.embed(x, train), deterministic=not train)
    return self.head(f).astype(jnp.float32)
