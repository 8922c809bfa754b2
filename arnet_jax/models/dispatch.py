"""Dispatchers: which frames one backbone of a router reads, and where its logits go.

Shape letters: N = B * T frames of a batch, S slots of a bucket, R resolution actions, C classes.

A dispatcher (V-MoE's `dispatch` / `combine` pair) is a pytree, so it passes through `jit`:
  dispatch(frames `[N, ...]`) -> `[S, ...]`        the frames the backbone classifies;
  combine(logits `[S, C]`, into `[N, R, C]`, r) -> `[N, R, C]` with column r written.
- `Dense`: every frame (S = N). Training's masked compute: every backbone sees every frame and
  the decisions select afterwards (static shapes, differentiable).
- `Bucket(indices)`: the frames at `indices` `[S]` (sparse inference). A slot holding N (out of
  range) is padding: it reads a real frame, so no NaN can appear, and its logits are dropped.
"""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Dense:
  """Every frame to the backbone."""

  def dispatch(self, frames: jax.Array) -> jax.Array:
    return frames

  def combine(self, logits: jax.Array, into: jax.Array, column: int) -> jax.Array:
    return into.at[:, column].set(logits.astype(into.dtype))


@flax.struct.dataclass
class Bucket:
  """The frames at `indices` `[S]` int32 (N: an empty slot) to the backbone."""
  indices: jax.Array

  def dispatch(self, frames: jax.Array) -> jax.Array:
    return jnp.take(frames, self.indices, axis=0, mode='clip')

  def combine(self, logits: jax.Array, into: jax.Array, column: int) -> jax.Array:
    return into.at[self.indices, column].set(logits.astype(into.dtype), mode='drop')
