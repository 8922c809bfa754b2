"""AdaFocusV2's exit program: a batch read group by group, each video until it is confident.

Shape letters: B videos, T steps (frames, read in the model's `frame_order`), g steps per
group, K = ceil(T / g) exit points, T' = K g the steps padded to whole groups, H x W a frame,
h x w x G the glance's map, F_G / F_L the pooled global / local features, D the classifier's
hidden size, Q the policy's GRU size, A the actions (distinct patch sides), C classes.

One `jax.jit` program per batch shape (the thresholds are traced). A `lax.while_loop` runs
group j (steps j g .. min((j + 1) g, T) - 1) for the videos still running:
  glance    the global CNN on their frames (`exits.on_rows`: running rows only);
  policy    (mode 'focus') `policy.encode` per frame, the GRU cell over the group's steps (its
            state carried across groups, unchanged for stopped videos), `policy.locate`;
            (mode 'random') the slice of the full forward's random corners, drawn once;
  focus     the local CNN on the patches at those corners (running rows only; one `on_rows`
            per distinct patch side, so per-step sides work);
  classify  `classifier.embed` per step, the running max carried across groups, the head of
            the group's last step (`classifier.head_at`, a traced step): the running
            prediction, `step_logits[:, k]` of the full forward;
  stop      the videos whose confidence reaches `thresholds[j]` (every video after group K - 1).
Mode 'uniform': the local CNN on whole frames only; the running prediction is the mean of its
head's logits over the frames read so far (after all T: the model's `logits`).
The last group is padded to g steps whose rows are never selected. The per-step encoder, GRU,
embedding and head run on every row and are discarded for stopped videos (a few multiply-adds);
the CNNs, nearly all the cost, run on running rows only.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from arnet_jax.models import adafocus_v2 as adafocus
from arnet_jax.models import exits

EXIT_MODES = ('focus', 'random', 'uniform')


@functools.lru_cache(maxsize=16)  # one program per (model, settings): compiled once
def exit_inference_fn(model: adafocus.AdaFocusV2, *, group: int, confidence: str,
                      plan: str = 'binary') -> Callable[..., dict]:
  """The exit program of `model`: `fn(variables, video, thresholds, *, rng=None, valid=None)`.

  Args:
    model: an AdaFocusV2 in mode 'focus', 'random' or 'uniform'.
    group: g, the steps between two exit points.
    confidence: `exits.CONFIDENCES`, the running prediction's confidence.
    plan: `buckets.DEVICE_PLANS`, the CNN calls' buckets ('binary' for a CPU, 'grid' else).

  `fn` takes video `[B, T, H, W, 3]` (temporal order), thresholds `[K]` float32, rng (mode
  'random': the 'gumbel' key of the full forward) and valid `[B]` bool (False: computes nothing,
  exit_step 0, zero logits). It returns logits `[B, C]` (the running prediction at the exit),
  exit_step `[B]` int32 (steps run), actions `[B, T, A]` and decided `[B, T]` (step order, zero /
  False at steps not run), rows {'glance', 'local'} (int32 rows each CNN computed) and, but in
  mode 'uniform', corners `[B, T, 2]` (step order, zero at steps not run). `fn.traces` counts
  the program's traces (one per batch shape).
  """
  if model.mode not in EXIT_MODES:
    raise ValueError(f'the exit program runs modes {EXIT_MODES}, not {model.mode!r}')
  exits.check_settings(group, confidence, plan)

  def program(variables, video, thresholds, rng, valid):
    fn.traces += 1
    return _exit_loop(model, variables, video, thresholds, rng, valid, group, confidence, plan)
  jitted = jax.jit(program)

  def fn(variables: dict, video: jax.Array, thresholds: jax.Array, *,
         rng: jax.Array | None = None, valid: jax.Array | None = None) -> dict:
    b, t = video.shape[:2]
    adafocus.step_patch_sizes(model.patch_sizes, t)  # a clear error for a bad length
    thresholds = exits.as_thresholds(thresholds, t, group)
    if model.mode == 'random':
      if rng is None:
        raise ValueError("mode 'random' draws its corners from rng: pass rng")
    else:
      rng = None
    valid = jnp.ones((b,), bool) if valid is None else jnp.asarray(valid, bool)
    return jitted(variables, video, thresholds, rng, valid)
  fn.traces = 0
  return fn


def _exit_loop(model, variables, video, thresholds, rng, valid, group, confidence, plan):
  """The traced program (see `exit_inference_fn`)."""
  b, t = video.shape[:2]
  k_points = exits.num_exit_points(t, group)
  t_pad = k_points * group
  apply = lambda method, *args, **kw: model.apply(variables, *args, method=method, **kw)
  wide = adafocus.wide(model.dtype)
  pad = lambda x: jnp.pad(x, [(0, 0), (0, t_pad - t)] + [(0, 0)] * (x.ndim - 2))
  order = adafocus.frame_indices(model.frame_order, t)
  frames = pad(video[:, np.asarray(order)])  # [B, T', H, W, 3], step order
  sizes = adafocus.step_patch_sizes(model.patch_sizes, t)
  sides = adafocus.distinct_patch_sizes(sizes)
  side_of_step = jnp.asarray([sides.index(p) for p in sizes] + [0] * (t_pad - t))  # [T']
  uniform = model.mode == 'uniform'
  if model.mode == 'random':  # the full forward's draw, sliced per group
    random_corners = pad(apply(lambda m: m.draw_random_corners(b, t), rngs={'gumbel': rng}))
  zero_rows = lambda fn_, rows: jax.tree.map(  # fn_'s outputs for B g rows, zero
      lambda s: jnp.zeros((b * group, *s.shape[1:]), s.dtype),
      jax.eval_shape(fn_, jax.tree.map(lambda r: r[:1], rows)))

  def glance(x):
    return apply(lambda m, x: m.glance_rows(x), x)

  def focus(size):
    return lambda rows: apply(lambda m, x, c: m.focus_rows(x, c, size), rows['x'], rows['c'])

  def local_logits(x):
    return apply(lambda m, x: m.whole_frame_logits(x), x)

  def body(state):
    j = state['j']
    start = j * group
    steps = start + jnp.arange(group)
    selected = state['running'][:, None] & (steps < t)[None, :]  # [B, g]
    flat = selected.reshape(-1)
    x = jax.lax.dynamic_slice_in_dim(frames, start, group, axis=1)
    x = x.reshape(b * group, *x.shape[2:])
    new = dict(state, j=j + 1)
    done = exits.group_bounds(j, group, t)  # steps read after this group
    if uniform:
      logits, count = exits.on_rows(local_logits, flat, x, zero_rows(local_logits, x), plan)
      new['rows_local'] = state['rows_local'] + count
      new['logit_sum'] = state['logit_sum'] + logits.reshape(b, group, -1).sum(1)
      running_logits = new['logit_sum'] / done.astype(wide)
    else:
      (feature_map, global_features), count = exits.on_rows(
          glance, flat, x, zero_rows(glance, x), plan)
      new['rows_glance'] = state['rows_glance'] + count
      if model.mode == 'focus':
        encoded = apply(lambda m, f: m.policy.encode(f), feature_map).reshape(b, group, -1)
        h, states = state['h'], []
        for i in range(group):  # stopped videos (and padded steps) keep their state
          h = jnp.where(selected[:, i, None],
                        apply(lambda m, h, e: m.policy.gru.cell(h, e), h, encoded[:, i]), h)
          states.append(h)
        new['h'] = h
        corners = apply(lambda m, h: m.policy.locate(h), jnp.stack(states, axis=1))
      else:
        corners = jax.lax.dynamic_slice_in_dim(random_corners, start, group, axis=1)
      corners = jnp.where(selected[..., None], corners, 0)  # [B, g, 2]
      new['corners'] = jax.lax.dynamic_update_slice_in_dim(state['corners'], corners, start, 1)
      rows = dict(x=x, c=corners.reshape(b * group, 2))
      local = zero_rows(focus(sides[0]), rows)
      step_side = side_of_step[steps]
      for a, size in enumerate(sides):  # one local CNN per patch side, its steps' rows only
        on_side = flat & jnp.broadcast_to(step_side == a, (b, group)).reshape(-1)
        local, count = exits.on_rows(focus(size), on_side, rows, local, plan)
        new['rows_local'] = new['rows_local'] + count
      both = jnp.concatenate([global_features.astype(wide), local.astype(wide)], axis=-1)
      embedded = apply(lambda m, f: m.classifier.embed(f), both).reshape(b, group, -1)
      pooled = state['pooled']
      for i in range(group):  # the running max, over the steps each video ran
        pooled = jnp.where(selected[:, i, None], jnp.maximum(pooled, embedded[:, i]), pooled)
      new['pooled'] = pooled
      running_logits = apply(lambda m, p, k: m.classifier.head_at(p, k, t), pooled, done - 1)
    running = state['running']
    new['logits'] = jnp.where(running[:, None], running_logits.astype(wide), state['logits'])
    new['exit_step'] = jnp.where(running, done, state['exit_step'])
    confident = exits.confidence(new['logits'], confidence) >= thresholds[j]
    new['running'] = running & ~confident & (j + 1 < k_points)
    return new

  state = dict(j=jnp.int32(0), running=valid, logits=jnp.zeros((b, model.num_classes), wide),
               exit_step=jnp.zeros((b,), jnp.int32), rows_glance=jnp.int32(0),
               rows_local=jnp.int32(0))
  if uniform:
    state['logit_sum'] = jnp.zeros((b, model.num_classes), wide)
  else:
    # ReLU embeddings are >= 0, so a zero start leaves the running max that of the steps run.
    state.update(pooled=jnp.zeros((b, model.classifier_hidden), wide),
                 corners=jnp.zeros((b, t_pad, 2), wide))
    if model.mode == 'focus':
      state['h'] = jnp.zeros((b, model.policy_hidden), wide)
  state = jax.lax.while_loop(lambda s: (s['j'] < k_points) & s['running'].any(), body, state)

  ran = jnp.arange(t)[None, :] < state['exit_step'][:, None]  # [B, T]
  # The model's actions: each step's patch side, or mode 'uniform's one (the whole frame).
  table = jnp.ones((t, 1)) if uniform else jax.nn.one_hot(side_of_step[:t], len(sides))
  actions = table[None] * ran[..., None]
  out = dict(logits=state['logits'], exit_step=state['exit_step'], actions=actions, decided=ran,
             rows=dict(glance=state['rows_glance'], local=state['rows_local']))
  if not uniform:
    out['corners'] = state['corners'][:, :t]
  return out
