"""AR-Net's conditional exit on the device: a video stops once its running prediction is confident.

Shape letters: B videos, T frames, g frames per group, K = ceil(T / g) exit points, N = B * g
frames of a group, H x W the top-resolution input, F policy CNN features, A actions, R resolution
actions, C classes.

`exit_inference_fn(model, group=g, confidence=...)` is one jitted program per batch shape that
reads the frames in temporal order, g at a time, in a `lax.while_loop` that ends once every video
has stopped. Per group, for the videos still running only:
1. the policy CNN on the group's frames (`exits.on_rows`), then the LSTM's skip-aware decisions
   over the g steps (`ARNet.decide_steps`: the policy's carry, c, h, the skip still pending and
   the action in effect, goes from group to group, so a skip may cover the next group's frames);
2. each backbone on the frames routed to it (`exits.on_rows`), the policy's lite head on every
   row (H x C multiply-adds);
3. the running prediction, `aggregate` on frames 0 .. k: the sum of the processed frames'
   selected logits / max(1, #processed); its confidence (-inf before a first processed frame)
   against `thresholds[j]` stops videos. After the last group every video stops.
Thresholds are a traced argument: new ones do not recompile. With thresholds that never exit
early the outputs equal `model.apply(variables, video)` (the masked evaluation forward).

A batch sharded over several devices needs no `shard_map`: `jit` partitions the program, and the
CNN buckets, sized by counts over the whole batch, simply span the devices.
"""
from __future__ import annotations

import functools
from typing import Callable

import einops
import jax
import jax.numpy as jnp

from arnet_jax.models import exits
from arnet_jax.models import policy as policy_lib
from arnet_jax.models.arnet import ARNet, aggregate, resize
from arnet_jax.models.routing import module_variables


class ExitProgram:
  """`program(variables, video, thresholds, *, rng=None, valid=None) -> dict`; see
  `exit_inference_fn`. `traces` counts the compilations (one per batch shape and argument
  structure)."""

  def __init__(self, model: ARNet, group: int, confidence: str, plan: str):
    if not isinstance(model, ARNet):
      raise TypeError(f'exit_arnet runs an ARNet; a {type(model).__name__} has no per-frame '
                      'policy to stop (evaluate it without conditional exit).')
    exits.check_settings(group, confidence, plan)
    self.model, self.group, self.confidence, self.plan = model, group, confidence, plan
    self.traces = 0
    self._program = jax.jit(self._program_fn)

  def __call__(self, variables: dict, video: jax.Array, thresholds: jax.Array, *,
               rng: jax.Array | None = None, valid: jax.Array | None = None) -> dict:
    thresholds = exits.as_thresholds(thresholds, video.shape[1], self.group)
    if valid is not None and jnp.shape(valid) != video.shape[:1]:
      raise ValueError(f'valid must be [B] = {video.shape[:1]} bools, got shape {jnp.shape(valid)}')
    if self.model.needs_rng and rng is None:
      raise ValueError("The Random baseline draws its actions: pass rng=jax.random.key(seed).")
    return self._program(variables, video, thresholds, rng, valid)

  def _program_fn(self, variables, video, thresholds, rng, valid):
    self.traces += 1
    model, g = self.model, self.group
    space = model.action_space
    b, t = video.shape[:2]
    k_points = exits.num_exit_points(t, g)
    noise = None
    if model.needs_rng:  # the whole [B, T, A] draw of the masked forward, read g steps a time
      noise = model.apply({}, b, t, method=ARNet.decision_noise, rngs={'gumbel': rng})

    def body(state):
      j = state['j']
      steps = j * g + jnp.arange(g)
      active = state['running'][:, None] & (steps < t)[None]  # [B, g]; the padding never runs
      read = jnp.minimum(steps, t - 1)
      frames = einops.rearrange(jnp.take(video, read, axis=1), 'b g h w c -> (b g) h w c')
      counts = dict(state['rows'])
      carry, decisions = self._decide(variables, frames, active, state['carry'],
                                      None if noise is None else jnp.take(noise, read, axis=1),
                                      counts)
      logits = self._classify(variables, frames, decisions, counts)  # [N, R, C]
      result = aggregate(logits.reshape(*active.shape, *logits.shape[1:]), decisions['actions'])
      total = state['total'] + result['frame_logits'].sum(1)
      processed = state['processed_count'] + result['processed'].sum(1)
      last_lite = state['last_lite']
      if 'lite_logits' in decisions:  # the lite head at the group's last step run
        last = jnp.minimum(g, t - j * g) - 1
        lite = jax.lax.dynamic_index_in_dim(decisions['lite_logits'], last, 1, keepdims=False)
        last_lite = jnp.where(state['running'][:, None], lite, last_lite)
      confident = exits.confidence(running_prediction(model, total, processed, last_lite),
                                   self.confidence, ready=processed > 0)
      stop = state['running'] & ((confident >= thresholds[j]) | (j == k_points - 1))

      def write(into, x):  # steps beyond T (the last group's padding) are dropped
        return into.at[:, steps].set(x.astype(into.dtype), mode='drop')
      return dict(
          j=j + 1, running=state['running'] & ~stop, carry=carry, total=total,
          processed_count=processed, last_lite=last_lite,
          exit_step=jnp.where(stop, exits.group_bounds(j, g, t), state['exit_step']),
          actions=write(state['actions'], decisions['actions']),
          decided=write(state['decided'], decisions['decided']),
          processed=write(state['processed'], result['processed']), rows=counts)

    a, c = space.num_actions, model.num_classes
    running = jnp.ones((b,), bool) if valid is None else jnp.asarray(valid, bool)
    state = dict(
        j=jnp.int32(0), running=running,
        carry=policy_lib.initial_carry(b, model.lstm_hidden, a) if model.uses_policy else None,
        total=jnp.zeros((b, c), jnp.float32), processed_count=jnp.zeros((b,), jnp.float32),
        last_lite=jnp.zeros((b, c), jnp.float32), exit_step=jnp.zeros((b,), jnp.int32),
        actions=jnp.zeros((b, t, a), jnp.float32), decided=jnp.zeros((b, t), bool),
        processed=jnp.zeros((b, t), jnp.float32),
        rows={name: jnp.int32(0) for name in ('policy', *space.names[:len(space.backbones)])})
    state = jax.lax.while_loop(lambda s: (s['j'] < k_points) & s['running'].any(), body, state)
    logits = running_prediction(model, state['total'], state['processed_count'],
                                state['last_lite'])
    logits = jnp.where(running[:, None], logits, 0.0)  # padding videos: zero logits
    return dict(logits=logits, exit_step=state['exit_step'], actions=state['actions'],
                decided=state['decided'], processed=state['processed'], rows=state['rows'])

  def _decide(self, variables, frames, active, carry, noise, counts):
    """One group's decisions: the policy CNN on the active rows of frames `[N, H, W, 3]`, then
    the LSTM over the g steps from `carry`. Returns (the carry after them, decisions with actions
    `[B, g, A]` and decided `[B, g]` zero at inactive steps); adds the CNN's rows to counts."""
    model, space = self.model, self.model.action_space
    policy_variables = module_variables(variables, 'policy')
    features = None
    if model.uses_policy:
      def embed(x):  # [S, H, W, 3] -> [S, F], resized as `ARNet.policy_frames` does
        x = resize(x, space.policy_resolution, model.resize_method)
        return model.apply(policy_variables, x, method=ARNet.embed_policy)
      shape = jax.eval_shape(embed, jax.ShapeDtypeStruct((1, *frames.shape[1:]), frames.dtype))
      features, count = exits.on_rows(embed, active.reshape(-1), frames,
                                      jnp.zeros((frames.shape[0], shape.shape[1]), shape.dtype),
                                      self.plan)
      counts['policy'] += count
      features = features.reshape(*active.shape, -1)
    carry, decisions = model.apply(policy_variables, features, carry, active, noise,
                                   method=ARNet.decide_steps)
    return carry, dict(decisions, actions=decisions['actions'] * active[..., None],
                       decided=decisions['decided'] & active)

  def _classify(self, variables, frames, decisions, counts):
    """Resolution logits `[N, R, C]` of one group: each backbone on the frames `[N, H, W, 3]`
    routed to it, the lite head's logits on every row; adds each backbone's rows to counts."""
    model, space = self.model, self.model.action_space
    logits = model.apply({}, decisions, method=ARNet.initial_logits)
    routed = decisions['actions'].reshape(-1, space.num_actions) > 0
    for k in range(len(space.backbones)):
      sub = module_variables(variables, f'backbone_{k}')
      column, count = exits.on_rows(
          lambda x, k=k, sub=sub: model.apply(sub, k, x, method=ARNet.classify_frames),
          routed[:, k], frames, logits[:, k], self.plan)
      logits = logits.at[:, k].set(column)
      counts[space.names[k]] += count
    return logits


def running_prediction(model: ARNet, total: jax.Array, processed: jax.Array,
                       last_lite: jax.Array) -> jax.Array:
  """`aggregate`'s video logits `[B, C]` from the running sum of the processed frames' logits
  `total` `[B, C]` and their count `processed` `[B]`; with `no_frame_fallback='policy_head'`, a
  video with no processed frame takes the lite head's logits at its last step run, `last_lite`
  `[B, C]` (as `ARNet.combine` does at the last frame)."""
  logits = total / jnp.maximum(processed, 1.0)[:, None]
  if model.no_frame_fallback == 'policy_head' and model.action_space.policy_action:
    logits = jnp.where((processed == 0)[:, None], last_lite, logits)
  return logits


@functools.lru_cache(maxsize=16)  # one program per (model, settings): compiled once
def exit_inference_fn(model: ARNet, *, group: int, confidence: str, plan: str = 'binary'
                      ) -> Callable[..., dict]:
  """AR-Net's exit program: `fn(variables, video, thresholds, *, rng=None, valid=None) -> dict`.

  Args:
    model: an `ARNet` of any policy mode: 'learned' (argmax decisions), 'random' (needs `rng`:
      the masked forward's 'gumbel' stream, so its decisions are the forward's), 'none'
      (Uniform: action 0 on every frame, no policy CNN) or 'all' (Multi-Scale: every resolution
      action on every frame). An `LSTMBaseline` raises a TypeError.
    group: g frames per exit point; K = ceil(T / g) exit points (the last group may be shorter).
    confidence: 'max_logit' or 'max_prob' (`exits.confidence`).
    plan: the CNN buckets, 'binary' (a CPU's) or 'grid' (a GPU's or TPU's); see `exits.on_rows`.

  The call: variables as for `model.apply`; video `[B, T, H, W, 3]` at the top resolution;
  thresholds `[K]` float32 (a video stops after group j once its confidence >= thresholds[j]);
  valid `[B]` bool (False: a padding video, computes nothing).

  Returns a dict: logits `[B, C]` (the running prediction at the video's exit; zero for padding);
  exit_step `[B]` int32 frames read (0 for padding); actions `[B, T, A]`, decided `[B, T]`,
  processed `[B, T]` as the forward's, zero (False) at frames not read; rows `{name: int32}` the
  frames each CNN computed: 'policy' (0 without a policy network) and each backbone's action
  name (`model.action_space.names[k]`).
  """
  return ExitProgram(model, group, confidence, plan)
