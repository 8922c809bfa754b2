"""AR-Net: a policy picks, per frame, a (backbone, resolution) or a skip; masked compute.

Shape letters: B videos, T frames, H x W the top-resolution input, A actions, R resolution actions
(the backbones, then the policy's own head when it is an action), C classes.

One forward, in steps the sparse router reuses: `decide` (the policy alone) -> `classify` per
backbone, on the frames a dispatcher (`arnet_jax.models.dispatch`) gives it -> `combine`.
Masked compute (training and the reference evaluation, the dense dispatcher): every frame goes
through every backbone at that backbone's resolution (resized from the top-resolution input); the
per-frame one-hot action selects which logits count. Video logits = sum of processed frames'
logits / max(1, #processed). All shapes are static, so the whole forward pass is one `jit`.
`arnet_jax.models.routing` runs the same steps with bucket dispatchers at inference.

Policy modes (the paper's baselines are configurations of this one module):
- 'learned': AR-Net; Gumbel-Softmax in training, argmax at evaluation.
- 'random':  the Random-policy baseline; uniform actions (skips honoured) in training and eval.
- 'none':    no policy: every frame takes action 0 (Uniform, with a single backbone).
- 'all':     every frame through every resolution action, all logits averaged (Multi-Scale;
             also the warm-up stage, which trains each resolution action's classifier).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from arnet_jax.models import backbones, dispatch, policy as policy_lib

POLICY_MODES = ('learned', 'random', 'none', 'all')
RESIZE_METHODS = ('nearest', 'bilinear')


@dataclasses.dataclass(frozen=True)
class ActionSpace:
  """The actions: one per (backbone, resolution), then the policy head, then the skips."""
  backbones: tuple[str, ...]
  resolutions: tuple[int, ...]
  policy_action: bool
  policy_resolution: int
  skips: tuple[int, ...]

  def __post_init__(self):
    if len(self.backbones) != len(self.resolutions):
      raise ValueError(f'{len(self.backbones)} backbones but {len(self.resolutions)} '
                       'resolutions; give one resolution per backbone.')
    if any(k < 1 for k in self.skips):
      raise ValueError(f'skip lengths must be >= 1, got {self.skips}')
    if self.num_resolution_actions == 0:
      raise ValueError('The action space has no way to classify a frame: give at least one '
                       'backbone or set policy_action=True.')

  @property
  def num_resolution_actions(self) -> int:
    return len(self.backbones) + int(self.policy_action)

  @property
  def num_actions(self) -> int:
    return self.num_resolution_actions + len(self.skips)

  @property
  def skip_lengths(self) -> tuple[int, ...]:
    return (0,) * self.num_resolution_actions + tuple(self.skips)

  @property
  def names(self) -> tuple[str, ...]:
    names = [f'{b}@{r}' for b, r in zip(self.backbones, self.resolutions)]
    if self.policy_action:
      names.append(f'policy@{self.policy_resolution}')
    return tuple(names + [f'skip{k}' for k in self.skips])

  @property
  def top_resolution(self) -> int:
    return max((*self.resolutions, self.policy_resolution))


def resize(frames: jax.Array, size: int, method: str = 'nearest') -> jax.Array:
  """`[N, H, W, c] -> [N, size, size, c]`.

  'nearest' reproduces torch's `F.interpolate(mode='nearest')`, which the original AR-Net uses to
  make its low-resolution inputs: source index floor(i * in / out), computed in float32 as torch
  does (in float64 some indices differ, e.g. 300 -> 112). 'bilinear' is antialiased.
  """
  n, h, w, c = frames.shape
  if (h, w) == (size, size):
    return frames
  if method == 'nearest':
    rows, cols = _torch_nearest_indices(h, size), _torch_nearest_indices(w, size)
    return frames[:, rows][:, :, cols]
  if method == 'bilinear':
    return jax.image.resize(frames, (n, size, size, c), 'bilinear', antialias=True)
  raise ValueError(f'resize must be one of {RESIZE_METHODS}, got {method!r}')


def _torch_nearest_indices(size_in: int, size_out: int) -> np.ndarray:
  """ATen's `nearest_idx`: min(floor(i * float(in / out)), in - 1) in float32 arithmetic."""
  scale = np.float32(size_in) / np.float32(size_out)
  index = np.floor(np.arange(size_out, dtype=np.float32) * scale).astype(np.int32)
  return np.minimum(index, size_in - 1)


class ARNet(nn.Module):
  """`[B, T, H, W, 3] -> dict` (see `__call__`). Children: `backbone_i`, `policy`."""
  num_classes: int
  action_space: ActionSpace
  policy_mode: str = 'learned'
  policy_backbone: str = 'mobilenet_v2'
  lstm_hidden: int = 512
  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  dropout_rate: float = 0.5
  resize_method: str = 'nearest'
  dtype: Any = jnp.float32
  # What a video none of whose frames was processed is classified with: 'none' (zero logits,
  # the authors') or 'policy_head' (the policy's own head on its state after its last decision,
  # the LSTM's summary of every frame it looked at; zeros still without that head).
  no_frame_fallback: str = 'none'

  def setup(self):
    if self.policy_mode not in POLICY_MODES:
      raise ValueError(f'policy_mode must be one of {POLICY_MODES}, got {self.policy_mode!r}')
    space = self.action_space
    if self.policy_mode == 'none' and space.num_actions != 1:
      raise ValueError("policy_mode='none' runs action 0 on every frame; it needs an action "
                       f'space of exactly one action, got {space.names}.')
    kw = dict(width_multiplier=self.width_multiplier, depth_multiplier=self.depth_multiplier,
              dtype=self.dtype)
    self.backbone = [backbones.Classifier(backbones.create_backbone(name, **kw),
                                          self.num_classes, self.dropout_rate)
                     for name in space.backbones]
    if self.uses_policy:
      self.policy = policy_lib.PolicyNetwork(
          space.num_actions, self.num_classes, space.skip_lengths, self.policy_backbone,
          self.lstm_hidden, **kw)

  @property
  def uses_policy(self) -> bool:
    """Multi-Scale needs the policy network only for its lite head."""
    if self.policy_mode == 'all':
      return self.action_space.policy_action
    return self.policy_mode != 'none'

  @property
  def runs_every_action(self) -> bool:
    """Whether every frame goes through every resolution action (Multi-Scale, Uniform)."""
    return self.policy_mode in ('all', 'none')

  @property
  def needs_rng(self) -> bool:
    """Whether evaluation draws actions (the Random baseline: the 'gumbel' rng stream)."""
    return self.policy_mode == 'random'

  def policy_frames(self, video: jax.Array) -> jax.Array:
    """`[B, T, H, W, 3]` -> `[B, T, r, r, 3]` at the policy's resolution."""
    frames = resize(einops.rearrange(video, 'b t h w c -> (b t) h w c'),
                    self.action_space.policy_resolution, self.resize_method)
    return einops.rearrange(frames, '(b t) h w c -> b t h w c', b=video.shape[0])

  def embed_policy(self, frames: jax.Array) -> jax.Array:
    """`[N, r, r, 3]` frames at the policy resolution -> `[N, F]` policy CNN features (eval)."""
    return self.policy.features(frames, False)

  def decide(self, video: jax.Array, *, train: bool = False, tau: float | jax.Array = 1.0,
             forced: jax.Array | None = None, noise: jax.Array | None = None,
             features: jax.Array | None = None) -> dict:
    """Every frame's actions, from the policy alone: `[B, T, H, W, 3]` -> decisions.

    Decisions depend only on the policy network, which is what lets sparse inference decide
    first and run the backbones afterwards. `forced` (`[B, T]` int) replaces the policy's
    choices at decision steps; `noise` (`[B, T, A]` standard Gumbel) replaces the 'gumbel' rng
    stream; `features` (`[B, T, F]`, `embed_policy` of `policy_frames(video)`) skips the CNN.

    Returns actions `[B, T, A]` (in effect per frame), decided `[B, T]`, action_logits
    `[B, T, A]`, and lite_logits `[B, T, C]` where the policy's own head is an action.
    """
    b, t = video.shape[:2]
    if not self.uses_policy:  # every frame takes every resolution action
      return self._every_action(b, t)
    sampling, forced = self._sampling(train, forced, (b, t))
    if sampling == 'argmax' or forced is not None:
      noise = None
    elif noise is None:
      noise = self.decision_noise(b, t)
    if features is None:
      features = self.policy.embed(self.policy_frames(video), train)
    trace = self.policy.decide(features, sampling=sampling, noise=noise, tau=tau, forced=forced)
    return self._decisions(trace)

  def decision_noise(self, batch: int, steps: int) -> jax.Array:
    """`[B, T, A]` the Gumbel noise `decide` draws from the 'gumbel' rng stream (its first
    draw in this module's scope, as in the forward pass)."""
    return policy_lib.gumbel_noise(self.make_rng('gumbel'),
                                   (batch, steps, self.action_space.num_actions))

  def decide_steps(self, features: jax.Array | None, carry: policy_lib.PolicyCarry | None,
                   active: jax.Array, noise: jax.Array | None = None
                   ) -> tuple[policy_lib.PolicyCarry | None, dict]:
    """Evaluation decisions for the next g steps, from the policy's carry before them.

    features `[B, g, F]` (`embed_policy` of the steps' policy frames; None without a policy),
    carry (`policy_lib.initial_carry` before the first step; None without a policy), active
    `[B, g]` bool (inactive steps keep the carry; their decisions are the caller's to discard),
    noise `[B, g, A]` (the Random baseline's: the steps' part of `decision_noise`).
    Returns (the carry after the steps, decisions as `decide`'s for the g steps); run over all
    T steps in one group it gives `decide`'s decisions (train=False).
    """
    b, g = active.shape
    if not self.uses_policy:
      return carry, self._every_action(b, g)
    sampling, forced = self._sampling(False, None, (b, g))
    if sampling == 'argmax' or forced is not None:
      noise = None
    elif noise is None:
      raise ValueError(f'policy_mode={self.policy_mode!r} draws its actions: pass the noise.')
    carry, trace = self.policy.decide_steps(features, carry, sampling=sampling, noise=noise,
                                            forced=forced, active=active)
    return carry, self._decisions(trace)

  def _every_action(self, b: int, t: int) -> dict:
    a, r = self.action_space.num_actions, self.action_space.num_resolution_actions
    return dict(actions=jnp.zeros((b, t, a)).at[..., :r].set(1.0),
                decided=jnp.ones((b, t), bool), action_logits=jnp.zeros((b, t, a)))

  def _sampling(self, train: bool, forced: jax.Array | None, shape: tuple[int, int]):
    """-> (the policy's sampling mode, the forced actions) in this policy mode."""
    if self.policy_mode == 'all':
      if forced is None:  # no skip is taken: the LSTM reads every frame, as the lite head does
        forced = jnp.zeros(shape, jnp.int32)
      return 'argmax', forced
    if self.policy_mode == 'random':
      return 'uniform', forced
    return ('gumbel' if train else 'argmax'), forced

  def _decisions(self, trace: policy_lib.PolicyTrace) -> dict:
    decisions = dict(actions=trace.actions, decided=trace.decided, action_logits=trace.logits)
    if self.policy_mode == 'all':  # skip actions, if any, are never taken
      decisions.update(self._every_action(*trace.decided.shape), action_logits=trace.logits)
    if self.action_space.policy_action:
      decisions['lite_logits'] = self.policy.lite_logits(trace.hidden)
    return decisions

  def routed(self, decisions: dict) -> jax.Array:
    """`[K, N]` bool: frame n goes through backbone k (`routed_frames` of the actions)."""
    return routed_frames(decisions['actions'], len(self.action_space.backbones))

  def initial_logits(self, decisions: dict) -> jax.Array:
    """`[N, R, C]` resolution logits before any backbone ran: zeros, and the policy head's
    logits in its column (it costs H x C multiply-adds per frame, computed on every frame)."""
    b, t = decisions['actions'].shape[:2]
    r = self.action_space.num_resolution_actions
    logits = jnp.zeros((b * t, r, self.num_classes), jnp.float32)
    if 'lite_logits' in decisions:
      logits = logits.at[:, r - 1].set(einops.rearrange(decisions['lite_logits'],
                                                        'b t c -> (b t) c'))
    return logits

  def classify(self, k: int, video: jax.Array, resolution_logits: jax.Array,
               dispatcher=dispatch.Dense(), train: bool = False) -> jax.Array:
    """Backbone k on the frames `dispatcher` gives it, at its resolution; its logits written
    into column k of `resolution_logits` `[N, R, C]`."""
    frames = dispatcher.dispatch(einops.rearrange(video, 'b t h w c -> (b t) h w c'))
    return dispatcher.combine(self.classify_frames(k, frames, train), resolution_logits, k)

  def classify_frames(self, k: int, frames: jax.Array, train: bool = False) -> jax.Array:
    """Backbone k's logits `[N, C]` of frames `[N, H, W, 3]` (top resolution), resized to its
    resolution."""
    x = resize(frames, self.action_space.resolutions[k], self.resize_method)
    return self.backbone[k](x, train)

  def combine(self, resolution_logits: jax.Array, decisions: dict,
              valid: jax.Array | None = None) -> dict:
    """Decisions and resolution logits `[N, R, C]` -> the forward's output (see `__call__`).

    `valid` (`[B]` bool): videos with False (evaluation padding) count no frame.
    """
    actions = decisions['actions']
    if valid is not None:
      actions = actions * valid[:, None, None].astype(actions.dtype)
    resolution_logits = einops.rearrange(resolution_logits, '(b t) r c -> b t r c',
                                         b=actions.shape[0])
    out = {k: v for k, v in decisions.items() if k != 'lite_logits'}
    result = aggregate(resolution_logits, actions)
    if self.no_frame_fallback == 'policy_head' and self.action_space.policy_action:
      empty = result['processed'].sum(1) == 0
      last_state = resolution_logits[:, -1, self.action_space.num_resolution_actions - 1]
      result['logits'] = jnp.where(empty[:, None], last_state, result['logits'])
    return result | out | dict(resolution_logits=resolution_logits)

  def __call__(self, video: jax.Array, *, train: bool = False, tau: float | jax.Array = 1.0,
               forced: jax.Array | None = None, noise: jax.Array | None = None,
               policy_train: bool | None = None, dispatcher=dispatch.Dense()) -> dict:
    """The forward pass: decide, dispatch every backbone's frames, combine.

    Args:
      video: `[B, T, H, W, 3]` at the top resolution.
      train: batch statistics, dropout and Gumbel sampling on.
      tau: Gumbel-Softmax temperature.
      forced: optional `[B, T]` int actions that replace the policy's decisions.
      noise: optional `[B, T, A]` Gumbel noise (see `decide`).
      policy_train: train flag of the policy network alone (False freezes its batch-norm
        statistics for fine-tuning); defaults to `train`.
      dispatcher: which frames each backbone reads; `dispatch.Dense()` (masked compute: every
        frame through every backbone, the decisions select) is training's. Sparse inference
        (`arnet_jax.models.routing`) runs the same steps with `dispatch.Bucket`s.

    Returns a dict:
      logits `[B, C]` video logits (a video with no processed frame: zeros, or the
      `no_frame_fallback`); frame_logits `[B, T, C]` the selected logits of each frame
      (zero where skipped); actions `[B, T, A]`; decided `[B, T]`; processed `[B, T]` how many
      resolution actions each frame used; action_logits `[B, T, A]`; resolution_logits
      `[B, T, R, C]` every resolution action's logits on every frame (dense dispatch).
    """
    decisions = self.decide(video, train=train if policy_train is None else policy_train,
                            tau=tau, forced=forced, noise=noise)
    logits = self.initial_logits(decisions)
    for k in range(len(self.backbone)):
      logits = self.classify(k, video, logits, dispatcher, train)
    return self.combine(logits, decisions)


def routed_frames(actions: jax.Array, num_backbones: int) -> jax.Array:
  """`[B, T, A]` actions in effect -> `[K, N]` bool: frame n goes through backbone k.

  Multi-Scale and Uniform set several (or the only) resolution actions on every frame, so a frame
  may go to several backbones; skipped frames and the policy-head action go to none.
  """
  return einops.rearrange(actions[..., :num_backbones] > 0, 'b t k -> k (b t)')


def aggregate(resolution_logits: jax.Array, actions: jax.Array) -> dict:
  """Masked selection and averaging.

  resolution_logits `[B, T, R, C]`, actions `[B, T, A]` (the first R are resolution actions) ->
  logits `[B, C]` = sum of selected frame logits / max(1, #selected), frame_logits `[B, T, C]`,
  processed `[B, T]`.
  """
  r = resolution_logits.shape[2]
  selected = actions[..., :r]
  frame_logits = jnp.einsum('btr,btrc->btc', selected, resolution_logits)
  processed = selected.sum(-1)
  count = jnp.maximum(processed.sum(1), 1.0)
  return dict(logits=frame_logits.sum(1) / count[:, None], frame_logits=frame_logits,
              processed=processed)


class LSTMBaseline(nn.Module):
  """The paper's LSTM baseline: backbone features -> LSTM -> per-frame head, averaged.

  `[B, T, H, W, 3] -> dict(logits [B, C], ...)`. Children: `backbone` (a Classifier whose head is
  unused), `lstm_ih`, `lstm_hh`, `head`.
  """
  num_classes: int
  backbone_name: str = 'resnet50'
  resolution: int = 224
  lstm_hidden: int = 512
  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  dropout_rate: float = 0.5
  resize_method: str = 'nearest'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, video: jax.Array, *, train: bool = False, **unused) -> dict:
    b, t = video.shape[:2]
    net = backbones.create_backbone(
        self.backbone_name, width_multiplier=self.width_multiplier,
        depth_multiplier=self.depth_multiplier, dtype=self.dtype,
        name='backbone')
    frames = resize(einops.rearrange(video, 'b t h w c -> (b t) h w c'), self.resolution,
                    self.resize_method)
    features = einops.rearrange(net(frames, train), '(b t) f -> b t f', b=b)
    init = policy_lib.lstm_uniform_init(self.lstm_hidden)
    gates = nn.Dense(4 * self.lstm_hidden, kernel_init=init, bias_init=init,
                     name='lstm_ih')(features)
    hh = self.param('lstm_hh', init, (self.lstm_hidden, 4 * self.lstm_hidden))

    def step(carry, g):
      carry = policy_lib.lstm_step(carry, g, hh)
      return carry, carry[1]
    zeros = jnp.zeros((b, self.lstm_hidden), gates.dtype)
    _, hidden = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(gates, 0, 1))
    hidden = nn.Dropout(self.dropout_rate)(jnp.swapaxes(hidden, 0, 1), deterministic=not train)
    frame_logits = nn.Dense(self.num_classes, kernel_init=backbones.head_init, name='head')(hidden)
    ones = jnp.ones((b, t, 1))
    return dict(logits=frame_logits.mean(1), frame_logits=frame_logits, processed=ones[..., 0],
                actions=ones, decided=jnp.ones((b, t), bool), action_logits=jnp.zeros((b, t, 1)))
