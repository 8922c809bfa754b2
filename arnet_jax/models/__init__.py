"""Models: backbones, the AR-Net policy and router, and the paper's baselines as configurations.

`create_model(config.model)` builds the network a config asks for; `action_space(config.model)`
says what its actions are. The `variant` field turns the configured AR-Net into a baseline:

| variant          | actions                                   | policy   |
|------------------|-------------------------------------------|----------|
| arnet            | backbones (+ policy head) + skips          | learned  |
| random           | same as arnet                             | uniform  |
| resolution_only  | backbones (+ policy head), no skips        | learned  |
| skip_only        | first backbone + skips                     | learned  |
| multiscale       | every resolution action on every frame     | none     |
|                  | (skips kept, never taken: AR-Net's parameters, so warm-up trains it) |
| uniform          | first backbone on every frame              | none     |
| lstm             | first backbone features -> LSTM -> head    | none     |
"""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from arnet_jax.models.arnet import ActionSpace, ARNet, LSTMBaseline, resize  # noqa: F401
from arnet_jax.models.backbones import BACKBONES, Classifier, create_backbone  # noqa: F401

VARIANTS = ('arnet', 'random', 'resolution_only', 'skip_only', 'multiscale', 'uniform', 'lstm')


def action_space(model_config: ml_collections.ConfigDict) -> ActionSpace:
  """The action space of `model_config.variant` (see the module docstring)."""
  c = model_config
  if c.variant not in VARIANTS:
    raise ValueError(f'Unknown model.variant {c.variant!r}; choose one of {", ".join(VARIANTS)}.')
  backbones, resolutions = tuple(c.backbones), tuple(c.resolutions)
  policy_action, skips = bool(c.policy_action), tuple(c.skips)
  if c.variant in ('uniform', 'lstm', 'skip_only'):
    if not backbones and c.variant != 'skip_only':
      raise ValueError(f'model.variant={c.variant!r} needs at least one backbone.')
    backbones, resolutions, policy_action = backbones[:1], resolutions[:1], not backbones
  if c.variant in ('uniform', 'lstm', 'resolution_only'):
    skips = ()
  return ActionSpace(backbones, resolutions, policy_action, int(c.policy_resolution), skips)


def dtype(name: str):
  if name not in ('float32', 'bfloat16'):
    raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def create_model(model_config: ml_collections.ConfigDict, *, bn_axis_name: str | None = None):
  """The Flax module for `model_config` (ARNet or LSTMBaseline)."""
  c = model_config
  space = action_space(c)
  kw = dict(width_multiplier=c.width_multiplier, depth_multiplier=c.depth_multiplier,
            dropout_rate=c.dropout, resize_method=c.resize, dtype=dtype(c.dtype),
            bn_axis_name=bn_axis_name, lstm_hidden=c.lstm_hidden)
  if c.variant == 'lstm':
    return LSTMBaseline(c.num_classes, space.backbones[0], space.resolutions[0], **kw)
  mode = {'random': 'random', 'multiscale': 'all', 'uniform': 'none'}.get(c.variant, 'learned')
  return ARNet(c.num_classes, space, mode, c.policy_backbone, **kw)
