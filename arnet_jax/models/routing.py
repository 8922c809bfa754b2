"""Sparse inference: decide every frame's action first, then run each backbone only on its frames.

Shape letters: B videos, T frames, N = B * T frames of a batch, H x W the top-resolution input,
A actions, R resolution actions (the K backbones, then the policy's own head when it is an action),
K backbones, C classes, D devices.

The decisions depend only on the policy network, so inference runs the model's own forward
(`ARNet.decide` -> `ARNet.classify` per backbone -> `ARNet.combine`) with a `dispatch.Bucket`
dispatcher per bucket instead of training's dense one. Skipped frames and the policy-head action
cost no backbone work. Two routers, the same results up to float error (`eval.dispatch`):

- `DeviceRouter` ('device'): ONE jitted program per batch shape. Decisions, each backbone's frames
  in order (`jnp.nonzero(size=N)`), its bucket plan (`buckets`: 'grid', one call of a capacity
  `lax.switch` picks from a few sizes ending at N; 'binary', a `lax.cond` per binary digit of the
  count), gather -> resize -> classify -> scatter, and combine all run on the device: one
  dispatch per batch, no host round trip. On a batch sharded over several devices each device
  routes its own videos (`jax.shard_map` over the batch axis): no frame crosses devices.
- `SparseRouter` ('host'): `decide` in one jit, the routed mask copied to the host, each
  backbone's count split by a host plan (`buckets.bucket_plan`) into buckets of static
  capacities, one compiled call per bucket, then `combine`. 2 + buckets dispatches and one
  device-to-host copy per batch.

Padded bucket slots read a real frame (so no NaN can appear) and their logits are dropped by the
scatter. `RouterStats` counts programs, compilations, dispatches, host synchronisations and the
padding.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import einops
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from arnet_jax import parallel
from arnet_jax.models import buckets, dispatch
from arnet_jax.models.arnet import ARNet, routed_frames

CAPACITY_POLICIES = ('pow2', 'binary', 'exact')
ROUTINGS = ('sparse', 'masked')
DISPATCHES = ('device', 'host')


@dataclasses.dataclass
class RouterStats:
  """What the router has done since the last `reset`.

  programs: the distinct compiled programs the calls used, one per (function, static shapes).
    A cold run compiles each exactly once, so `len(programs)` is the number of compilations such
    a run causes, however many batches it has.
  traces: the compilations actually made since the reset (the jitted functions live as long as
    the router: a second evaluation by the same router makes none).
  batches: calls so far; dispatches: jitted calls they made; syncs: device-to-host copies.
  routed[k]: frames classified by backbone k; padded[k]: empty bucket slots it computed anyway.
  capacities[k]: the bucket capacities backbone k has used.
  shards: how many devices routed their own part of the last batch (1: no split).
  The device router's counts stay on the device until read (`record_on_device`).
  """
  backbones: tuple[str, ...]
  programs: set[tuple] = dataclasses.field(init=False)
  traces: int = dataclasses.field(init=False)
  batches: int = dataclasses.field(init=False)
  dispatches: int = dataclasses.field(init=False)
  syncs: int = dataclasses.field(init=False)
  shards: int = dataclasses.field(init=False)
  _routed: list[int] = dataclasses.field(init=False)
  _padded: list[int] = dataclasses.field(init=False)
  _capacities: list[set[int]] = dataclasses.field(init=False)
  _pending: list[tuple] = dataclasses.field(init=False)

  def __post_init__(self):
    self.reset()

  def reset(self):
    """Starts counting afresh (compiled functions stay cached: they will not compile again)."""
    k = len(self.backbones)
    self.programs = set()
    self.traces = self.batches = self.dispatches = self.syncs = 0
    self.shards = 1
    self._routed, self._padded = [0] * k, [0] * k
    self._capacities = [set() for _ in range(k)]
    self._pending = []

  def record(self, k: int, count: int, plan: Sequence[int]) -> None:
    """Backbone k classified `count` frames in buckets of capacities `plan`."""
    self._routed[k] += count
    self._padded[k] += sum(plan) - count
    self._capacities[k].update(plan)

  def record_on_device(self, counts: jax.Array, slots: jax.Array, plan: str) -> None:
    """A device router's per-shard `[D, K]` routed counts and bucket slots, read when needed."""
    self.shards = counts.shape[0]
    self._pending.append((counts, slots, plan))

  def _flush(self) -> None:
    pending, self._pending = self._pending, []
    for counts, slots, plan in pending:  # every process reads them (a collective on several)
      counts, slots = parallel.to_host((counts, slots))
      for shard_counts, shard_slots in zip(counts, slots):
        for k, (count, size) in enumerate(zip(shard_counts.tolist(), shard_slots.tolist())):
          digits = [1 << d for d in range(count.bit_length()) if count >> d & 1]
          self.record(k, count, digits if plan == 'binary' else [size] if size else [])

  @property
  def routed(self) -> list[int]:
    self._flush()
    return self._routed

  @property
  def padded(self) -> list[int]:
    self._flush()
    return self._padded

  @property
  def capacities(self) -> list[set[int]]:
    self._flush()
    return self._capacities

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
    per_batch = max(self.batches, 1)
    return dict(compilations=self.compilations, traces=self.traces, batches=self.batches,
                dispatches_per_batch=self.dispatches / per_batch,
                syncs_per_batch=self.syncs / per_batch, padding_waste=self.padding_waste,
                per_backbone={name: dict(routed=r, padded=p, capacities=sorted(c))
                              for name, r, p, c in zip(self.backbones, self.routed, self.padded,
                                                       self.capacities)})


class _Router:
  """What both routers share: checks, the decisions, the combination, the counters."""
  dispatch_mode: str

  def __init__(self, model: ARNet, *, dense: bool = False, policy_chunk: int | None = None):
    if not isinstance(model, ARNet):
      raise TypeError(f'{type(self).__name__} routes ARNet models, got '
                      f'{type(model).__name__}; call `model.apply(variables, video)` for it, or '
                      'use `inference_fn(model)`, which does so for models without routing.')
    if policy_chunk is not None and policy_chunk < 1:
      raise ValueError(f'policy_chunk must be >= 1 (or None: all frames at once), got '
                       f'{policy_chunk}')
    self.model, self.dense, self.policy_chunk = model, dense, policy_chunk
    self.num_backbones = len(model.action_space.backbones)
    self.stats = RouterStats(tuple(model.action_space.names[:self.num_backbones]))

  @property
  def runs_every_action(self) -> bool:
    """Whether every frame goes through every resolution action (so all their logits exist)."""
    return self.dense or self.model.runs_every_action

  def decide(self, variables: dict, video: jax.Array, *, forced: jax.Array | None = None,
             rng: jax.Array | None = None) -> dict:
    """Only the decisions: actions `[B, T, A]`, decided `[B, T]`, action_logits `[B, T, A]`."""
    self._check(video, forced, rng)
    return self._decide_jit(module_variables(variables, 'policy'), video, forced, rng)[0]

  @functools.cached_property
  def _decide_jit(self):
    return jax.jit(self._counted(self._decide_fn))

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
    def traced(*args, **kwargs):
      self.stats.traces += 1
      return fn(*args, **kwargs)
    return traced

  def _decide_fn(self, variables, video, forced, rng):
    """-> (decisions without lite_logits, initial resolution logits `[N, R, C]`, routed
    `[K, N]`)."""
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
    if self.dense:
      routed = jnp.ones_like(routed)
    return decisions, logits, routed

  def _policy_features(self, variables, video):
    """`[B, T, F]` policy CNN features, `policy_chunk` frames per call (a `lax.map`)."""
    model, c = self.model, self.policy_chunk
    b, t = video.shape[:2]
    frames = model.apply(variables, video, method=ARNet.policy_frames)
    frames = buckets.fixed_chunks(frames.reshape(b * t, *frames.shape[2:]), c)
    features = jax.lax.map(lambda x: model.apply(variables, x, method=ARNet.embed_policy),
                           frames)
    return features.reshape(-1, features.shape[-1])[:b * t].reshape(b, t, -1)

  def _classify_fn(self, k, variables, video, resolution_logits, dispatcher):
    return self.model.apply(module_variables(variables, f'backbone_{k}'), k, video,
                            resolution_logits, dispatcher, method=ARNet.classify)

  def _combine_fn(self, resolution_logits, decisions, valid):
    out = self.model.apply({}, resolution_logits, decisions, valid, method=ARNet.combine)
    if not self.runs_every_action:  # the columns of actions not taken were not computed
      del out['resolution_logits']
    return out


class DeviceRouter(_Router):
  """AR-Net inference as one device program per batch shape (see the module docstring).

  `router(variables, video)` returns what `ARNet.__call__` returns at evaluation (masked compute)
  up to float error, for every policy mode: 'learned' (AR-Net), 'random' (needs `rng`), 'all'
  (Multi-Scale: every frame to every backbone) and 'none' (Uniform).

  Args:
    model: the `ARNet` whose parameters are used, unchanged.
    plan: 'grid' (one bucket per backbone, the smallest of `grid_steps` evenly spaced capacities
      that holds its frames: at most N / grid_steps padded slots) or 'binary' (a bucket per
      binary digit of the count: no padding, up to log2(N) calls).
    grid_steps: capacities of the grid, N * i / grid_steps for i = 1..grid_steps.
    dense: route every frame to every backbone and let the decisions select, as masked compute
      does: masked compute run by the same engine (a fair baseline for benchmarks).
    policy_chunk: frames per policy CNN call (default: all B * T at once). On a CPU, chunks whose
      activations fit the cache run faster; the LSTM scan is unchanged.
  """
  dispatch_mode = 'device'

  def __init__(self, model: ARNet, *, plan: str = 'binary', grid_steps: int = 8,
               dense: bool = False, policy_chunk: int | None = None):
    super().__init__(model, dense=dense, policy_chunk=policy_chunk)
    if plan not in buckets.DEVICE_PLANS:
      raise ValueError(f'plan must be one of {buckets.DEVICE_PLANS}, got {plan!r}')
    if grid_steps < 1:
      raise ValueError(f'grid_steps must be >= 1, got {grid_steps}')
    self.plan, self.grid_steps = plan, grid_steps
    self._program = jax.jit(self._counted(self._program_fn), static_argnames=('shards',))

  @property
  def capacities(self) -> str:
    return self.plan if self.plan == 'binary' else f'grid/{self.grid_steps}'

  def __call__(self, variables: dict, video: jax.Array, *, forced: jax.Array | None = None,
               rng: jax.Array | None = None, valid: jax.Array | None = None) -> dict:
    """Sparse evaluation forward pass; arguments and result as `SparseRouter.__call__`."""
    self._check(video, forced, rng)
    shards = batch_shards(video)
    stats = self.stats
    stats.batches += 1
    stats.dispatches += 1
    stats.programs.add(('device', tuple(video.shape), str(video.dtype), forced is None,
                        rng is None, valid is None, shards))
    out, counts, slots = self._program(variables, video, forced, rng, valid, shards=shards)
    stats.record_on_device(counts, slots, self.plan)
    return out

  def _program_fn(self, variables, video, forced, rng, valid, *, shards):
    decisions, logits, routed = self._decide_fn(module_variables(variables, 'policy'), video,
                                                forced, rng)
    del routed  # recomputed from the actions per shard
    b = video.shape[0]
    selected = jnp.ones_like(decisions['actions']) if self.dense else decisions['actions']
    if valid is not None:  # padding videos go to no backbone
      selected = selected * valid[:, None, None].astype(selected.dtype)
    logits = einops.rearrange(logits, '(b t) r c -> b t r c', b=b)
    route = self._route_shard
    if shards is not None:  # each device routes its own videos
      mesh, axis = shards
      route = jax.shard_map(route, mesh=mesh, in_specs=(P(), P(axis), P(axis), P(axis)),
                            out_specs=(P(axis), P(axis), P(axis)), check_vma=False)
    logits, counts, slots = route(variables, video, selected, logits)
    logits = einops.rearrange(logits, 'b t r c -> (b t) r c')
    return self._combine_fn(logits, decisions, valid), counts, slots

  def _route_shard(self, variables, video, selected, logits):
    """One shard's videos: `[b, T, H, W, 3]`, actions `[b, T, A]`, logits `[b, T, R, C]` ->
    logits with every backbone's column set, routed counts `[1, K]`, bucket slots `[1, K]`."""
    b = video.shape[0]
    routed = routed_frames(selected, self.num_backbones)
    logits = einops.rearrange(logits, 'b t r c -> (b t) r c')
    n = routed.shape[1]
    counts, slots = [], []
    for k in range(self.num_backbones):
      classify = lambda bucket, x, k=k: self._classify_fn(k, variables, video, x, bucket)
      if self.plan == 'grid':
        logits, size = buckets.classify_on_grid(
            classify, routed[k], logits, buckets.grid_capacities(n, self.grid_steps))
      else:
        logits, size = buckets.classify_in_binary_digits(classify, routed[k], logits)
      counts.append(routed[k].sum(dtype=jnp.int32))
      slots.append(size)
    logits = einops.rearrange(logits, '(b t) r c -> b t r c', b=b)
    return logits, jnp.stack(counts)[None], jnp.stack(slots)[None]


class SparseRouter(_Router):
  """AR-Net inference with host-planned buckets (see the module docstring).

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
    dense, policy_chunk: as for `DeviceRouter`.
  With 'binary' or 'pow2' buckets an evaluation compiles at most
  2 + K * (1 + ceil(log2(largest bucket))) programs, however long it runs.
  """
  dispatch_mode = 'host'

  def __init__(self, model: ARNet, *, capacities: str | Sequence[int] = 'binary',
               chunk_size: int | None = None, dense: bool = False,
               policy_chunk: int | None = None):
    super().__init__(model, dense=dense, policy_chunk=policy_chunk)
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
    self.capacities, self.chunk_size = capacities, chunk_size
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
    decisions, resolution_logits, routed = self._decide_jit(
        module_variables(variables, 'policy'), video, forced, rng)
    routed = parallel.to_host(routed)  # bucket sizes are static: the counts go to the host
    stats.syncs += 1
    if valid is not None:
      routed = routed & np.repeat(parallel.to_host(valid).astype(bool), video.shape[1])[None]
      stats.syncs += 1
    max_capacity = self.chunk_size or routed.shape[1]
    sizes = (None if self.capacities == 'exact' else
             self.capacities if isinstance(self.capacities, tuple) else
             buckets.pow2_capacities(max_capacity))
    for k, frames in enumerate(routed):
      count = int(frames.sum())
      plan = buckets.bucket_plan(count, sizes, max_capacity, split=self.capacities == 'binary')
      stats.record(k, count, plan)
      stats.programs.update(('bucket', k, size, shape) for size in plan)
      sub = module_variables(variables, f'backbone_{k}')
      for indices in buckets.bucket_indices(frames, plan):
        resolution_logits = self._buckets[k](sub, video, indices, resolution_logits)
      stats.dispatches += len(plan)
    stats.programs.add(('combine', shape, valid is None))
    stats.dispatches += 2
    return self._combine(resolution_logits, decisions, valid)

  def _bucket_fn(self, k, variables, video, indices, resolution_logits):
    return self._classify_fn(k, variables, video, resolution_logits,
                             dispatch.Bucket(indices))


def batch_shards(video: jax.Array) -> tuple | None:
  """(mesh, batch axis) when `video` is split over several devices along its batch axis."""
  sharding = getattr(video, 'sharding', None)
  if not isinstance(sharding, NamedSharding) or sharding.mesh.size == 1 or not sharding.spec:
    return None
  axis = sharding.spec[0]
  if axis is None or any(s is not None for s in sharding.spec[1:]):
    return None
  return sharding.mesh, axis


def resolve_dispatch(dispatch: str) -> str:
  """'auto' -> 'device' on every backend (measured: docs/benchmarks.md); others unchanged."""
  if dispatch not in ('auto', *DISPATCHES):
    raise ValueError(f"dispatch must be one of {('auto', *DISPATCHES)}, got {dispatch!r}")
  return 'device' if dispatch == 'auto' else dispatch


def resolve_plan(plan: str) -> str:
  """'auto' -> 'binary' on a CPU (cost grows with frames: no padding), 'grid' on GPU and TPU
  (a call's fixed cost dominates: one call per backbone)."""
  if plan not in ('auto', *buckets.DEVICE_PLANS):
    raise ValueError(f"plan must be one of {('auto', *buckets.DEVICE_PLANS)}, got {plan!r}")
  if plan == 'auto':
    return 'binary' if jax.default_backend() == 'cpu' else 'grid'
  return plan


def module_variables(variables: dict, name: str) -> dict:
  """The variables of child `name` alone: a call need not flatten the other networks' leaves."""
  return {col: {name: tree[name]} for col, tree in variables.items() if name in tree}


def inference_fn(model, *, routing: str = 'sparse', dispatch: str = 'device',
                 **router_kwargs) -> Callable[..., dict]:
  """One evaluation forward for every variant: `fn(variables, video, *, rng=None, valid=None)`.

  An ARNet with routing='sparse' gets a `DeviceRouter` (dispatch='device') or a `SparseRouter`
  (dispatch='host'); their `.stats` say what they cost. routing='masked', or a model without
  routing (the LSTM baseline), gets the jitted `model.apply`: every backbone on every frame;
  `rng` feeds the Random baseline, `valid` is ignored (every video is computed).
  """
  if routing not in ROUTINGS:
    raise ValueError(f'routing must be one of {ROUTINGS}, got {routing!r}')
  if dispatch not in DISPATCHES:
    raise ValueError(f'dispatch must be one of {DISPATCHES}, got {dispatch!r}')
  if routing == 'sparse' and isinstance(model, ARNet):
    return (DeviceRouter if dispatch == 'device' else SparseRouter)(model, **router_kwargs)
  apply = jax.jit(lambda variables, video, rng: model.apply(
      variables, video, rngs=None if rng is None else {'gumbel': rng}))

  def masked(variables: dict, video: jax.Array, *, rng: jax.Array | None = None,
             valid: jax.Array | None = None) -> dict:
    del valid
    return apply(variables, video, rng)
  return masked
