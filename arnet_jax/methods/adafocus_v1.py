"""AdaFocus V1 (Wang et al., ICCV 2021), AdaFocus+ and their baselines as registry entries.

| variant             | model mode          | what runs on each frame                           |
|---------------------|---------------------|---------------------------------------------------|
| adafocus_v1         | focus               | glance, patch policy (argmax), local CNN on patch |
| adafocus_v1_random  | random              | glance, local CNN on a uniformly random patch     |
| adafocus_v1_uniform | uniform             | the local CNN on the whole frame (a TSN)          |
| adafocus_v1_plus    | focus + skip policy | V1, the local CNN where the skip policy says so   |

Model: `arnet_jax.models.adafocus_v1` (glance, actor-critic patch policy over a grid of
corners, integer crop, local CNN, GRU classifier). The stages (the authors' `main_dist.py`
`train_stage` 0-3; DESIGN.md section 2), each a registry stage with its own settings group:

  warmup    stage 0: both CNNs on whole frames, each with its head, as a TSN (per-frame logits
            averaged): L = CE(mean_t global) + CE(mean_t local). The authors fine-tune each
            ImageNet CNN so, one at a time; here both at once (AdaFocusV2's warm-up).
  random    stage 1: the local CNN and the classifier on uniformly random patches, the global
            CNN frozen (in evaluation mode): L = CE averaged over B x T of every step's logits.
  policy    stage 2: the patch policy alone by PPO (`arnet_jax.ppo`), every other part frozen
            in evaluation mode. Reward r_t = p_y(chosen patch) - p_y(a random patch), both
            classified from the same classifier state (the random pass does not advance it);
            gamma 0.7, normalised returns, clip 0.2, value 0.5, entropy 0.01, Adam 3e-4 at a
            constant rate. Their one update per sampled batch makes it A2C (`arnet_jax.ppo`).
            Its evaluations (and best checkpoint) are of the most probable patches.
  finetune  stage 3: the classifier on the policy's argmax patches (the authors' code; the
            paper also fine-tunes the local CNN: `model.finetune_local`), per-step CE.
  skip      AdaFocus+ only, after finetune: the skip policy alone by the same PPO, reward on a
            processed frame p_y(after it) - p_y(before it) - `train.skip_cost`, 0 on a skipped
            one (AdaFocus+ was never released: this follows the authors' article, see
            docs/adafocus_v1.md).

Learning rates: the stage's `lr` times a multiplier per part (`train.global_lr_mult`,
`local_lr_mult`, `policy_lr_mult`, `classifier_lr_mult`, as AdaFocusV2's), weight decay on every
parameter of an SGD stage (the authors' SGD), none under Adam.

GFLOPs per frame (`cost_table`, multiply-accumulates as the papers count them): the glance
(global CNN + its head) is the table's policy CNN and the policies' steps its "LSTM" part, paid
on every frame; the one action `glance+focus@P` is the local CNN at P with its head and a
classifier step, paid on every frame it reads (AdaFocus+: not on skipped frames).

Inference: masked (every frame's patch in one batched call), except AdaFocus+, whose local CNN
reads only the processed frames' patches, in buckets (`eval.plan`): the GFLOPs it skips are
time saved.

The recipe's comparison (`recipe_rows`): Uniform on the warm-up's weights; Random patches and
AdaFocus V1 with the policy stage's weights (the same classifier: does the learned patch
matter?); AdaFocus V1 after fine-tuning; AdaFocus+ after its skip stage.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from arnet_jax import flops, losses, models, ppo, registry
from arnet_jax.methods import adafocus_v2
from arnet_jax.models import adafocus_v1 as model_lib

NAME = 'adafocus_v1'
PLUS = f'{NAME}_plus'
MODES = {NAME: 'focus', f'{NAME}_random': 'random', f'{NAME}_uniform': 'uniform', PLUS: 'focus'}
SUMMARIES = {
    NAME: 'AdaFocus V1: a glance at each frame, a reinforcement-learned patch policy over a grid, '
          'a local CNN on the patch',
    f'{NAME}_random': "AdaFocus V1's networks on uniformly random patches (no policy)",
    f'{NAME}_uniform': "Uniform: AdaFocus V1's local CNN on every whole frame (a TSN)",
    PLUS: 'AdaFocus+: AdaFocus V1 with a second policy that skips frames (never released by the '
          'authors; from their article)',
}
RECIPE_ROWS = (  # (row name, variant, stage whose weights it uses)
    ('Uniform (local CNN, whole frames)', f'{NAME}_uniform', 'warmup'),
    ('Random patches (stage-2 classifier)', f'{NAME}_random', 'policy'),
    ('AdaFocus V1 after stage 2', NAME, 'policy'),
    ('AdaFocus V1', NAME, 'finetune'),
)
PLUS_ROW = ('AdaFocus+ (frame skipping)', PLUS, 'skip')
PARTS = {  # the model's top-level children -> their part and learning-rate multiplier
    'backbone_0': ('global', 'global_lr_mult'), 'backbone_1': ('local', 'local_lr_mult'),
    'policy': ('policy', 'policy_lr_mult'), 'skip_policy': ('skip_policy', 'policy_lr_mult'),
    'classifier': ('classifier', 'classifier_lr_mult')}


def _create_model(c: ml_collections.ConfigDict) -> model_lib.AdaFocusV1:
  return model_lib.AdaFocusV1(
      c.num_classes, global_backbone=c.global_backbone, global_resolution=c.global_resolution,
      local_backbone=c.local_backbone, patch_size=int(c.patch_sizes[0]),
      policy_channels=c.policy_channels, policy_hidden=c.policy_hidden,
      classifier_hidden=c.classifier_hidden, grid=c.grid, policy_actions=c.policy_actions,
      policy_std=c.policy_std, skip_policy=c.variant == PLUS,
      width_multiplier=c.width_multiplier, depth_multiplier=c.depth_multiplier,
      dropout_rate=c.dropout, mode=MODES[c.variant], dtype=models.dtype(c.dtype))


def _action_names(c: ml_collections.ConfigDict) -> tuple[str, ...]:
  if MODES[c.variant] == 'uniform':
    return (f'local@{c.frame_resolution}',)
  return (f'glance+focus@{int(c.patch_sizes[0])}',)


def _cost_table(c: ml_collections.ConfigDict, convention: str = 'paper') -> flops.CostTable:
  """GFLOPs per frame of the action, the glance and the policies (the module docstring)."""
  del convention  # the papers' figures are multiply-accumulates: 'macs'
  wd = dict(width_multiplier=c.width_multiplier, depth_multiplier=c.depth_multiplier)
  classes = c.num_classes
  if MODES[c.variant] == 'uniform':
    return adafocus_v2.whole_frame_table(c, _action_names(c))
  glance = adafocus_v2.glance_gflops(c)
  h, w, g = adafocus_v2.map_shape(c)
  policy_gflops = 0.0
  if MODES[c.variant] != 'random':
    outputs = c.grid ** 2 if c.policy_actions == 'grid' else 2
    policies = [model_lib.ActorCritic(outputs, c.policy_channels, c.policy_hidden)]
    if c.variant == PLUS:
      policies.append(model_lib.ActorCritic(1, c.policy_channels, c.policy_hidden))
    policy_gflops = sum(flops.count_ops(p, (1, 1, h, w, g)).gflops('macs') for p in policies)
  features = g + flops.num_features(c.local_backbone, **wd)
  # A classifier step: its GRU on one feature vector (counted), then its head (Dense D -> C).
  classifier = model_lib.RecurrentClassifier(classes, c.classifier_hidden, 0.0)
  classifier_gflops = (flops.count_ops(classifier, (1, 1, features)).gflops('macs')
                       + c.classifier_hidden * classes / 1e9)
  focus = flops.backbone_gflops(c.local_backbone, int(c.patch_sizes[0]), classes,
                                convention='macs', **wd) + classifier_gflops
  return flops.CostTable(_action_names(c), (focus,), glance, policy_gflops, 'macs')


def _inference(model, config: ml_collections.ConfigDict):
  if model.skip_policy:  # the local CNN on the processed frames only
    from arnet_jax.models import routing  # pylint: disable=g-import-not-at-top
    model = model.clone(sparse_plan=routing.resolve_plan(config.eval.plan))
  return registry.masked_inference(model, config)


def _validate(c: ml_collections.ConfigDict) -> None:
  adafocus_v2.validate_networks(c)
  sizes = tuple(c.patch_sizes)
  if len(sizes) != 1 or not 1 <= int(sizes[0]) <= c.frame_resolution:
    raise ValueError(f'model.patch_sizes={sizes}: AdaFocus V1 reads one patch side, in '
                     f'1 .. model.frame_resolution={c.frame_resolution}; give one, e.g. (128,).')
  if c.grid < 2:
    raise ValueError(f'model.grid must be >= 2 corners per side, got {c.grid}.')
  if not c.policy_std > 0:
    raise ValueError(f'model.policy_std must be > 0, got {c.policy_std}.')


# --- The stages. ---------------------------------------------------------------------------------

def classifier_loss(out: dict, labels: jax.Array, ctx: registry.LossContext
                    ) -> tuple[jax.Array, dict]:
  """Stages 1 and 3: CE of every step's logits, averaged over B x T (the authors' GRU
  classifier loss)."""
  del ctx
  ce = losses.per_step_cross_entropy(out['step_logits'], labels)
  return ce, dict(ce_steps=ce)


def label_confidence(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """`[B, T, C]` logits, `[B]` labels -> `[B, T]` softmax probability of the label."""
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(p, labels[:, None, None].astype(jnp.int32), axis=-1)[..., 0]


def patch_rewards(out: dict, labels: jax.Array) -> jax.Array:
  """Stage 2's `[B, T]` rewards: p_y with the chosen patch - p_y with a random one."""
  return jax.lax.stop_gradient(label_confidence(out['step_logits'], labels)
                               - label_confidence(out['random_step_logits'], labels))


def skip_rewards(out: dict, labels: jax.Array, skip_cost: float) -> jax.Array:
  """AdaFocus+'s `[B, T]` rewards: on a processed frame the gain in p_y minus its price, 0 on a
  skipped frame."""
  gain = label_confidence(out['step_logits'], labels) - label_confidence(out['prior_logits'],
                                                                         labels)
  return jax.lax.stop_gradient(jnp.where(out['processed'], gain - skip_cost, 0.0))


def _ppo(ctx: registry.LossContext, log_prob, value, entropy, rewards) -> tuple[jax.Array, dict]:
  t = ctx.train
  return ppo.ppo_loss(log_prob, value, entropy, rewards, gamma=t.ppo_gamma, clip=t.ppo_clip,
                      value_weight=t.ppo_value_weight, entropy_weight=t.ppo_entropy_weight)


def policy_loss(out: dict, labels: jax.Array, ctx: registry.LossContext
                ) -> tuple[jax.Array, dict]:
  """Stage 2: PPO on the patch policy (module docstring)."""
  return _ppo(ctx, out['log_prob'], out['value'], out['entropy'], patch_rewards(out, labels))


def skip_loss(out: dict, labels: jax.Array, ctx: registry.LossContext
              ) -> tuple[jax.Array, dict]:
  """AdaFocus+: PPO on the skip policy's decisions from step 1 on (step 0 is always read)."""
  rewards = skip_rewards(out, labels, ctx.train.skip_cost)[:, 1:]
  loss, parts = _ppo(ctx, out['skip_log_prob'][:, 1:], out['skip_value'][:, 1:],
                     out['skip_entropy'][:, 1:], rewards)
  return loss, dict(parts, processed=jnp.mean(out['processed'].astype(jnp.float32)))


def param_group(config: ml_collections.ConfigDict, path: tuple[str, ...]) -> registry.ParamGroup:
  if path[0] not in PARTS:
    raise ValueError(f'AdaFocus V1 has no learning-rate multiplier for parameter '
                     f'{"/".join(path)}; its parts: {", ".join(PARTS)}.')
  adam = config[config.stage].get('optimizer', 'sgd') == 'adam'
  return registry.ParamGroup(lr_mult=float(config.train[PARTS[path[0]][1]]),
                             weight_decay=not adam)


def _trains(*parts: str):
  """`frozen` of a stage that trains `parts` (names of `PARTS`' values)."""
  return lambda config, path: PARTS.get(path[0], ('',))[0] not in parts


def _finetune_parts(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return ('classifier', 'local') if config.model.finetune_local else ('classifier',)


def _v1_stage(mode: str, *parts: str):
  """The module of a stage of AdaFocus V1 itself: AdaFocus+ trains these without its skip
  policy (every frame read), which its own stage adds after them."""
  return lambda model, config: model.clone(mode=mode, train_parts=parts, skip_policy=False)


STAGES = (
    registry.Stage('warmup', adafocus_v2.warmup_loss, param_group=param_group,
                   module=_v1_stage('warmup'), frozen=_trains('global', 'local')),
    registry.Stage('random', classifier_loss, param_group=param_group, starts_from='warmup',
                   module=_v1_stage('random', 'local', 'classifier'),
                   frozen=_trains('local', 'classifier')),
    registry.Stage('policy', policy_loss, param_group=param_group, starts_from='random',
                   module=_v1_stage('ppo', 'policy'), eval_module=_v1_stage('focus'),
                   frozen=_trains('policy')),
    registry.Stage('finetune', classifier_loss, param_group=param_group, starts_from='policy',
                   module=lambda model, config: _v1_stage('focus', *_finetune_parts(config))(
                       model, config),
                   frozen=lambda config, path: _trains(*_finetune_parts(config))(config, path)),
)
SKIP_STAGE = registry.Stage(
    'skip', skip_loss, param_group=param_group, starts_from='finetune',
    module=lambda model, config: model.clone(mode='skip_ppo', train_parts=('skip_policy',)),
    eval_module=lambda model, config: model.clone(mode='focus'), frozen=_trains('skip_policy'))


def _torch_layout(c: ml_collections.ConfigDict, keys):
  from arnet_jax.methods import adafocus_v1_torch  # pylint: disable=g-import-not-at-top
  return adafocus_v1_torch.torch_layout(c, keys)


for _variant in MODES:
  _plus = _variant == PLUS
  registry.register(registry.Method(
      name=_variant, summary=SUMMARIES[_variant], create_model=_create_model,
      input_resolution=lambda c: int(c.frame_resolution), action_names=_action_names,
      cost_table=_cost_table, stages=STAGES + (SKIP_STAGE,) if _plus else STAGES,
      inference=_inference, validate=_validate,
      torch_layout=_torch_layout if _variant == NAME else None,
      recipe_rows=(RECIPE_ROWS + (PLUS_ROW,) if _plus else
                   RECIPE_ROWS if _variant == NAME else ())))
