"""AR-Net and the paper's baselines as registry entries (`config.model.variant`).

| variant          | actions                                   | policy   |
|------------------|-------------------------------------------|----------|
| arnet            | backbones (+ policy head) + skips          | learned  |
| random           | same as arnet                             | uniform  |
| resolution_only  | backbones (+ policy head), no skips        | learned  |
| skip_only        | first backbone + skips                     | learned  |
| multiscale       | every resolution action on every frame     | none     |
|                  | (skips kept, never taken: AR-Net's parameters, so warm-up trains it) |
| uniform          | first backbone on every frame              | none     |
| lstm             | first backbone features -> LSTM -> head    | none     |

Stages (paper 4.1): warmup (every resolution action's classifier trained alone, as a TSN),
joint (the router with its policy), finetune (the policy frozen). Variants without a learned
policy train on cross-entropy in joint and fine-tuning.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from arnet_jax import flops, losses, registry
from arnet_jax import models
from arnet_jax.models import arnet as arnet_lib
from arnet_jax.models import policy as policy_lib

BASELINES = (  # (row name, variant, stage whose weights it uses): the paper's Table 1
    ('Uniform', 'uniform', 'warmup'),
    ('Random policy', 'random', 'finetune'),
    ('Multi-Scale', 'multiscale', 'warmup'),
    ('AR-Net', 'arnet', 'finetune'),
)


@dataclasses.dataclass(frozen=True)
class _Family:
  """How a variant reads `model.backbones` and `skips`, and its policy mode."""
  policy_mode: str
  first_backbone_only: bool = False
  skips: bool = True
  lstm: bool = False


def action_space(model_config: ml_collections.ConfigDict) -> arnet_lib.ActionSpace:
  """The action space of an AR-Net-family `model_config` (see the module docstring)."""
  return _action_space(model_config, _FAMILIES[model_config.variant])


def _action_space(c: ml_collections.ConfigDict, family: _Family) -> arnet_lib.ActionSpace:
  backbones, resolutions = tuple(c.backbones), tuple(c.resolutions)
  policy_action = bool(c.policy_action)
  if family.first_backbone_only:
    if not backbones and family.policy_mode != 'learned':
      raise ValueError(f'model.variant={c.variant!r} needs at least one backbone.')
    backbones, resolutions, policy_action = backbones[:1], resolutions[:1], not backbones
  skips = tuple(c.skips) if family.skips else ()
  return arnet_lib.ActionSpace(backbones, resolutions, policy_action, int(c.policy_resolution),
                               skips)


def _module_kwargs(c: ml_collections.ConfigDict) -> dict:
  return dict(width_multiplier=c.width_multiplier, depth_multiplier=c.depth_multiplier,
              dropout_rate=c.dropout, resize_method=c.resize, dtype=models.dtype(c.dtype),
              lstm_hidden=c.lstm_hidden)


def _create_model(c: ml_collections.ConfigDict):
  family, space = _FAMILIES[c.variant], action_space(c)
  if family.lstm:
    return arnet_lib.LSTMBaseline(c.num_classes, space.backbones[0], space.resolutions[0],
                                  **_module_kwargs(c))
  return arnet_lib.ARNet(c.num_classes, space, family.policy_mode, c.policy_backbone,
                         no_frame_fallback=c.no_frame_fallback, **_module_kwargs(c))


def _cost_table(c: ml_collections.ConfigDict, convention: str = 'paper') -> flops.CostTable:
  """The cost of every action; the policy's only where the model runs its policy network."""
  space = action_space(c)
  wd = dict(width_multiplier=c.width_multiplier, depth_multiplier=c.depth_multiplier)
  gflops = [flops.backbone_gflops(b, r, c.num_classes, convention=convention, **wd)
            for b, r in zip(space.backbones, space.resolutions)]
  model = _create_model(c)
  if isinstance(model, arnet_lib.LSTMBaseline):
    b, r = space.backbones[0], space.resolutions[0]
    gflops[0] = (flops.backbone_gflops(b, r, None, convention=convention, **wd)
                 + flops.lstm_gflops(flops.num_features(b, **wd), c.lstm_hidden, convention)
                 + c.lstm_hidden * c.num_classes / 1e9)
  if space.policy_action:
    gflops.append(c.lstm_hidden * c.num_classes / 1e9)
  gflops += [0.0] * len(space.skips)
  cnn = lstm = 0.0
  if getattr(model, 'uses_policy', False):
    cnn = flops.backbone_gflops(c.policy_backbone, space.policy_resolution, None,
                                convention=convention, **wd)
    lstm = (flops.lstm_gflops(flops.num_features(c.policy_backbone, **wd), c.lstm_hidden,
                              convention)
            + c.lstm_hidden * space.num_actions / 1e9)  # + the action head
  return flops.CostTable(space.names, tuple(gflops), cnn, lstm, convention)


def _inference(model, config: ml_collections.ConfigDict):
  from arnet_jax.models import routing  # pylint: disable=g-import-not-at-top
  ev = config.eval
  engine = dict(policy_chunk=ev.policy_chunk or None)
  if routing.resolve_dispatch(ev.dispatch) == 'device':
    engine.update(plan=routing.resolve_plan(ev.plan), grid_steps=ev.grid_steps)
  else:
    engine.update(capacities=ev.buckets, chunk_size=ev.max_bucket or None)
  return routing.inference_fn(model, routing=ev.routing,
                              dispatch=routing.resolve_dispatch(ev.dispatch), **engine)


def exit_running(out: dict, c: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """A forward's running predictions (`registry.Exit.running`): after frame k, the mean of the
  logits of the frames processed so far (`[B, T, C]`), ready once one was (`[B, T]`); at T the
  video's logits (with its no-frame fallback)."""
  del c
  count = jnp.cumsum(out['processed'], axis=1)
  running = jnp.cumsum(out['frame_logits'], axis=1) / jnp.maximum(count, 1)[..., None]
  return running.at[:, -1].set(out['logits']), count > 0


def _exit_inference(model, config: ml_collections.ConfigDict):
  from arnet_jax.models import exit_arnet, routing  # pylint: disable=g-import-not-at-top
  return exit_arnet.exit_inference_fn(model, group=config.exit.group_frames,
                                      confidence=config.exit.confidence,
                                      plan=routing.resolve_plan(config.exit.plan))


_EXIT = registry.Exit(exit_running, _exit_inference)


def _validate(c: ml_collections.ConfigDict) -> None:
  for field, names in (('backbones', c.backbones), ('policy_backbone', (c.policy_backbone,))):
    unknown = [n for n in names if n not in models.BACKBONES]
    if unknown:
      raise ValueError(f'model.{field}: unknown backbone {unknown[0]!r}; choose from '
                       f'{", ".join(models.BACKBONES)}.')
  action_space(c)  # one resolution per backbone, positive skips, something to classify with


# --- Stages. -------------------------------------------------------------------------------------

def _warmup_loss(out, labels, ctx):
  if 'resolution_logits' not in out:  # the LSTM baseline: one classifier, trained on CE
    return losses.cross_entropy(out['logits'], labels), {}
  return losses.warmup_loss(out['resolution_logits'], labels)


def _policy_loss(out, labels, ctx):
  t = ctx.train
  gflops = ctx.action_gflops * losses.gflops_weight(ctx.action_gflops, t.flops_loss_scale)
  return losses.arnet_loss(out['logits'], labels, out['actions'], gflops, alpha=t.alpha,
                           beta=t.beta, form=t.loss_form)


def _ce_loss(out, labels, ctx):
  del ctx
  return losses.cross_entropy(out['logits'], labels), {}


def _all_actions(model, config):
  """Warm-up trains the Multi-Scale model: every resolution action on every frame, AR-Net's
  parameters, one loss per action."""
  del config
  return model.clone(policy_mode='all') if isinstance(model, arnet_lib.ARNet) else model


def _temperature(config, epoch) -> dict:
  return dict(tau=policy_lib.temperature(epoch, config.train.tau0, config.train.tau_decay))


_WARMUP = registry.Stage(
    'warmup', _warmup_loss, module=_all_actions,
    frozen=lambda config, path: path[:2] == ('policy', 'action_head'))  # no action is chosen


def _stages(learned_policy: bool) -> tuple[registry.Stage, ...]:
  if not learned_policy:
    return (_WARMUP, registry.Stage('joint', _ce_loss, starts_from='warmup'),
            registry.Stage('finetune', _ce_loss, starts_from='joint'))
  return (_WARMUP,
          registry.Stage('joint', _policy_loss, apply_kwargs=_temperature, starts_from='warmup'),
          registry.Stage('finetune', _policy_loss, starts_from='joint',
                         frozen=lambda config, path: path[0] == 'policy',
                         apply_kwargs=lambda config, epoch: dict(_temperature(config, epoch),
                                                                 policy_train=False)))


# --- PyTorch layouts (the original code's checkpoints). -----------------------------------------

def _torch_layout(c: ml_collections.ConfigDict, keys):
  """An original AR-Net-family checkpoint -> the variables of this variant's model."""
  from arnet_jax.tools import import_torch as it  # pylint: disable=g-import-not-at-top
  from arnet_jax.tools import torch_names  # pylint: disable=g-import-not-at-top
  Mount = torch_names.Mount  # pylint: disable=invalid-name
  model, space = _create_model(c), action_space(c)
  s = space.top_resolution
  expected = models.abstract_variables(model, (1, 1, s, s, 3))
  description = (f'model.variant={c.variant}, actions ({space.num_actions}): '
                 f'{", ".join(space.names)}; policy_backbone={c.policy_backbone}, '
                 f'lstm_hidden={c.lstm_hidden}, num_classes={c.num_classes}, '
                 f'width/depth multipliers {c.width_multiplier}/{c.depth_multiplier}')
  present = lambda module: bool(torch_names.under(module, keys))
  unused = 'unused by model.variant=' + c.variant
  if isinstance(model, arnet_lib.LSTMBaseline):  # exp3: lite_backbone -> rnn -> lite_fc
    return it.Plan(expected, [Mount(('backbone',), 'lite_backbone', space.backbones[0]),
                              Mount(('lstm_ih',), 'rnn', 'lstm_ih'),
                              Mount(('lstm_hh',), 'rnn', 'lstm_hh'),
                              Mount(('head',), 'lite_fc', 'linear')],
                   dict.fromkeys(('base_model_list', 'new_fc_list', 'linear'), unused),
                   description=description)
  if model.policy_mode == 'none':  # Uniform
    if not present('base_model') and present('lite_backbone') and not present('base_model_list'):
      # exp2: the "policy" network run frame by frame: lite_backbone -> lite_fc.
      return it.Plan(expected, [Mount(('backbone_0', 'features'), 'lite_backbone',
                                      space.backbones[0]),
                                Mount(('backbone_0', 'head'), 'lite_fc', 'linear')],
                     dict.fromkeys(('rnn', 'linear'), unused), description=description)
    return it.Plan(expected, [Mount(('backbone_0', 'features'), 'base_model', space.backbones[0]),
                              Mount(('backbone_0', 'head'), 'new_fc', 'linear')], {},
                   description=description)
  mounts = []
  for i, arch in enumerate(space.backbones):
    mounts += [Mount((f'backbone_{i}', 'features'), f'base_model_list.{i}', arch),
               Mount((f'backbone_{i}', 'head'), f'new_fc_list.{i}', 'linear')]
  droppable = {}
  if model.uses_policy:
    mounts += [Mount(('policy', 'features'), 'lite_backbone', c.policy_backbone),
               Mount(('policy', 'lstm_ih'), 'rnn', 'lstm_ih'),
               Mount(('policy', 'lstm_hh'), 'rnn', 'lstm_hh'),
               Mount(('policy', 'action_head'), 'linear', 'linear'),
               Mount(('policy', 'lite_head'), 'lite_fc', 'linear')]
  else:
    droppable = dict.fromkeys(('lite_backbone', 'rnn', 'linear', 'lite_fc'), unused)
  # Multi-Scale runs every resolution action: its action head is never used, and the original
  # exp5 was trained with --skip_list 1 (5 actions), so it fits only with model.skips=(1,).
  optional = (('policy', 'action_head'),) if model.policy_mode == 'all' else ()
  return it.Plan(expected, mounts, droppable, optional, description)


# --- The entries. --------------------------------------------------------------------------------

_FAMILIES = {
    'arnet': _Family('learned'),
    'random': _Family('random'),
    'resolution_only': _Family('learned', skips=False),
    'skip_only': _Family('learned', first_backbone_only=True),
    'multiscale': _Family('all'),
    'uniform': _Family('none', first_backbone_only=True, skips=False),
    'lstm': _Family('none', first_backbone_only=True, skips=False, lstm=True),
}
_SUMMARIES = {
    'arnet': 'AR-Net: a learned policy picks a resolution or a skip per frame',
    'random': 'Random policy: uniformly random actions (skips included)',
    'resolution_only': 'AR-Net without skips: the policy picks a resolution per frame',
    'skip_only': 'AR-Net without resolutions: the top backbone or a skip per frame',
    'multiscale': 'Multi-Scale: every resolution on every frame, logits averaged',
    'uniform': 'Uniform: the top backbone on every frame (a TSN)',
    'lstm': 'LSTM: top backbone features through an LSTM, per-frame heads averaged',
}

for _name, _family in _FAMILIES.items():
  registry.register(registry.Method(
      name=_name, summary=_SUMMARIES[_name], create_model=_create_model,
      input_resolution=lambda c: action_space(c).top_resolution,
      action_names=lambda c: action_space(c).names, cost_table=_cost_table,
      stages=_stages(_family.policy_mode == 'learned'),
      inference=_inference if not _family.lstm else registry.masked_inference,
      validate=_validate, torch_layout=_torch_layout,
      learns_actions=_family.policy_mode == 'learned', exit=None if _family.lstm else _EXIT,
      recipe_rows=BASELINES if _name == 'arnet' else ((_SUMMARIES[_name].split(':')[0], _name,
                                                        'finetune'),)))
