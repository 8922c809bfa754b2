"""Conditional exit on the device: what the methods' exit programs share.

Shape letters: B videos, N rows (videos or frames), K exit points, C classes.

A video's frames are read in groups of `group` steps (the method's processing order); after
group j its running prediction's confidence is compared with the threshold `thresholds[j]`,
and a video whose confidence reaches it stops: later groups compute nothing for it. The exit
programs (`exit_arnet`, `exit_adafocus_v2`) run the groups in a `lax.while_loop` that ends when
every video has stopped, and give each CNN only the rows of the videos still running
(`on_rows`: buckets of the running rows, as the sparse router gives each backbone its frames).
The few recurrent-cell and head multiply-adds per step run on every row and are discarded for
stopped videos; the CNNs, nearly all the cost, run on running rows only.

The rule and its thresholds (fit on the training split) are `arnet_jax.early_exit`.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from arnet_jax.models import buckets, dispatch

CONFIDENCES = ('max_logit', 'max_prob')


def confidence(logits: jax.Array, kind: str = 'max_logit', ready: jax.Array | None = None
               ) -> jax.Array:
  """`[..., C]` running logits -> `[...]` confidence: the largest logit (the authors') or the
  largest softmax probability; -inf where `ready` (`[...]` bool) is False (no prediction yet:
  such a video cannot exit before its last step)."""
  if kind == 'max_logit':
    value = jnp.max(logits, axis=-1)
  elif kind == 'max_prob':
    value = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)
  else:
    raise ValueError(f'confidence must be one of {CONFIDENCES}, got {kind!r}')
  value = value.astype(jnp.float32)
  if ready is not None:
    value = jnp.where(ready, value, -jnp.inf)
  return value


def num_exit_points(num_steps: int, group: int) -> int:
  """K = ceil(T / group): a check after every group of steps (the last may be shorter)."""
  if group < 1:
    raise ValueError(f'exit group must be >= 1 steps, got {group}')
  return -(-num_steps // group)


def on_rows(fn: Callable, rows: jax.Array, inputs, out, plan: str = 'binary'
            ) -> tuple[Any, jax.Array]:
  """`out` (`[N, ...]` arrays) with `fn(inputs)` written at the rows where `rows` `[N]` is True.

  `inputs` and `out` are pytrees of `[N, ...]` arrays; `fn` maps the inputs' selected rows
  `[S, ...]` to `out`'s structure with S rows, and runs on the selected rows only, in buckets of
  static sizes: 'binary' (a bucket per binary digit of the count, no padding: a CPU's cost grows
  with rows) or 'grid' (one bucket from 8 sizes ending at N: a GPU's or TPU's call has a fixed
  cost). Returns (out, the rows computed: the count, or the grid bucket's size).
  """
  def classify(bucket: dispatch.Bucket, into):
    y = fn(jax.tree.map(bucket.dispatch, inputs))
    return jax.tree.map(lambda o, v: o.at[bucket.indices].set(v.astype(o.dtype), mode='drop'),
                        into, y)
  if plan == 'binary':
    return buckets.classify_in_binary_digits(classify, rows, out)
  if plan == 'grid':
    return buckets.classify_on_grid(classify, rows, out,
                                    buckets.grid_capacities(rows.shape[0], 8))
  raise ValueError(f'plan must be one of {buckets.DEVICE_PLANS}, got {plan!r}')


def check_settings(group: int, confidence: str, plan: str) -> None:
  """An exit program's settings: a ValueError naming the bad one."""
  num_exit_points(1, group)
  if confidence not in CONFIDENCES:
    raise ValueError(f'confidence must be one of {CONFIDENCES}, got {confidence!r}')
  if plan not in buckets.DEVICE_PLANS:
    raise ValueError(f'plan must be one of {buckets.DEVICE_PLANS}, got {plan!r}')


def as_thresholds(thresholds, num_steps: int, group: int) -> jax.Array:
  """`[K]` float32 thresholds for T = `num_steps` in groups of `group`; a ValueError otherwise."""
  k = num_exit_points(num_steps, group)
  thresholds = jnp.asarray(thresholds, jnp.float32)
  if thresholds.shape != (k,):
    raise ValueError(f'thresholds must be [K] = [{k}]: {num_steps} frames in groups of {group} '
                     f'have {k} exit points; got shape {thresholds.shape}.')
  return thresholds


def no_exit_thresholds(num_points: int) -> jax.Array:
  """`[K]` thresholds no video reaches before the last exit point: +inf, then -inf."""
  return jnp.full((num_points,), jnp.inf, jnp.float32).at[-1].set(-jnp.inf)


def group_bounds(j: jax.Array, group: int, num_steps: int) -> jax.Array:
  """The number of steps done after group j (0-based): min((j + 1) group, T)."""
  return jnp.minimum((j + 1) * group, num_steps).astype(jnp.int32)
