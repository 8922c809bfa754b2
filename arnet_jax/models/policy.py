"""The AR-Net policy: per-frame CNN features -> LSTM -> one action per frame.

Shape letters: B videos, T frames, F policy CNN features, H LSTM hidden size, A actions
(resolution actions first, then skips), C classes.

The decision process is a pure function, `scan_policy`, a `lax.scan` over the T frames
(`step_policy`: the same over the next frames from a given `PolicyCarry`, for conditional exit):
- at a *decision* step the LSTM consumes the frame's features and the action is chosen from the
  action logits (Gumbel-Softmax sample in training, argmax at evaluation, uniform for the Random
  baseline, or forced by the caller);
- choosing skip-k at step t removes frames t .. t+k-1 from classification. Steps t+1 .. t+k-1 are
  *covered*: the LSTM state (both h and c; the original code froze only h) stays as it was after
  step t, and the frame carries the skip action's one-hot (with its gradient), which the FLOPs and
  usage losses count, as the original code does.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from arnet_jax.models import backbones, kernels, layers

SAMPLING_MODES = ('gumbel', 'argmax', 'uniform')


def gumbel_softmax_st(logits: jax.Array, noise: jax.Array, tau: float | jax.Array) -> jax.Array:
  """Hard, straight-through Gumbel-Softmax over the last axis.

  Forward: one_hot(argmax(log p + G)). Backward: the gradient of softmax((log p + G) / tau).
  `noise` is standard Gumbel noise of the logits' shape (`jax.random.gumbel`).
  """
  y_soft = jax.nn.softmax((jax.nn.log_softmax(logits, axis=-1) + noise) / tau, axis=-1)
  y_hard = jax.nn.one_hot(jnp.argmax(y_soft, axis=-1), logits.shape[-1], dtype=y_soft.dtype)
  return y_hard - jax.lax.stop_gradient(y_soft) + y_soft


def temperature(epoch: float | jax.Array, tau0: float = 5.0, decay: float = -0.045):
  """Gumbel-Softmax temperature tau0 * exp(decay * epoch) (AR-Net section 4.1)."""
  return tau0 * jnp.exp(decay * epoch)


def lstm_step(carry: tuple[jax.Array, jax.Array], input_gates: jax.Array,
              hh_kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One LSTMCell step with torch's gate order (i, f, g, o).

  carry = (c, h) `[B, H]`; input_gates = x @ W_ih + b_ih + b_hh `[B, 4H]`; hh_kernel `[H, 4H]`.
  """
  c, h = carry
  gates = input_gates + h @ hh_kernel
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return c, h


class PolicyTrace(NamedTuple):
  """What the policy did, per frame.

  actions:  [B, T, A] one-hot in effect at each frame (covered frames repeat the skip one-hot).
  decided:  [B, T] bool, True where the policy made a fresh decision.
  logits:   [B, T, A] action logits (zero for the Random baseline).
  hidden:   [B, T, H] LSTM h after each step (frozen across covered steps).
  cell:     [B, T, H] LSTM c after each step (frozen across covered steps).
  """
  actions: jax.Array
  decided: jax.Array
  logits: jax.Array
  hidden: jax.Array
  cell: jax.Array


class PolicyCarry(NamedTuple):
  """The decision process's state between steps.

  cell, hidden: [B, H] LSTM c and h; remaining: [B] int32 covered steps still to come (a skip's);
  action: [B, A] the one-hot in effect (what a covered step repeats).
  """
  cell: jax.Array
  hidden: jax.Array
  remaining: jax.Array
  action: jax.Array


def initial_carry(batch: int, hidden_size: int, num_actions: int) -> PolicyCarry:
  """The state before the first frame: zero LSTM state, no skip pending, no action."""
  return PolicyCarry(jnp.zeros((batch, hidden_size)), jnp.zeros((batch, hidden_size)),
                     jnp.zeros((batch,), jnp.int32), jnp.zeros((batch, num_actions)))


def scan_policy(input_gates: jax.Array, hh_kernel: jax.Array, head_kernel: jax.Array,
                head_bias: jax.Array, skip_lengths: Sequence[int], *, sampling: str,
                noise: jax.Array | None = None, tau: float | jax.Array = 1.0,
                forced: jax.Array | None = None) -> PolicyTrace:
  """Runs the skip-aware decision process over T frames.

  Args:
    input_gates: `[B, T, 4H]` LSTM input projections of each frame's features.
    hh_kernel: `[H, 4H]`; head_kernel `[H, A]`, head_bias `[A]`: the action head.
    skip_lengths: per action, the number of frames it skips (0 for resolution actions).
    sampling: 'gumbel' (training), 'argmax' (evaluation), or 'uniform' (Random baseline: the
      logits are replaced by zeros and a Gumbel sample is drawn).
    noise: `[B, T, A]` standard Gumbel noise, needed by 'gumbel' and 'uniform'.
    tau: Gumbel-Softmax temperature.
    forced: optional `[B, T]` int actions used instead of the policy's at decision steps.
  """
  b = input_gates.shape[0]
  init = initial_carry(b, hh_kernel.shape[0], head_kernel.shape[1])
  return step_policy(init, input_gates, hh_kernel, head_kernel, head_bias, skip_lengths,
                     sampling=sampling, noise=noise, tau=tau, forced=forced)[1]


def step_policy(carry: PolicyCarry, input_gates: jax.Array, hh_kernel: jax.Array,
                head_kernel: jax.Array, head_bias: jax.Array, skip_lengths: Sequence[int], *,
                sampling: str, noise: jax.Array | None = None, tau: float | jax.Array = 1.0,
                forced: jax.Array | None = None, active: jax.Array | None = None
                ) -> tuple[PolicyCarry, PolicyTrace]:
  """`scan_policy` over the next g steps from `carry`: -> (the carry after them, their trace).

  Steppable, so that a caller can run the decisions a group of frames at a time (conditional
  exit): a skip chosen in one group still covers the next group's frames through `remaining`.
  Arguments as `scan_policy`, with `[B, g, ...]` inputs, and `active` (`[B, g]` bool, default
  all True): at an inactive step (a stopped video, a group's padding) the carry stays as it was;
  the trace there repeats the carry's state and is the caller's to discard.
  """
  if sampling not in SAMPLING_MODES:
    raise ValueError(f'sampling must be one of {SAMPLING_MODES}, got {sampling!r}')
  b, t, _ = input_gates.shape
  num_actions = head_kernel.shape[1]
  if len(skip_lengths) != num_actions:
    raise ValueError(f'skip_lengths has {len(skip_lengths)} entries for {num_actions} actions')
  if sampling != 'argmax' and noise is None and forced is None:
    raise ValueError(f'sampling={sampling!r} needs Gumbel noise')
  skip_len = jnp.asarray(skip_lengths, jnp.int32)
  zeros = jnp.zeros((b, t, num_actions), jnp.float32)
  xs = (jnp.swapaxes(input_gates, 0, 1),
        jnp.swapaxes(noise if noise is not None else zeros, 0, 1),
        jnp.swapaxes(forced if forced is not None else jnp.zeros((b, t), jnp.int32), 0, 1),
        *(() if active is None else (jnp.swapaxes(active, 0, 1),)))

  def step(carry, x):
    c, h, remaining, prev_action = carry
    gates, g, forced_t = x[:3]
    c_new, h_new = lstm_step((c, h), gates, hh_kernel)
    logits = h_new @ head_kernel + head_bias
    if sampling == 'uniform':
      logits = jnp.zeros_like(logits)
    if forced is not None:
      action = jax.nn.one_hot(forced_t, num_actions, dtype=jnp.float32)
    elif sampling == 'argmax':
      action = jax.nn.one_hot(jnp.argmax(logits, -1), num_actions, dtype=jnp.float32)
    else:
      action = gumbel_softmax_st(logits, g, tau)
    covered = remaining > 0
    keep = covered[:, None]
    if active is not None:  # an inactive step keeps the whole carry
      active_t = x[3]
      keep = keep | ~active_t[:, None]
    c_out, h_out = jnp.where(keep, c, c_new), jnp.where(keep, h, h_new)
    action = jnp.where(keep, prev_action, action)
    chosen = jnp.argmax(jax.lax.stop_gradient(action), axis=-1)
    remaining_out = jnp.maximum(jnp.where(covered, remaining, skip_len[chosen]) - 1, 0)
    if active is not None:
      remaining_out = jnp.where(active_t, remaining_out, remaining)
    return (PolicyCarry(c_out, h_out, remaining_out, action),
            (action, ~covered, logits, h_out, c_out))

  carry, ys = jax.lax.scan(step, PolicyCarry(*carry), xs, unroll=kernels.active().scan_unroll)
  return carry, PolicyTrace(*(jnp.swapaxes(y, 0, 1) for y in ys))


def lstm_uniform_init(hidden_size: int):
  """torch.nn.LSTMCell's init: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias."""
  return layers.uniform_init(hidden_size ** -0.5)


class PolicyNetwork(nn.Module):
  """MobileNetV2 features at the lowest resolution -> LSTMCell -> action and lite heads.

  Children: `features` (CNN), `lstm_ih` (Dense F -> 4H; its bias is torch's b_ih + b_hh),
  `lstm_hh` (kernel `[H, 4H]`), `action_head` (H -> A) and `lite_head` (H -> C), the heads
  initialised N(0, 0.001) with zero bias.
  """
  num_actions: int
  num_classes: int
  skip_lengths: Sequence[int]
  backbone: str = 'mobilenet_v2'
  hidden_size: int = 512
  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  dtype: Any = jnp.float32

  def setup(self):
    self.features = backbones.create_backbone(
        self.backbone, width_multiplier=self.width_multiplier,
        depth_multiplier=self.depth_multiplier, dtype=self.dtype)
    init = lstm_uniform_init(self.hidden_size)
    self.lstm_ih = nn.Dense(4 * self.hidden_size, kernel_init=init, bias_init=init)
    self.lstm_hh = self.param('lstm_hh', init, (self.hidden_size, 4 * self.hidden_size))
    self.action_head = nn.Dense(self.num_actions, kernel_init=backbones.head_init)
    self.lite_head = nn.Dense(self.num_classes, kernel_init=backbones.head_init)

  def embed(self, frames: jax.Array, train: bool = False) -> jax.Array:
    """`[B, T, h, w, 3]` frames at the policy resolution -> `[B, T, F]` features."""
    b, t = frames.shape[:2]
    f = self.features(frames.reshape(b * t, *frames.shape[2:]), train)
    return f.reshape(b, t, -1)

  def __call__(self, frames: jax.Array, *, train: bool = False, sampling: str = 'argmax',
               noise: jax.Array | None = None, tau: float | jax.Array = 1.0,
               forced: jax.Array | None = None) -> PolicyTrace:
    """`[B, T, h, w, 3]` -> PolicyTrace (see `scan_policy`)."""
    return self.decide(self.embed(frames, train), sampling=sampling, noise=noise, tau=tau,
                       forced=forced)

  def decide(self, features: jax.Array, **kwargs) -> PolicyTrace:
    """`[B, T, F]` features -> PolicyTrace; the LSTM input projection runs once for all frames."""
    kernel, bias = self._action_head_params(features)
    return scan_policy(self.lstm_ih(features.astype(jnp.float32)), self.lstm_hh, kernel, bias,
                       self.skip_lengths, **kwargs)

  def decide_steps(self, features: jax.Array, carry: PolicyCarry, **kwargs
                   ) -> tuple[PolicyCarry, PolicyTrace]:
    """`[B, g, F]` features of the next g steps and the carry before them -> (the carry after
    them, their PolicyTrace); see `step_policy` (`active` among the keyword arguments)."""
    kernel, bias = self._action_head_params(features)
    return step_policy(carry, self.lstm_ih(features.astype(jnp.float32)), self.lstm_hh, kernel,
                       bias, self.skip_lengths, **kwargs)

  def _action_head_params(self, features: jax.Array):
    if self.is_initializing():  # create the head's parameters with their usual names
      self.action_head(jnp.zeros((1, self.hidden_size), jnp.float32))
    p = self.action_head.variables['params']
    return p['kernel'], p['bias']

  def lite_logits(self, hidden: jax.Array) -> jax.Array:
    """`[..., H] -> [..., C]`: the policy's own classifier (AR-Net's lowest-resolution action)."""
    return self.lite_head(hidden)


def gumbel_noise(key: jax.Array, shape: Sequence[int]) -> jax.Array:
  return jax.random.gumbel(key, shape, jnp.float32)

