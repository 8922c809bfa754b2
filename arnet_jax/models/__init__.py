"""Models: backbones, the AR-Net policy and router, the LSTM baseline.

`create_model(config.model)` builds the network of the configured method (its registry entry,
`arnet_jax.registry`, decides which); `abstract_variables(model, shape)` are its variables'
shapes and dtypes, without computing anything.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections

from arnet_jax.models.arnet import ActionSpace, ARNet, LSTMBaseline, resize  # noqa: F401
from arnet_jax.models.backbones import BACKBONES, Classifier, create_backbone  # noqa: F401

DTYPES = ('float32', 'bfloat16')


def dtype(name: str):
  if name not in DTYPES:
    raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def create_model(model_config: ml_collections.ConfigDict):
  """The Flax module of `model_config.variant` (see `arnet_jax.registry`)."""
  from arnet_jax import registry  # pylint: disable=g-import-not-at-top
  return registry.get(model_config.variant).create_model(model_config)


def abstract_variables(model, input_shape: Sequence[int], **call_kwargs) -> dict:
  """`{'params': ..., 'batch_stats': ...}` of `model` on an input of `input_shape`, as
  `jax.ShapeDtypeStruct`s (traced, not computed)."""
  rngs = {n: jax.random.key(0) for n in ('params', 'gumbel', 'dropout')}
  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(rngs, x, **call_kwargs), x)
  return {k: shapes[k] for k in ('params', 'batch_stats') if k in shapes}
