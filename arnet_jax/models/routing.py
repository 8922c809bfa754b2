"""Sparse inference: decide every frame's action first, then run each backbone only on its frames.

Shape letters: B videos, T frames, N = B * T frames of a batch, H x W the top-resolution input,
A actions, R resolution actions (the K backbones, then the policy's own head when it is an action),
K backbones, C classes, S the static capacity of one bucket.

The decisions depend only on the policy network, so inference runs the model's own forward
(`ARNet.decide` -> `ARNet.classify` per backbone -> `ARNet.combine`) in three steps, with a
`dispatch.Bucket` dispatcher per bucket instead of training's dense one:
1. `decide` (one jit): policy CNN on every frame, the LSTM scan, argmax (or the Random baseline's
   sample, or forced actions); the policy's lite head on every frame (H x C multiply-adds, ~1/500 of
   the policy CNN); which frames each backbone must classify, `[K, N]`.
2. On the host, each backbone's frame count is split into buckets whose capacities come from a
   small static set, powers of two up to N or `chunk_size` (`bucket_plan`): full buckets of the
   largest capacity, then the rest either split into its binary digits (13 -> 8 + 4 + 1, no
   padding; the default) or rounded up to one power of two; no frame is ever dropped. Each bucket
   is one jitted call (compiled once per backbone and capacity): gather its frames, resize them to
   the backbone's resolution, classify, scatter the logits into `[N, R, C]`. Skipped frames and
   the policy-head action cost no backbone work.
3. `combine` (one jit): the same averaging as masked compute.

Padded bucket slots read a real frame (so no NaN can appear) and their logits are dropped by the
scatter. Compiled calls are cached by shape, so an evaluation compiles `decide` and `combine` once
per batch shape and a bucket function once per (backbone, capacity) it meets: with 'binary' or
'pow2' buckets at most 2 + K * (1 + ceil(log2(largest bucket))) programs, however long it runs.
`RouterStats` counts them and the padding.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from arnet_jax import parallel
from arnet_jax.models import dispatch
from arnet_jax.models.arnet import ARNet

CAPACITY_POLICIES = ('pow2', 'binary', 'exact')
ROUTINGS = ('sparse', 'masked')


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


@dataclasses.dataclass
class RouterStats:
  """What the router has done since the last `reset`.

  programs: the distinct compiled programs the calls used, one per (function, static shapes):
    `decide` and `combine` per batch shape, a bucket function per (backbone, capacity). A cold
    run compiles each exactly once, so `len(programs)` is the number of compilations such a run
    causes, however many batches it has.
  traces: the compilations actually made since the reset (the jitted functions live as long as
    the router: a second evaluation by the same router makes none).
  batches: calls so far.
  routed[k]: frames classified by backbone k; padded[k]: empty bucket slots it computed anyway.
  capacities[k]: the bucket capacities backbone k has used.
  """
  backbones: tuple[str, ...]
  programs: set[tuple] = dataclasses.field(init=False)
  traces: int = dataclasses.field(init=False)
  batches: int = dataclasses.field(init=False)
  routed: list[int] = dataclasses.field(init=False)
  padded: list[int] = dataclasses.field(init=False)
  capacities: list[set[int]] = dataclasses.field(init=False)

  def __post_init__(self):
    self.reset()

  def reset(self):
    """Starts counting afresh (compiled functions stay cached: they will not compile again)."""
    k = len(self.backbones)
    self.programs = set()
    self.traces = self.batches = 0
    self.routed, self.padded = [0] * k, [0] * k
    self.capacities = [set() for _ in range(k)]

  @property
  def compilations(self) -> int:
    """Compilations a cold run of the calls since the reset causes (`len(programs)`)."""
    return len(self.programs)

  @property
  def padding_waste(self) -> float:
    """Padded slots / all bucket slots (0 when nothing was routed)."""
    slots = sum(self.routed) + sum(self.padded)
    return sum(self.padded) / slots if slots else 0.0

  def as_dict(self) -> dict:
    """The counts as JSON-ready data; `compilations` is `len(programs)`."""
    return dict(compilations=self.compilations, traces=self.traces, batches=self.batches,
                padding_waste=self.padding_waste,
                per_backbone={name: dict(routed=r, padded=p, capacities=sorted(c))
                              for name, r, p, c in zip(self.backbones, self.routed, self.padded,
                                                       self.capacities)})


class SparseRouter:
  """AR-Net inference that runs each backbone only on the frames routed to it.

  `router(variables, video)` returns what `ARNet.__call__` returns at evaluation (masked compute)
  up to float error, for every policy mode: 'learned' (AR-Net), 'random' (needs `rng`), 'all'
  (Multi-Scale: every frame to every backbone) and 'none' (Uniform).

  Args:
    model: the `ARNet` whose parameters are used, unchanged.
    capacities: 'pow2' (one bucket per backbone, its count rounded up to a power of two: under
      half a bucket of padding), 'binary' (the same sizes, but the count is split into its binary
      digits, 13 -> 8 + 4 + 1: no padding, more and smaller calls), 'exact' (buckets of exactly
      the routed count: no padding, but a compilation for every new count; for measurements),
      or an explicit tuple of capacities (the largest is the overflow bucket size).
    chunk_size: the largest bucket for 'binary', 'pow2' and 'exact' (default: N = B * T).
      Smaller buckets bound the padding and the compilations; more frames overflow into further
      full buckets.
    dense: route every frame to every backbone and let the decisions select, as masked compute
      does: masked compute run by the same engine (a fair baseline for benchmarks).
    policy_chunk: frames per policy CNN call inside `decide` (default: all B * T at once). On a
      CPU, chunks whose activations fit the cache run faster; the LSTM scan is unchanged.
  """

  def __init__(self, model: ARNet, *, capacities: str | Sequence[int] = 'binary',
               chunk_size: int | None = None, dense: bool = False,
               policy_chunk: int | None = None):
    if not isinstance(model, ARNet):
      raise TypeError(f'SparseRouter routes ARNet models, got {type(model).__name__}; call '
                      '`model.apply(variables, video)` for it, or use `inference_fn(model)`, '
                      'which does so for models without routing.')
    if isinstance(capacities, str):
      if capacities not in CAPACITY_POLICIES:
        raise ValueError(f'capacities must be one of {CAPACITY_POLICIES} or a tuple of sizes, '
                         f'got {capacities!r}')
    else:
      capacities = tuple(int(s) for s in capacities)
      if not capacities or min(capacities) < 1:
        raise ValueError(f'explicit capacities must be positive sizes, got {capacities}')
      if chunk_size is not None:
        raise ValueError('Give either explicit capacities (the largest is the overflow bucket) '
                         'or chunk_size, not both.')
    if chunk_size is not None and chunk_size < 1:
      raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
    if policy_chunk is not None and policy_chunk < 1:
      raise ValueError(f'policy_chunk must be >= 1 (or None: all frames at once), got '
                       f'{policy_chunk}')
    self.model, self.capacities, self.chunk_size, self.dense = (model, capacities, chunk_size,
                                                                 dense)
    self.policy_chunk = policy_chunk
    space = model.action_space
    self.num_backbones = len(space.backbones)
    self.stats = RouterStats(tuple(space.names[:self.num_backbones]))
    self._decide = jax.jit(self._counted(self._decide_fn))
    self._combine = jax.jit(self._counted(self._combine_fn))
    self._buckets = [jax.jit(self._counted(functools.partial(self._bucket_fn, k)))
                     for k in range(self.num_backbones)]

  def __call__(self, variables: dict, video: jax.Array, *, forced: jax.Array | None = None,
               rng: jax.Array | None = None, valid: jax.Array | None = None) -> dict:
    """Sparse evaluation forward pass.

    Args:
      variables: the ARNet's variables (params, batch_stats), as for `model.apply`.
      video: `[B, T, H, W, 3]` at the top resolution.
      forced: optional `[B, T]` int actions used instead of the policy's at decision steps.
      rng: key for the Random baseline's actions (its 'gumbel' stream).
      valid: optional `[B]` bool; videos with False (evaluation padding) are not classified:
        their frames go to no backbone and their logits are zero.

    Returns a dict as `ARNet.__call__`: logits `[B, C]`, frame_logits `[B, T, C]`, actions
    `[B, T, A]`, decided `[B, T]`, processed `[B, T]`, action_logits `[B, T, A]`; and
    resolution_logits `[B, T, R, C]` only where every frame runs every resolution action
    (`runs_every_action`: Uniform, Multi-Scale, `dense`), since elsewhere it was not computed.
    """
    self._check(video, forced, rng)
    stats = self.stats
    stats.batches += 1
    shape = (tuple(video.shape), str(video.dtype))
    stats.programs.add(('decide', shape, forced is None, rng is None))
    decisions, resolution_logits, routed = self._decide(module_variables(variables, 'policy'),
                                                        video, forced, rng)
    routed = parallel.to_host(routed)  # the one host synchronisation: bucket sizes are static
    if self.dense:
      routed = np.ones_like(routed)
    if valid is not None:
      routed = routed & np.repeat(parallel.to_host(valid).astype(bool), video.shape[1])[None]
    max_capacity = self.chunk_size or routed.shape[1]
    sizes = (None if self.capacities == 'exact' else
             self.capacities if isinstance(self.capacities, tuple) else
             pow2_capacities(max_capacity))
    for k, frames in enumerate(routed):
      count = int(frames.sum())
      plan = bucket_plan(count, sizes, max_capacity, split=self.capacities == 'binary')
      stats.routed[k] += count
      stats.padded[k] += sum(plan) - count
      stats.capacities[k].update(plan)
      stats.programs.update(('bucket', k, size, shape) for size in plan)
      sub = module_variables(variables, f'backbone_{k}')
      for indices in bucket_indices(frames, plan):
        resolution_logits = self._buckets[k](sub, video, indices, resolution_logits)
    stats.programs.add(('combine', shape, valid is None))
    return self._combine(resolution_logits, decisions, valid)

  @property
  def runs_every_action(self) -> bool:
    """Whether every frame goes through every resolution action (so all their logits exist)."""
    return self.dense or self.model.runs_every_action

  def decide(self, variables: dict, video: jax.Array, *, forced: jax.Array | None = None,
             rng: jax.Array | None = None) -> dict:
    """Only the decisions (step 1): actions `[B, T, A]`, decided `[B, T]`, action_logits."""
    self._check(video, forced, rng)
    return self._decide(module_variables(variables, 'policy'), video, forced, rng)[0]

  def _check(self, video, forced, rng):
    model = self.model
    if getattr(video, 'ndim', None) != 5:
      raise ValueError(f'video must be [B, T, H, W, 3], got shape {getattr(video, "shape", None)}'
                       '; add the batch axis (video[None]) for a single clip.')
    if forced is not None and not model.uses_policy:
      raise ValueError(f"policy_mode={model.policy_mode!r} has no policy whose decisions could "
                       'be forced; drop `forced`.')
    if model.needs_rng and forced is None and rng is None:
      raise ValueError("The Random baseline draws its actions: pass rng=jax.random.key(seed).")

  def _counted(self, fn: Callable) -> Callable:
    """`fn` that counts its traces: under `jit` each trace is one compilation."""
    @functools.wraps(fn)
    def traced(*args):
      self.stats.traces += 1
      return fn(*args)
    return traced

  def _decide_fn(self, variables, video, forced, rng):
    model = self.model
    features = None
    if self.policy_chunk and model.uses_policy:
      features = self._policy_features(variables, video)

    def decide(m, video):
      decisions = m.decide(video, forced=forced, features=features)
      return decisions, m.initial_logits(decisions), m.routed(decisions)
    decisions, logits, routed = model.apply(variables, video, method=decide,
                                            rngs=None if rng is None else {'gumbel': rng})
    decisions.pop('lite_logits', None)  # already in `logits`
    return decisions, logits, routed

  def _policy_features(self, variables, video):
    """`[B, T, F]` policy CNN features, `policy_chunk` frames per call (a `lax.map`)."""
    model, c = self.model, self.policy_chunk
    b, t = video.shape[:2]
    frames = model.apply(variables, video, method=ARNet.policy_frames)
    frames = frames.reshape(b * t, *frames.shape[2:])
    n = -(-(b * t) // c) * c  # padded to whole chunks with copies of the last frame
    frames = jnp.concatenate([frames, jnp.repeat(frames[-1:], n - b * t, axis=0)])
    features = jax.lax.map(lambda x: model.apply(variables, x, method=ARNet.embed_policy),
                           frames.reshape(n // c, c, *frames.shape[1:]))
    return features.reshape(n, -1)[:b * t].reshape(b, t, -1)

  def _bucket_fn(self, k, variables, video, indices, resolution_logits):
    return self.model.apply(variables, k, video, resolution_logits, dispatch.Bucket(indices),
                            method=ARNet.classify)

  def _combine_fn(self, resolution_logits, decisions, valid):
    out = self.model.apply({}, resolution_logits, decisions, valid, method=ARNet.combine)
    if not self.runs_every_action:  # the columns of actions not taken were not computed
      del out['resolution_logits']
    return out


def module_variables(variables: dict, name: str) -> dict:
  """The variables of child `name` alone: a call need not flatten the other networks' leaves."""
  return {col: {name: tree[name]} for col, tree in variables.items() if name in tree}


def inference_fn(model, *, routing: str = 'sparse', **router_kwargs) -> Callable[..., dict]:
  """One evaluation forward for every variant: `fn(variables, video, *, rng=None, valid=None)`.

  An ARNet with routing='sparse' gets a `SparseRouter` (its `.stats` say what it cost).
  routing='masked', or a model without routing (the LSTM baseline), gets the jitted
  `model.apply`: every backbone on every frame; `rng` feeds the Random baseline, `valid` is
  ignored (every video is computed).
  """
  if routing not in ROUTINGS:
    raise ValueError(f'routing must be one of {ROUTINGS}, got {routing!r}')
  if routing == 'sparse' and isinstance(model, ARNet):
    return SparseRouter(model, **router_kwargs)
  apply = jax.jit(lambda variables, video, rng: model.apply(
      variables, video, rngs=None if rng is None else {'gumbel': rng}))

  def masked(variables: dict, video: jax.Array, *, rng: jax.Array | None = None,
             valid: jax.Array | None = None) -> dict:
    del valid
    return apply(variables, video, rng)
  return masked
