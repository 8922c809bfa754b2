"""AdaFocus V1 (Wang et al., ICCV 2021): glance at each whole frame, focus on one patch of it
that a reinforcement-learned policy picks, classify the sequence with a recurrent classifier.

Shape letters: B videos, T frames (= steps, read in temporal order t = 0 .. T - 1), H x W the
full frame, R the glance's side, h x w x G the global CNN's last feature map, P the patch side,
F_G / F_L the pooled global / local features, Q the policies' hidden size, D the classifier's,
A the patch policy's outputs (g^2 grid cells, or 2 for the Gaussian), C classes.

Per step t:
  glance    global CNN on the frame (torch's default `F.interpolate`, nearest, to R when
            R != H) -> map [h, w, G] -> average F_G -> auxiliary head (dropout, Dense C);
  policy    stop_gradient(map) -> 1x1 conv (no bias) -> ReLU -> flatten in (c, h, w) order ->
            Dense Q -> ReLU -> GRU over t (zero initial state) -> actor and critic (Dense 1).
            'grid': the actor's logits over g x g corners {0, 1/(g-1), .., 1}^2, cell k at row
            k // g (a_y), column k % g (a_x); 'gaussian': sigmoid(actor) is the mean corner,
            std `policy_std` per axis;
  focus     the P x P patch at the integer origin (floor(a_y (H - P)), floor(a_x (W - P))), an
            exact slice of the frame (`crop.slice_patches`) -> local CNN -> F_L -> auxiliary
            head (Dense C, no dropout: their ResNet's fc);
  classify  h_t = GRU(h_{t-1}, [F_G, F_L]) (h_{-1} = 0); step logits fc(dropout(h_t)), one fc
            for every step; the video's logits are the last step's.
AdaFocus+ (`skip_policy`, never released by the authors; their article's design): a second
actor-critic of the same shape on the same maps gives the logit of p(process frame t). A skipped
frame is neither focused on nor classified (h_t = h_{t-1}), its action is 0; step 0 is always
processed (a prediction needs one frame). Both policies read every frame's glance.

Children (the importer and the stages rely on the names): `backbone_0` (the glance: `features`,
`head`), `backbone_1` (the focus: `features`, `head`), `policy` (`conv`, `fc`, `gru/ih`,
`gru/hh`, `actor`, `critic`), `skip_policy` (the same, `actor` Dense 1; only with
`skip_policy=True`), `classifier` (`gru/ih`, `gru/hh`, `fc`). New layers take torch's default
initialisation (uniform +-1/sqrt(fan_in)). Initialisation creates every child in every mode.

`train_parts` (from `PARTS`) are the parts a stage trains. A part runs in training mode (batch
statistics, dropout) only with `train=True` and when it is in `train_parts`; the outputs of a
part not in it are `stop_gradient`-ed, so no backward pass runs through a frozen CNN. Mode
'warmup' trains everything.

`mode`:
  warmup   both CNNs on every whole frame with their heads (the glance at R): logits = the mean
           over t of the local head's, global_logits, local_logits (stage 0);
  uniform  the local CNN and head on every whole frame, logits their mean (the Uniform
           baseline);
  random   uniformly random patches (stage 1; the random-patch baseline at evaluation);
  focus    the policy's patches: the grid's most probable cell, or the Gaussian's mean, in
           training too (stage 3); with `skip_policy` a frame is processed where
           p(process) >= 0.5;
  ppo      stage 2: the patch policy samples (a categorical cell; a normal corner clamped to
           [0, 1], the log-probability of the clamped value as the authors') from the 'gumbel'
           rng stream; the classifier advances on the chosen patches; the reward's random patch
           goes through the local CNN and is classified from the same previous state h_{t-1}
           without advancing it (the authors' `test_single_forward`); every frame processed;
  skip_ppo AdaFocus+'s stage: the patch policy as in 'focus', the skip policy samples
           process ~ Bernoulli(p(process)) per step ('gumbel' stream).
Random patches have integer origins uniform on {0, .., H - P} x {0, .., W - P} (the 'gumbel'
stream). The authors' `np.random.randint(0, S - P)` never takes S - P; we include it, so the
far edges are read too.

`sparse_plan` ('' dense; 'binary' | 'grid', inference only: training runs the dense path): with
'' the local CNN reads every frame's patch and skipped frames are masked; otherwise it reads only
the processed frames' (`exits.on_rows`), with the same outputs. The rows it computed are sown as
`intermediates/local_rows` (apply with `mutable=['intermediates']` to read them).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from arnet_jax import ppo
from arnet_jax.models import buckets, crop, exits, layers
from arnet_jax.models.adafocus_v2 import GLOBAL_BACKBONES, GRU, Branch, torch_dense, wide

MODES = ('focus', 'random', 'uniform', 'warmup', 'ppo', 'skip_ppo')
PARTS = ('global', 'local', 'policy', 'skip_policy', 'classifier')
POLICY_ACTIONS = ('grid', 'gaussian')
SPARSE_PLANS = ('', *buckets.DEVICE_PLANS)


def grid_corners(grid: int) -> np.ndarray:
  """`[g^2, 2]` float32 the grid's corners (a_y, a_x): cell k at (k // g, k % g) / (g - 1)."""
  cells = np.arange(grid * grid)
  return (np.stack([cells // grid, cells % grid], -1) / (grid - 1)).astype(np.float32)


def grid_origins(index: jax.Array, grid: int, height: int, width: int, size: int) -> jax.Array:
  """`[...]` cells -> `[..., 2]` int32 pixel origins floor(a (H - P)), floor(a (W - P)).

  In integers, (r (H - P)) // (g - 1): the authors' float32 `floor(a * (S - P))` gives the same
  for every frame side, patch side and grid they use (checked for sides up to 320, g 2 .. 9).
  """
  index = index.astype(jnp.int32)
  cell = jnp.stack([index // grid, index % grid], -1)
  return cell * jnp.asarray([height - size, width - size], jnp.int32) // (grid - 1)


def corner_origins(corners: jax.Array, height: int, width: int, size: int) -> jax.Array:
  """`[..., 2]` corners in [0, 1] -> `[..., 2]` int32 origins floor(a (H - P)), floor(a (W - P))."""
  span = jnp.asarray([height - size, width - size], jnp.float32)
  origin = jnp.floor(corners.astype(jnp.float32) * span)
  return jnp.clip(origin, 0, span).astype(jnp.int32)


def origin_corners(origins: jax.Array, height: int, width: int, size: int) -> jax.Array:
  """`[..., 2]` int origins -> `[..., 2]` float32 normalised corners o / (H - P), o / (W - P)
  (0 where the patch is the whole side)."""
  span = jnp.asarray([height - size, width - size], jnp.float32)
  return origins.astype(jnp.float32) / jnp.maximum(span, 1)


def patch_boxes(origins: jax.Array, size: int) -> jax.Array:
  """`[..., 2]` origins -> `[..., 4]` float32 boxes (top, left, bottom, right) in pixels."""
  top_left = origins.astype(jnp.float32)
  return jnp.concatenate([top_left, top_left + size], axis=-1)


class ActorCritic(nn.Module):
  """A policy of AdaFocus V1: `[B, T, h, w, G]` global maps -> actor outputs `[B, T, A]` and
  critic values `[B, T]`.

  The caller stops the gradient at the input. Per map: 1x1 conv (no bias) -> ReLU -> flatten in
  torch's (c, h, w) order (so `fc`'s kernel is the authors' weight transposed) -> Dense Q ->
  ReLU; then a GRU over t from a zero state, `actor` (Dense A) and `critic` (Dense 1) on its
  states: the authors' `ActorCritic` (its actor's softmax or sigmoid is the caller's).
  """
  outputs: int
  channels: int = 32
  hidden: int = 1024
  dtype: Any = jnp.float32

  def setup(self):
    self.gru = GRU(self.hidden)
    self.actor = torch_dense(self.outputs, self.hidden)
    self.critic = torch_dense(1, self.hidden)

  def __call__(self, feature_map: jax.Array) -> tuple[jax.Array, jax.Array]:
    b, t = feature_map.shape[:2]
    x = self.encode(feature_map.reshape(b * t, *feature_map.shape[2:]))
    states = self.gru(x.reshape(b, t, self.hidden))
    return self.actor(states), self.critic(states)[..., 0]

  @nn.compact  # the layers' initialisation depends on the map's shape
  def encode(self, feature_map: jax.Array) -> jax.Array:
    """`[N, h, w, G]` maps -> `[N, Q]` GRU inputs (1x1 conv, ReLU, flatten, Dense, ReLU)."""
    n, _, _, g = feature_map.shape
    x = layers.conv(self.channels, 1, dtype=self.dtype, name='conv',
                    kernel_init=layers.uniform_init(g ** -0.5))(feature_map.astype(self.dtype))
    x = jnp.transpose(nn.relu(x), (0, 3, 1, 2)).reshape(n, -1).astype(wide(self.dtype))
    return nn.relu(torch_dense(self.hidden, x.shape[-1], 'fc')(x))


class RecurrentClassifier(nn.Module):
  """`[B, T, F]` per-step features -> `[B, T, D]` GRU states h_t (h_{-1} = 0), the state held
  (h_t = h_{t-1}) at steps where `processed` `[B, T]` is False; `logits`: fc(dropout(h)).

  Children `gru` (`ih`, `hh`) and `fc`: the authors' `RecurrentClassifier`, one fc for every
  step's state. `gru.cell` advances one state, for a caller that classifies from h_{t-1}.
  """
  num_classes: int
  hidden: int = 1024
  dropout_rate: float = 0.8
  dtype: Any = jnp.float32  # computed in wide(dtype)

  def setup(self):
    self.gru = GRU(self.hidden)
    self.fc = torch_dense(self.num_classes, self.hidden)
    self.dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, features: jax.Array, processed: jax.Array | None = None) -> jax.Array:
    gates_x = self.gru.ih(features.astype(wide(self.dtype)))
    h = jnp.zeros((features.shape[0], self.hidden), gates_x.dtype)
    states = []
    for t in range(features.shape[1]):  # T is small and static: FLOP counting sees each step
      advanced = self.gru.update(h, gates_x[:, t])
      h = advanced if processed is None else jnp.where(processed[:, t, None], advanced, h)
      states.append(h)
    return jnp.stack(states, axis=1)

  def logits(self, states: jax.Array, train: bool = False) -> jax.Array:
    """`[..., D]` states -> `[..., C]` logits."""
    return self.fc(self.dropout(states, deterministic=not train))


def _features_and_logits(branch: Branch, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A branch at inference on `[N, S, S, 3]`: `[N, F]` pooled features and `[N, C]` logits."""
  features = branch(x)
  return features, branch.logits(features)


class AdaFocusV1(nn.Module):
  """`[B, T, H, W, 3]` -> dict (see `__call__`). Children: `backbone_0` (glance), `backbone_1`
  (focus), `policy`, `skip_policy` (with `skip_policy`), `classifier` (module docstring)."""
  num_classes: int
  global_backbone: str = 'mobilenet_v2'
  global_resolution: int = 224
  local_backbone: str = 'resnet50'
  patch_size: int = 128
  policy_channels: int = 32
  policy_hidden: int = 1024
  classifier_hidden: int = 1024
  grid: int = 7
  policy_actions: str = 'grid'
  policy_std: float = 0.25
  skip_policy: bool = False
  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  global_dropout: float = 0.2
  dropout_rate: float = 0.8  # the classifier's, before its fc
  mode: str = 'focus'
  train_parts: tuple[str, ...] = ()
  sparse_plan: str = ''
  dtype: Any = jnp.float32

  def setup(self):
    checks = (('mode', MODES), ('policy_actions', POLICY_ACTIONS),
              ('sparse_plan', SPARSE_PLANS), ('global_backbone', GLOBAL_BACKBONES))
    for name, allowed in checks:
      if getattr(self, name) not in allowed:
        raise ValueError(f'{name} must be one of {allowed}, got {getattr(self, name)!r}')
    unknown = set(self.train_parts) - set(PARTS)
    if unknown:
      raise ValueError(f'train_parts must be drawn from {PARTS}, got {sorted(unknown)}')
    if self.grid < 2:
      raise ValueError(f'grid must be >= 2 corners per side, got {self.grid}')
    if self.mode == 'skip_ppo' and not self.skip_policy:
      raise ValueError("mode 'skip_ppo' trains the skip policy: set skip_policy=True")
    kw = dict(width_multiplier=self.width_multiplier, depth_multiplier=self.depth_multiplier,
              dtype=self.dtype)
    self.backbone_0 = Branch(self.global_backbone, self.num_classes, pool=False,
                             dropout_rate=self.global_dropout, **kw)
    self.backbone_1 = Branch(self.local_backbone, self.num_classes, dropout_rate=0.0, **kw)
    self.policy = ActorCritic(self.grid ** 2 if self.policy_actions == 'grid' else 2,
                              self.policy_channels, self.policy_hidden, self.dtype)
    self.classifier = RecurrentClassifier(self.num_classes, self.classifier_hidden,
                                          self.dropout_rate, self.dtype)

  @nn.compact  # a child named like the `skip_policy` attribute: made here, not in setup
  def skipper(self) -> ActorCritic:
    """The skip policy (`skip_policy`): its actor's one output is the logit of p(process)."""
    return ActorCritic(1, self.policy_channels, self.policy_hidden, self.dtype,
                       name='skip_policy')

  # --- Parts. -------------------------------------------------------------------------------

  def learns(self, part: str) -> bool:
    """Whether `part` trains in this stage (in `train_parts`, or mode 'warmup')."""
    return self.mode == 'warmup' or part in self.train_parts

  def trains(self, part: str, train: bool) -> bool:
    """Whether `part` runs in training mode (batch statistics, dropout)."""
    return train and self.learns(part)

  def frozen(self, part: str, tree):
    """`tree` without gradient unless `part` learns."""
    return tree if self.learns(part) else jax.tree.map(jax.lax.stop_gradient, tree)

  # --- Pieces. ------------------------------------------------------------------------------

  def glance(self, frames: jax.Array, train: bool = False) -> dict:
    """`[B, T, H, W, 3]` -> feature_map `[B, T, h, w, G]`, global_features `[B, T, F_G]`,
    global_logits `[B, T, C]`."""
    b, t = frames.shape[:2]
    part_train = self.trains('global', train)
    x = crop.resize_nearest(frames.reshape(b * t, *frames.shape[2:]), self.global_resolution)
    feature_map = self.backbone_0(x.astype(self.dtype), part_train)
    pooled = jnp.mean(feature_map.astype(wide(self.dtype)), axis=(1, 2))
    return self.frozen('global', dict(
        feature_map=feature_map.reshape(b, t, *feature_map.shape[1:]),
        global_features=pooled.reshape(b, t, -1),
        global_logits=self.backbone_0.logits(pooled, part_train).reshape(b, t, -1)))

  def focus_rows(self, frames: jax.Array, origins: jax.Array, train: bool = False,
                 rows: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """`[N, H, W, 3]` frames, `[N, 2]` origins -> the local CNN's `[N, F_L]` features and
    `[N, C]` head logits of the patches there; zero where `rows` `[N]` is False (the sparse
    plan computes only the others)."""
    patches = crop.slice_patches(frames, origins, self.patch_size).astype(self.dtype)
    if rows is not None and self.sparse_plan and not train and not self.is_initializing():
      module, variables = self.backbone_1.unbind()  # a pure function inside on_rows' conds
      fn = lambda x: module.apply(variables, x, method=_features_and_logits)
      zeros = jax.tree.map(lambda s: jnp.zeros((patches.shape[0], *s.shape[1:]), s.dtype),
                           jax.eval_shape(fn, patches[:1]))
      (features, logits), count = exits.on_rows(fn, rows, patches, zeros, self.sparse_plan)
    else:
      part_train = self.trains('local', train)
      features = self.backbone_1(patches, part_train)
      logits = self.backbone_1.logits(features, part_train)
      count = jnp.asarray(patches.shape[0], jnp.int32)
      if rows is not None:
        features, logits = (jnp.where(rows[:, None], x, 0) for x in (features, logits))
    if not self.is_initializing():  # no 'intermediates' among the initial variables
      self.sow('intermediates', 'local_rows', count)
    return self.frozen('local', (features, logits))

  def draw_random_origins(self, batch: int, steps: int, height: int, width: int) -> jax.Array:
    """`[B, T, 2]` int32 origins uniform on {0, .., H - P} x {0, .., W - P} ('gumbel' stream)."""
    high = jnp.asarray([height - self.patch_size + 1, width - self.patch_size + 1], jnp.int32)
    return jax.random.randint(self.make_rng('gumbel'), (batch, steps, 2), 0, high)

  # --- Forward. -----------------------------------------------------------------------------

  def __call__(self, video: jax.Array, *, train: bool = False,
               grid_index: jax.Array | None = None, origins: jax.Array | None = None,
               random_origins: jax.Array | None = None, processed: jax.Array | None = None
               ) -> dict:
    """The forward pass.

    Args:
      video: `[B, T, H, W, 3]` frames in temporal order.
      train: training mode for the parts in `train_parts`.
      grid_index: optional `[B, T]` int cells used instead of the grid policy's (its argmax or
        sample); mode 'ppo' gives their log-probabilities (an update on stored actions).
      origins: optional `[B, T, 2]` int pixel origins used instead of the patch policy's (not
        with `grid_index`, nor in mode 'ppo' with the grid policy).
      random_origins: optional `[B, T, 2]` int origins of the random patches (modes 'random',
        'ppo'); by default drawn from the 'gumbel' rng stream.
      processed: optional `[B, T]` bool frames to process instead of the skip policy's
        (`skip_policy` only; step 0 is processed whatever it says).

    Returns a dict, per step in temporal order: logits `[B, C]` (the last step's), step_logits
    `[B, T, C]`, global_logits `[B, T, C]`, local_logits `[B, T, C]` (zero on skipped frames),
    corners `[B, T, 2]` (the normalised corners used), origins `[B, T, 2]` int32, grid_index
    `[B, T]` int32 (the grid policy's cell or `grid_index`; -1 where no cell was chosen: mode
    'random', the Gaussian, `origins`), actions `[B, T, 1]` (1 where the local CNN read a patch),
    decided `[B, T]` (all True), patch_boxes `[B, T, 4]` (top, left, bottom, right in pixels;
    zero on skipped frames), processed `[B, T]` (with `skip_policy`). Mode 'ppo' adds log_prob,
    value, entropy `[B, T]` (the patch policy's, float32) and random_step_logits `[B, T, C]`;
    its step_logits have no gradient. Mode 'skip_ppo' adds skip_log_prob, skip_value,
    skip_entropy `[B, T]` (the skip policy's; log_prob and entropy 0 at step 0, which is not
    sampled) and prior_logits `[B, T, C]` = fc(h_{t-1}), the prediction before step t.
    Modes 'warmup' and 'uniform': logits, local_logits (and, warmup, global_logits), actions,
    decided and patch_boxes (the whole frame).
    """
    if self.mode in ('warmup', 'uniform'):
      out = self.whole_frames(video, train)
      if self.is_initializing():  # every child's variables, in every mode
        self.patches(video, False, 'focus')
      return out
    return self.patches(video, train, 'focus' if self.is_initializing() else self.mode,
                        grid_index=grid_index, origins=origins, random_origins=random_origins,
                        processed=processed)

  def whole_frames(self, video: jax.Array, train: bool = False) -> dict:
    """Modes 'warmup' and 'uniform': the CNNs on every whole frame, with their heads."""
    b, t, h, w = video.shape[:4]
    part_train = self.trains('local', train)
    features = self.backbone_1(video.reshape(b * t, h, w, 3).astype(self.dtype), part_train)
    local_logits = self.frozen('local', self.backbone_1.logits(features, part_train))
    local_logits = local_logits.reshape(b, t, -1)
    out = dict(logits=local_logits.mean(1), local_logits=local_logits,
               actions=jnp.ones((b, t, 1)), decided=jnp.ones((b, t), bool),
               patch_boxes=jnp.broadcast_to(jnp.asarray([0., 0., h, w]), (b, t, 4)))
    if self.mode == 'warmup':
      out['global_logits'] = self.glance(video, train)['global_logits']
    return out

  def patches(self, video: jax.Array, train: bool, mode: str, *,
              grid_index: jax.Array | None = None, origins: jax.Array | None = None,
              random_origins: jax.Array | None = None, processed: jax.Array | None = None
              ) -> dict:
    """Modes 'focus', 'random', 'ppo', 'skip_ppo' (see `__call__`)."""
    b, t, h, w = video.shape[:4]
    p = self.patch_size
    grid = self.policy_actions == 'grid'
    if grid_index is not None and (origins is not None or not grid):
      raise ValueError('grid_index replaces the grid policy\'s cells: not with origins, nor '
                       'with the gaussian policy')
    if mode == 'ppo' and grid and origins is not None:
      raise ValueError("mode 'ppo' with the grid policy takes grid_index, not origins")
    glance = self.glance(video, train)
    maps = jax.lax.stop_gradient(glance['feature_map'])
    out = dict(global_logits=glance['global_logits'])

    if mode in ('random', 'ppo') and random_origins is None:
      random_origins = self.draw_random_origins(b, t, h, w)
    if mode != 'random' or self.is_initializing():
      actor, value = self.frozen('policy', self.policy(maps))
      mean = None if grid else jax.nn.sigmoid(actor.astype(jnp.float32))  # the Gaussian's
    index = jnp.full((b, t), -1, jnp.int32)
    if origins is not None:
      origins = origins.astype(jnp.int32)
      corners = origin_corners(origins, h, w, p)
    elif mode == 'random':
      origins = random_origins.astype(jnp.int32)
      corners = origin_corners(origins, h, w, p)
    elif grid:
      if grid_index is None:
        grid_index = (jax.random.categorical(self.make_rng('gumbel'), actor.astype(jnp.float32))
                      if mode == 'ppo' else jnp.argmax(actor, axis=-1))
      index = grid_index.astype(jnp.int32)
      corners = jnp.asarray(grid_corners(self.grid))[index]
      origins = grid_origins(index, self.grid, h, w, p)
    else:  # the Gaussian: its mean, or a sample clamped to [0, 1] (their ReLU pair)
      corners = mean
      if mode == 'ppo':
        noise = jax.random.normal(self.make_rng('gumbel'), mean.shape, jnp.float32)
        corners = jax.lax.stop_gradient(jnp.clip(mean + self.policy_std * noise, 0, 1))
      origins = corner_origins(corners, h, w, p)
    if mode == 'ppo':
      if grid:
        log_p, entropy = ppo.categorical(actor)
        log_prob = jnp.take_along_axis(log_p, index[..., None], axis=-1)[..., 0]
      else:
        log_prob = ppo.normal_log_prob(corners, mean, self.policy_std)
        entropy = jnp.broadcast_to(ppo.normal_entropy(self.policy_std, 2), (b, t))
      out.update(log_prob=log_prob, value=value.astype(jnp.float32), entropy=entropy)

    process = None
    if self.skip_policy:
      skip_logit, skip_value = self.frozen('skip_policy', self.skipper()(maps))
      skip_logit = skip_logit[..., 0].astype(jnp.float32)
      if processed is not None:
        process = jnp.asarray(processed, bool)
      elif mode == 'ppo':
        process = jnp.ones((b, t), bool)
      elif mode == 'skip_ppo':
        process = jax.random.bernoulli(self.make_rng('gumbel'), jax.nn.sigmoid(skip_logit))
      else:
        process = skip_logit >= 0  # p(process) >= 0.5
      process = process.at[:, 0].set(True)
      if mode == 'skip_ppo':
        sampled = jnp.arange(t) > 0  # step 0 is not a decision
        log_prob, entropy = ppo.bernoulli(skip_logit, process)
        out.update(skip_log_prob=jnp.where(sampled, log_prob, 0),
                   skip_value=skip_value.astype(jnp.float32),
                   skip_entropy=jnp.where(sampled, entropy, 0))
      out['processed'] = process

    flat = lambda x: x.reshape(b * t, *x.shape[2:])
    rows = None if process is None else flat(process)
    local_features, local_logits = self.focus_rows(flat(video), flat(origins), train, rows)
    both = jnp.concatenate([flat(glance['global_features']).astype(wide(self.dtype)),
                            local_features.astype(wide(self.dtype))], axis=-1)
    states = self.frozen('classifier', self.classifier(both.reshape(b, t, -1), process))
    classifier_train = self.trains('classifier', train)
    step_logits = self.frozen('classifier', self.classifier.logits(states, classifier_train))
    previous = jnp.concatenate([jnp.zeros_like(states[:, :1]), states[:, :-1]], axis=1)
    if mode == 'ppo':  # the reward's baseline: a random patch classified from h_{t-1}
      random_features, _ = self.focus_rows(flat(video), flat(random_origins), train)
      random_both = jnp.concatenate([flat(glance['global_features']).astype(wide(self.dtype)),
                                     random_features.astype(wide(self.dtype))], axis=-1)
      random_states = self.classifier.gru.cell(flat(previous), random_both)
      out['random_step_logits'] = jax.lax.stop_gradient(self.classifier.logits(
          random_states, classifier_train).reshape(b, t, -1))
      step_logits = jax.lax.stop_gradient(step_logits)
    if mode == 'skip_ppo':
      out['prior_logits'] = jax.lax.stop_gradient(
          self.classifier.logits(previous, classifier_train))

    read = jnp.ones((b, t), bool) if process is None else process
    out.update(logits=step_logits[:, -1], step_logits=step_logits,
               local_logits=local_logits.reshape(b, t, -1), corners=corners, origins=origins,
               grid_index=index, actions=read[..., None].astype(jnp.float32),
               decided=jnp.ones((b, t), bool),
               patch_boxes=jnp.where(read[..., None], patch_boxes(origins, p), 0))
    return out
