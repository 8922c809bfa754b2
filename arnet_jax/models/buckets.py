"""Bucket plans: how one backbone's routed frames are split into calls of static size.

Shape letters: N = B * T frames of a batch, S the static capacity of one bucket.

A bucket is a call of the backbone on S frames (`dispatch.Bucket(indices [S])`); slots beyond the
routed frames hold N, which the dispatcher reads as a real frame and drops. No plan ever drops a
frame. Two families:

- Host plans (`SparseRouter`, `eval.dispatch='host'`): the router copies each backbone's frame
  count to the host and calls one compiled function per bucket. `bucket_plan` gives full buckets
  of the largest capacity, then the rest split into its binary digits (13 -> 8 + 4 + 1) or
  rounded up to one capacity; `bucket_indices` gives the index arrays.
- Device plans (`DeviceRouter`, `eval.dispatch='device'`): the count stays on the device, the
  frames are ordered with `jnp.nonzero(size=N)` and every bucket is a branch of one program.
  'grid' (`grid_capacities`, `classify_on_grid`): one call whose capacity `lax.switch` picks from
  a few sizes that end at N; padding is bounded by the grid step. A GPU or TPU call has a large
  fixed cost, so one call with some padding beats several exact ones. 'binary'
  (`classify_in_binary_digits`): a `lax.cond` per binary digit of the count, no padding; a CPU's
  cost grows with frames, so exact buckets are what it wants.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from arnet_jax.models import dispatch

DEVICE_PLANS = ('grid', 'binary')

# (dispatcher, resolution logits [N, R, C]) -> resolution logits with the backbone's column set.
ClassifyFn = Callable[[dispatch.Bucket, jax.Array], jax.Array]


def fixed_chunks(x: jax.Array, size: int) -> jax.Array:
  """`[N, ...]` -> `[ceil(N / size), size, ...]`, the last chunk padded with copies of the last
  row (real inputs: no NaN); a caller's outputs `y[:N]` after `y.reshape(-1, ...)` drop them.
  For CNN calls of one static size (the policy's `policy_chunk`, AdaFocusV2's per_call)."""
  n = x.shape[0]
  x = jnp.concatenate([x, jnp.repeat(x[-1:], -n % size, axis=0)])
  return x.reshape(-1, size, *x.shape[1:])


# --- Host plans. ---------------------------------------------------------------------------------

def pow2_capacities(max_capacity: int) -> tuple[int, ...]:
  """(1, 2, 4, ..., max_capacity): powers of two below `max_capacity`, then `max_capacity`."""
  if max_capacity < 1:
    raise ValueError(f'max_capacity must be >= 1, got {max_capacity}')
  sizes = [1 << i for i in range(max_capacity.bit_length()) if (1 << i) < max_capacity]
  return (*sizes, max_capacity)


def bucket_plan(count: int, capacities: Sequence[int] | None, max_capacity: int, *,
                split: bool = False) -> tuple[int, ...]:
  """Bucket capacities that together hold `count` frames; never fewer slots than frames.

  Full buckets of the largest capacity take what exceeds it (overflow buckets), then the smallest
  capacity that holds the rest; with `split`, the rest is first covered by the largest capacities
  that it fills completely (with powers of two: its binary digits, no padding at all).
  `capacities=None` means exact sizes: buckets of `max_capacity`, then one of exactly the rest
  (no padding, but a compilation for every new count).
  E.g. capacities (1, 2, 4, 8): 0 -> (), 3 -> (4,), 8 -> (8,), 19 -> (8, 8, 4);
  with split: 3 -> (2, 1), 19 -> (8, 8, 2, 1).
  """
  if count < 0:
    raise ValueError(f'count must be >= 0, got {count}')
  top = max_capacity if capacities is None else max(capacities)
  full, rest = divmod(count, top)
  plan = [top] * full
  if split and capacities is not None:
    for s in sorted(capacities, reverse=True):
      while s <= rest:
        plan.append(s)
        rest -= s
  if rest:
    plan.append(rest if capacities is None else min(s for s in capacities if s >= rest))
  return tuple(plan)


def bucket_indices(routed: np.ndarray, plan: Sequence[int]) -> list[np.ndarray]:
  """`[N]` bool of one backbone -> one `[S]` int32 array of frame indices per bucket of `plan`.

  Slots beyond the routed frames hold N, an out-of-range index: `dispatch.Bucket` reads a real
  frame there and drops what comes back.
  """
  n = routed.shape[0]
  frames = np.flatnonzero(routed).astype(np.int32)
  if len(frames) > sum(plan):
    raise ValueError(f'{len(frames)} frames do not fit buckets {tuple(plan)}')
  padded = np.concatenate([frames, np.full(sum(plan) - len(frames), n, np.int32)])
  return np.split(padded, np.cumsum(plan)[:-1]) if plan else []


# --- Device plans. -------------------------------------------------------------------------------

def grid_capacities(n: int, steps: int) -> tuple[int, ...]:
  """`steps` evenly spaced capacities ceil(n * i / steps), i = 1..steps, deduplicated; ends at n.

  E.g. n = 128, steps = 8: (16, 32, ..., 128); a count of 17 runs in a bucket of 32.
  """
  if n < 1 or steps < 1:
    raise ValueError(f'need n >= 1 frames and steps >= 1, got n={n}, steps={steps}')
  return tuple(sorted({-(-n * i // steps) for i in range(1, steps + 1)}))


def routed_order(routed: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`[N]` bool -> (`[N]` int32 routed frame indices in order, then N; the count, a scalar)."""
  n = routed.shape[0]
  order = jnp.nonzero(routed, size=n, fill_value=n)[0].astype(jnp.int32)
  return order, routed.sum(dtype=jnp.int32)


def classify_on_grid(classify: ClassifyFn, routed: jax.Array, logits: jax.Array,
                     capacities: Sequence[int]) -> tuple[jax.Array, jax.Array]:
  """One bucket, of the smallest capacity that holds the routed frames, or none for no frame.

  `capacities` must end at N = routed.shape[0] (so every count fits). Returns the logits and the
  bucket's capacity (0 when nothing was routed).
  """
  n = routed.shape[0]
  if max(capacities) != n:
    raise ValueError(f'the grid {tuple(capacities)} must end at N={n} so no frame is dropped')
  order, count = routed_order(routed)
  sizes = jnp.asarray((0, *capacities), jnp.int32)
  branch = jnp.searchsorted(sizes, count, side='left')  # the smallest size >= count

  def bucket(size):
    return lambda x: classify(dispatch.Bucket(order[:size]), x)
  branches = [lambda x: x] + [bucket(s) for s in capacities]
  return jax.lax.switch(branch, branches, logits), sizes[branch]


def classify_in_binary_digits(classify: ClassifyFn, routed: jax.Array,
                              logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Buckets of the binary digits of the count, largest first (13 -> 8 + 4 + 1): no padding.

  Each digit is a `lax.cond`, so a digit that is 0 costs nothing. Returns the logits and the
  number of slots computed (the count).
  """
  n = routed.shape[0]
  order, count = routed_order(routed)
  offset = jnp.int32(0)
  for digit in reversed(range(n.bit_length())):
    size = 1 << digit

    def bucket(x, offset=offset, size=size):
      return classify(dispatch.Bucket(jax.lax.dynamic_slice(order, (offset,), (size,))), x)
    taken = (count >> digit) & 1
    logits = jax.lax.cond(taken > 0, bucket, lambda x: x, logits)
    offset = offset + taken * size
  return logits, count
