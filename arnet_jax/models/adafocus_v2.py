"""AdaFocusV2 (Wang et al., CVPR 2022): glance at each whole frame, focus on one patch of it.

Shape letters: B videos, T frames (= steps), H x W the full frame, R the glance's side,
h x w x G the global CNN's last feature map, P the patch side, F_G / F_L the pooled global /
local features, D the classifier's hidden size, C classes.

Frames are read in a fixed order (`frame_order`: the authors' coarse-to-fine order by
default), and every per-step output is in that order: step k reads frame `order[k]`.
Per step k:
  glance    global CNN on the frame (resized to R, bilinear align_corners=True, when R != H)
            -> map [h, w, G] -> average F_G -> auxiliary head (dropout, Dense C);
  policy    stop_gradient(map) -> 1x1 conv (no bias) -> BN -> tanh -> flatten -> Dense ->
            BN -> tanh -> GRU (causal over the steps, zero initial state) -> Dense 2 ->
            sigmoid: the patch's normalised top-left corner (a_y, a_x) in (0, 1)^2;
  focus     crop the P x P patch (`crop.crop_patches`, differentiable in the corner; bilinear,
            or the nearest slice with `crop_sampling` 'nearest_st' / 'nearest_smooth') ->
            local CNN -> F_L -> auxiliary head;
  classify  Dense(F_G + F_L -> D) -> BN -> ReLU -> running (cumulative) max over steps 0..k ->
            head k (dropout, Dense C). The video's logits are the last step's.
Because of the stop-gradient, the policy's loss reaches the global CNN only through the
classifier and the global head, never through the policy's input; the policy itself learns
through the crop. In training the model also focuses on uniformly random corners (one per
frame, from the 'gumbel' rng stream: the stream of policy randomness), with the same local
CNN and classifier: the authors' second pass, which the loss averages with the first.

Children, named so that `init.backbones = (global CNN, local CNN)` checkpoints load into
their `features`: `backbone_0` (the glance: `features`, `head`), `backbone_1` (the focus:
`features`, `head`), `policy` (`conv`, `conv_bn`, `fc`, `fc_bn`, `gru/ih`, `gru/hh`, `corner`),
`classifier` (`fc`, `fc_bn`, `head_0` .. `head_{T-1}`). New layers take torch's default
initialisation (uniform +-1/sqrt(fan_in)), as the authors' code does. The pieces can be called
per step, for the exit program (`exit_adafocus_v2`), which reads a video group by group:
`glance_rows`, `policy.encode`, `policy.gru.cell`, `policy.locate`, `focus_rows`,
`classifier.embed`, `classifier.head_at`, `whole_frame_logits`, `draw_random_corners`.

`patch_sizes` holds one side for every step or one per step (T entries, in step order); the
frames of each distinct side go through the local CNN in one batched call. The model's
actions are those sides: `actions [B, T, A]` is one-hot of each step's side among the distinct
ones (A = 1 for a single side), every step `decided`. `patch_boxes [B, T, 4]` is the box
(top, left, bottom, right) in pixels of the input frame that the local CNN read on each frame
(at the rounded corner for the nearest crops), in temporal order.

`frames_per_call` (inference only) runs each CNN over chunks of that many frames (patches), a
scan with the same numbers that a CPU runs faster (`per_call`).

`mode` (the same parameters in every mode; a mode creates only the children it runs):
  focus    the method, as above;
  random   uniformly random corners at evaluation too, no policy (the random-patch baseline:
           does the policy's patch matter, with the same classifier?);
  uniform  the local CNN alone on every whole frame, its head's logits averaged over frames
           (the Uniform baseline, a TSN of the local CNN; one action, the full frame);
  warmup   both CNNs on every whole frame, each with its head (`global_logits`,
           `local_logits`), logits as in uniform: the warm-up that stands in for ImageNet
           pre-training where there is none (the demo).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from arnet_jax.models import backbones, buckets, crop, layers

FRAME_ORDERS = ('coarse_to_fine', 'natural')
MODES = ('focus', 'random', 'uniform', 'warmup')
GLOBAL_BACKBONES = ('mobilenet_v2', 'resnet18', 'resnet34', 'resnet50', 'resnet101')


def coarse_to_fine_order(num_frames: int) -> tuple[int, ...]:
  """The authors' frame order (`main_v2.input_order`), every frame once, for any T >= 1.

  First the middle frame floor((T - 1) / 2), the first and the last (each once), then the
  midpoints floor((a + b) / 2) of the intervals between q + 1 evenly spaced frames
  (floor(linspace(0, T - 1, q + 1))) for q = 2, 4, 8, ..., each frame the first time it
  appears. T = 16: 7, 0, 15, 3, 11, 1, 5, 9, 13, 2, 4, 6, 8, 10, 12, 14.
  """
  if num_frames < 1:
    raise ValueError(f'num_frames must be >= 1, got {num_frames}')
  order = list(dict.fromkeys((int((num_frames - 1) // 2), 0, num_frames - 1)))
  q = 2
  while len(order) < num_frames:
    edges = np.floor(np.linspace(0, num_frames - 1, q + 1)).astype(int)
    for a, b in zip(edges[:-1], edges[1:]):
      middle = int((a + b) // 2)
      if middle not in order:
        order.append(middle)
    q *= 2
  return tuple(order)


def frame_indices(frame_order: str, num_frames: int) -> tuple[int, ...]:
  """`[T]` the frame each step reads."""
  if frame_order == 'coarse_to_fine':
    return coarse_to_fine_order(num_frames)
  if frame_order == 'natural':
    return tuple(range(num_frames))
  raise ValueError(f'frame_order must be one of {FRAME_ORDERS}, got {frame_order!r}')


def step_patch_sizes(patch_sizes: Sequence[int], num_frames: int) -> tuple[int, ...]:
  """`[T]` each step's patch side: one side for all steps, or one per step."""
  sizes = tuple(int(p) for p in patch_sizes)
  if len(sizes) == 1:
    return sizes * num_frames
  if len(sizes) != num_frames:
    raise ValueError(f'patch_sizes {sizes} must hold one side, or one per step ({num_frames})')
  return sizes


def distinct_patch_sizes(patch_sizes: Sequence[int]) -> tuple[int, ...]:
  """The model's actions: the distinct patch sides, in order of first appearance."""
  return tuple(dict.fromkeys(int(p) for p in patch_sizes))


def wide(dtype: Any) -> Any:
  """The dtype of the heads, policy and classifier: float32, or float64 for a float64 model."""
  return jnp.promote_types(dtype, jnp.float32)


def torch_dense(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
  """A Dense layer with torch's default `nn.Linear` initialisation (+-1/sqrt(fan_in)); no
  `name` in a `setup` (flax names it after its attribute)."""
  init = layers.uniform_init(fan_in ** -0.5)
  return nn.Dense(features, kernel_init=init, bias_init=init, name=name)


class Branch(nn.Module):
  """A CNN and its auxiliary head (dropout + Dense C, torch default init).

  `__call__`: `[N, S, S, 3]` -> `[N, F]` pooled features (`pool`), or the last map
  `[N, h, w, F]`; `logits`: `[N, F]` -> `[N, C]`. Children `features`, `head`.
  """
  arch: str
  num_classes: int
  dropout_rate: float = 0.2
  pool: bool = True
  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  dtype: Any = jnp.float32

  def setup(self):
    self.features = backbones.create_backbone(
        self.arch, width_multiplier=self.width_multiplier,
        depth_multiplier=self.depth_multiplier, dtype=self.dtype,
        **({} if self.pool else dict(pool=False)))
    self.head = torch_dense(self.num_classes, self.features.num_features, 'head')
    self.dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.features(x, train)

  def logits(self, features: jax.Array, train: bool = False) -> jax.Array:
    return self.head(self.dropout(features, deterministic=not train)).astype(wide(self.dtype))


class GRU(nn.Module):
  """torch's one-layer `nn.GRU(batch_first=True)` from a zero state: `[B, T, I] -> [B, T, H]`.

  Children `ih` (Dense I -> 3H, torch's b_ih) and `hh` (Dense H -> 3H, b_hh), gates in
  torch's order (r, z, n): n = tanh(x W_in + b_in + r (h W_hn + b_hn)), h' = (1 - z) n + z h.
  The steps are unrolled in Python (T is small and static), so FLOP counting sees each one.
  `cell` is one step, for a caller that runs the steps itself (the exit program).
  """
  hidden: int

  def setup(self):
    init = layers.uniform_init(self.hidden ** -0.5)
    self.ih = nn.Dense(3 * self.hidden, kernel_init=init, bias_init=init)
    self.hh = nn.Dense(3 * self.hidden, kernel_init=init, bias_init=init)

  def __call__(self, x: jax.Array) -> jax.Array:
    gates_x = self.ih(x)
    h = jnp.zeros((x.shape[0], self.hidden), gates_x.dtype)
    outputs = []
    for t in range(x.shape[1]):
      h = self.update(h, gates_x[:, t])
      outputs.append(h)
    return jnp.stack(outputs, axis=1)

  def cell(self, h: jax.Array, x: jax.Array) -> jax.Array:
    """One step: state `[B, H]` and input `[B, I]` -> the next state `[B, H]`."""
    return self.update(h, self.ih(x))

  def update(self, h: jax.Array, gates_x: jax.Array) -> jax.Array:
    """The state `[B, H]` after an input whose `ih` gates are `gates_x` `[B, 3H]`."""
    xr, xz, xn = jnp.split(gates_x, 3, axis=-1)
    hr, hz, hn = jnp.split(self.hh(h), 3, axis=-1)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    return (1 - z) * jnp.tanh(xn + r * hn) + z * h


class FocusPolicy(nn.Module):
  """The patch policy: `[B, T, h, w, G]` global maps -> `[B, T, 2]` corners in (0, 1)^2.

  The caller stops the gradient at the input (the authors' `global_feat_map.detach()`).
  The map is flattened in torch's (c, h, w) order (`nn.Flatten` of NCHW), so the `fc` kernel is
  the authors' weight transposed. Per step (the exit program): `encode` each map, `gru.cell`,
  `locate`.
  """
  channels: int = 64
  hidden: int = 2048
  dtype: Any = jnp.float32

  def setup(self):
    self.gru = GRU(self.hidden)
    self.corner = torch_dense(2, self.hidden)

  def __call__(self, feature_map: jax.Array, train: bool = False) -> jax.Array:
    b, t = feature_map.shape[:2]
    x = self.encode(feature_map.reshape(b * t, *feature_map.shape[2:]), train)
    return self.locate(self.gru(x.reshape(b, t, self.hidden)))

  @nn.compact  # the layers' initialisation depends on the map's shape
  def encode(self, feature_map: jax.Array, train: bool = False) -> jax.Array:
    """`[N, h, w, G]` maps -> `[N, hidden]` GRU inputs (1x1 conv, BN, tanh, flatten, Dense,
    BN, tanh)."""
    n, _, _, g = feature_map.shape
    x = layers.conv(self.channels, 1, dtype=self.dtype, name='conv',
                    kernel_init=layers.uniform_init(g ** -0.5))(feature_map.astype(self.dtype))
    x = jnp.tanh(layers.batch_norm(train, dtype=self.dtype, name='conv_bn')(x))
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(n, -1).astype(wide(self.dtype))
    x = torch_dense(self.hidden, x.shape[-1], 'fc')(x)
    return jnp.tanh(layers.batch_norm(train, dtype=wide(self.dtype), name='fc_bn')(x))

  def locate(self, hidden: jax.Array) -> jax.Array:
    """`[..., hidden]` GRU states -> `[..., 2]` corners in (0, 1)^2."""
    return jax.nn.sigmoid(self.corner(hidden))


class StepEmbedding(nn.Module):
  """`[N, F]` -> `[N, D]`: Dense + BN + ReLU, each step's input to the running max. It shares
  its parent's scope, so its layers are the classifier's `fc` and `fc_bn`."""
  hidden: int
  dtype: Any = jnp.float32  # computed in wide(dtype)

  @nn.compact
  def __call__(self, features: jax.Array, train: bool = False) -> jax.Array:
    z = torch_dense(self.hidden, features.shape[-1], 'fc')(features.astype(wide(self.dtype)))
    return nn.relu(layers.batch_norm(train, dtype=wide(self.dtype), name='fc_bn')(z))


class StepClassifier(nn.Module):
  """`[B, T, F]` per-step features -> `[B, T, C]` logits of every step's head.

  Dense(F -> D) + BN + ReLU per step, a running max over steps (step k sees steps 0..k), and
  one head per step (dropout + Dense C): the authors' `PoolingClassifier`. Per step (the exit
  program): `embed` each step's features, the running max, `head_at` the step.
  """
  num_classes: int
  hidden: int = 4096
  dropout_rate: float = 0.2
  dtype: Any = jnp.float32  # computed in wide(dtype)

  def setup(self):
    self.embedding = StepEmbedding(self.hidden, self.dtype)
    nn.share_scope(self, self.embedding)

  @nn.compact  # one head per step: T comes with the input
  def __call__(self, features: jax.Array, train: bool = False) -> jax.Array:
    b, t, f = features.shape
    z = self.embed(features.reshape(b * t, f), train)
    pooled = jax.lax.cummax(z.reshape(b, t, self.hidden), axis=1)
    dropout = nn.Dropout(self.dropout_rate)
    logits = [torch_dense(self.num_classes, self.hidden, f'head_{k}')(
        dropout(pooled[:, k], deterministic=not train)) for k in range(t)]
    return jnp.stack(logits, axis=1)

  def embed(self, features: jax.Array, train: bool = False) -> jax.Array:
    """`[N, F]` one step's features -> `[N, D]` (ReLU: >= 0), the running max's input."""
    return self.embedding(features, train)

  def head_at(self, pooled: jax.Array, step: jax.Array, num_steps: int) -> jax.Array:
    """`[N, D]` running max after step `step` (a traced int) -> `[N, C]` head `step`'s logits
    (evaluation: no dropout). The `num_steps` heads' kernels stacked, indexed on the device."""
    heads = [self.variables['params'][f'head_{k}'] for k in range(num_steps)]
    kernel = jnp.stack([h['kernel'] for h in heads])[step]
    bias = jnp.stack([h['bias'] for h in heads])[step]
    return pooled.astype(wide(self.dtype)) @ kernel + bias


class AdaFocusV2(nn.Module):
  """`[B, T, H, W, 3]` -> dict (see `__call__`). Children: `backbone_0` (glance),
  `backbone_1` (focus), `policy`, `classifier` (see the module docstring)."""
  num_classes: int
  global_backbone: str = 'mobilenet_v2'
  global_resolution: int = 224
  local_backbone: str = 'resnet50'
  patch_sizes: tuple[int, ...] = (128,)
  policy_channels: int = 64
  policy_hidden: int = 2048
  classifier_hidden: int = 4096
  frame_order: str = 'coarse_to_fine'
  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  dropout_rate: float = 0.2
  mode: str = 'focus'
  crop_sampling: str = 'bilinear'
  frames_per_call: int = 0  # inference: frames (patches) per CNN call, a scan (0: all at once)
  dtype: Any = jnp.float32

  def setup(self):
    if self.mode not in MODES:
      raise ValueError(f'mode must be one of {MODES}, got {self.mode!r}')
    if self.global_backbone not in GLOBAL_BACKBONES:
      raise ValueError(f'global_backbone must be one of {GLOBAL_BACKBONES} (a CNN whose last '
                       f'feature map the policy reads), got {self.global_backbone!r}')
    kw = dict(width_multiplier=self.width_multiplier, depth_multiplier=self.depth_multiplier,
              dtype=self.dtype, dropout_rate=self.dropout_rate)
    self.backbone_0 = Branch(self.global_backbone, self.num_classes, pool=False, **kw)
    self.backbone_1 = Branch(self.local_backbone, self.num_classes, **kw)
    self.policy = FocusPolicy(self.policy_channels, self.policy_hidden, self.dtype)
    self.classifier = StepClassifier(self.num_classes, self.classifier_hidden,
                                     self.dropout_rate, self.dtype)

  @property
  def action_sizes(self) -> tuple[int, ...]:
    """The patch side of each action (see `distinct_patch_sizes`)."""
    return distinct_patch_sizes(self.patch_sizes)

  def per_call(self, fn, x: jax.Array, train: bool):
    """`fn(module, x)` on `[N, ...]` rows, `frames_per_call` rows per call at inference.

    A `nn.scan` over chunks (the last padded with copies of the last row, dropped after),
    sharing every variable: the same numbers as one call, in less memory at a time, which a
    CPU runs faster (its caches). Training (batch statistics) and initialisation: one call.
    """
    c, n = self.frames_per_call, x.shape[0]
    if train or not c or n <= c or self.is_initializing():
      return fn(self, x)
    body = nn.scan(lambda m, carry, chunk: (carry, fn(m, chunk)), variable_broadcast=True)
    _, ys = body(self, None, buckets.fixed_chunks(x, c))
    return jax.tree.map(lambda y: y.reshape(-1, *y.shape[2:])[:n], ys)

  def glance(self, frames: jax.Array, train: bool = False) -> dict:
    """`[B, T, H, W, 3]` -> feature_map `[B, T, h, w, G]`, global_features `[B, T, F_G]`,
    global_logits `[B, T, C]`."""
    b, t = frames.shape[:2]
    feature_map, pooled = self.glance_rows(frames.reshape(b * t, *frames.shape[2:]), train)
    return dict(feature_map=feature_map.reshape(b, t, *feature_map.shape[1:]),
                global_features=pooled.reshape(b, t, -1),
                global_logits=self.backbone_0.logits(pooled, train).reshape(b, t, -1))

  def glance_rows(self, frames: jax.Array, train: bool = False
                  ) -> tuple[jax.Array, jax.Array]:
    """`[N, H, W, 3]` frames -> the global CNN's map `[N, h, w, G]` and its average
    `[N, F_G]` (`glance` without the auxiliary head; the exit program's glance)."""
    x = crop.resize_align_corners(frames, self.global_resolution)
    feature_map = self.per_call(lambda m, x: m.backbone_0(x, train), x, train)
    return feature_map, jnp.mean(feature_map.astype(wide(self.dtype)), axis=(1, 2))

  def focus_rows(self, frames: jax.Array, corners: jax.Array, size: int, train: bool = False
                 ) -> jax.Array:
    """`[N, H, W, 3]` frames, `[N, 2]` corners -> `[N, F_L]` the local CNN's features of the
    `size` x `size` patches there."""
    patches = crop.crop_patches(frames, corners, size, self.crop_sampling)
    return self.per_call(lambda m, x: m.backbone_1(x, train), patches.astype(self.dtype), train)

  def whole_frame_logits(self, frames: jax.Array, train: bool = False) -> jax.Array:
    """`[N, H, W, 3]` -> `[N, C]` the local head on whole frames (modes 'uniform', 'warmup')."""
    f = self.per_call(lambda m, x: m.backbone_1(x, train), frames.astype(self.dtype), train)
    return self.backbone_1.logits(f, train)

  def draw_random_corners(self, batch: int, steps: int) -> jax.Array:
    """`[B, T, 2]` uniform corners on [0, 1)^2 from the 'gumbel' rng stream: the random-patch
    pass's (an `apply` of this method alone draws the same ones as the forward's)."""
    return jax.random.uniform(self.make_rng('gumbel'), (batch, steps, 2))

  def focus(self, frames: jax.Array, corners: jax.Array, global_features: jax.Array,
            train: bool = False) -> dict:
    """The patches at `corners` `[B, T, 2]` through the local CNN and the classifier.

    Returns step_logits `[B, T, C]` (head k after steps 0..k) and local_logits `[B, T, C]`.
    """
    b, t = frames.shape[:2]
    sizes = step_patch_sizes(self.patch_sizes, t)
    features, logits, steps = [], [], []
    pick = lambda x, index: x if list(index) == list(range(t)) else x[:, np.asarray(index)]
    for size in distinct_patch_sizes(sizes):  # one local CNN call per patch side
      group = [k for k in range(t) if sizes[k] == size]
      n = len(group)
      f = self.focus_rows(pick(frames, group).reshape(b * n, *frames.shape[2:]),
                          pick(corners, group).reshape(b * n, 2), size, train)
      features.append(f.reshape(b, n, -1))
      logits.append(self.backbone_1.logits(f, train).reshape(b, n, -1))
      steps += group
    back = np.argsort(steps)  # the groups' steps back in step order
    local_features = pick(jnp.concatenate(features, axis=1), back)
    local_logits = pick(jnp.concatenate(logits, axis=1), back)
    both = jnp.concatenate([global_features.astype(wide(self.dtype)),
                            local_features.astype(wide(self.dtype))], axis=-1)
    return dict(step_logits=self.classifier(both, train), local_logits=local_logits)

  def __call__(self, video: jax.Array, *, train: bool = False, corners: jax.Array | None = None,
               random_corners: jax.Array | None = None) -> dict:
    """The forward pass.

    Args:
      video: `[B, T, H, W, 3]` frames in temporal order (read in `frame_order`).
      train: batch statistics and dropout on, and the random-patch pass.
      corners: optional `[B, T, 2]` corners (step order) used instead of the policy's.
      random_corners: optional `[B, T, 2]` corners of the random-patch pass (training, and the
        patches of mode 'random'); by default uniform on [0, 1)^2 from the 'gumbel' rng stream.

    Returns a dict, per step in step order: logits `[B, C]` (the last step's head),
    step_logits `[B, T, C]`, global_logits `[B, T, C]`, local_logits `[B, T, C]`, corners
    `[B, T, 2]` (the patches'), policy_corners `[B, T, 2]` (the policy's), actions `[B, T, A]`
    (one-hot of the step's patch side), decided `[B, T]` (all True), patch_boxes `[B, T, 4]`
    (temporal order); in training also random_corners `[B, T, 2]`, random_step_logits and
    random_local_logits `[B, T, C]`. Modes 'uniform' and 'warmup' return logits, local_logits
    (and, warmup, global_logits) in temporal order, actions, decided and patch_boxes.
    """
    if self.mode in ('uniform', 'warmup'):
      return self.whole_frames(video, train)
    b, t = video.shape[:2]
    order = frame_indices(self.frame_order, t)
    frames = video if order == tuple(range(t)) else video[:, np.asarray(order)]
    glance = self.glance(frames, train)
    if train or self.mode == 'random':
      if random_corners is None:
        random_corners = self.draw_random_corners(b, t)
    if self.mode == 'random':
      policy_corners = random_corners
    else:
      policy_corners = self.policy(jax.lax.stop_gradient(glance['feature_map']), train)
    if corners is None:
      corners = policy_corners
    focus = self.focus(frames, corners, glance['global_features'], train)
    sizes = step_patch_sizes(self.patch_sizes, t)
    actions = jax.nn.one_hot(np.asarray([self.action_sizes.index(p) for p in sizes]),
                             len(self.action_sizes))
    out = dict(logits=focus['step_logits'][:, -1], step_logits=focus['step_logits'],
               global_logits=glance['global_logits'], local_logits=focus['local_logits'],
               corners=corners, policy_corners=policy_corners,
               actions=jnp.broadcast_to(actions, (b, t, len(self.action_sizes))),
               decided=jnp.ones((b, t), bool),
               patch_boxes=patch_boxes(corners, sizes, video.shape[2:4],
                                       rounded=crop.reads_whole_pixels(self.crop_sampling)
                                       )[:, np.argsort(order)])
    if train:
      random = self.focus(frames, random_corners, glance['global_features'], train)
      out.update(random_corners=random_corners, random_step_logits=random['step_logits'],
                 random_local_logits=random['local_logits'])
    return out

  def whole_frames(self, video: jax.Array, train: bool = False) -> dict:
    """Modes 'uniform' and 'warmup': the CNNs on every whole frame, in temporal order."""
    b, t, h, w = video.shape[:4]
    local_logits = self.whole_frame_logits(video.reshape(b * t, h, w, 3), train).reshape(b, t, -1)
    out = dict(logits=local_logits.mean(1), local_logits=local_logits,
               actions=jnp.ones((b, t, 1)), decided=jnp.ones((b, t), bool),
               patch_boxes=jnp.broadcast_to(jnp.asarray([0., 0., h, w]), (b, t, 4)))
    if self.mode == 'warmup':
      out['global_logits'] = self.glance(video, train)['global_logits']
    return out


def patch_boxes(corners: jax.Array, sizes: Sequence[int], frame_shape: Sequence[int],
                rounded: bool = False) -> jax.Array:
  """`[B, T, 2]` normalised corners and `[T]` patch sides -> `[B, T, 4]` boxes (top, left,
  bottom, right) in pixels of an H x W frame: top = a_y (H - P), left = a_x (W - P), as the
  crop reads them (`crop.crop_patches`); `rounded`: to the nearest pixel (half up), as its
  nearest samplings read them."""
  p = jnp.asarray(sizes, corners.dtype)[None, :]
  origin = crop.patch_origin(corners, *frame_shape, p)
  if rounded:
    origin = jnp.floor(origin + 0.5)
  top, left = origin[..., 0], origin[..., 1]
  return jnp.stack([top, left, top + p, left + p], axis=-1)
