"""AdaFocusV2 and its baselines as registry entries (`model.variant`), on one set of parameters.

| variant              | model mode | what runs on each frame                                  |
|----------------------|------------|----------------------------------------------------------|
| adafocus_v2          | focus      | glance, policy, local CNN on the policy's patch          |
| adafocus_v2_random   | random     | glance, local CNN on a uniformly random patch            |
| adafocus_v2_uniform  | uniform    | the local CNN on the whole frame (a TSN; the Uniform row) |

Model: `arnet_jax.models.adafocus_v2` (glance, patch policy, focus, running-max classifier).

Stage 'warmup' (ours, not the authors'): both CNNs trained on whole frames with their heads,
each as a TSN (AR-Net's warm-up), L = CE(mean_t global logits) + CE(mean_t local logits). It
stands in for the authors' ImageNet initialisation where there is none (the demo, trained from
scratch); the recipe
(`config.mode=recipe`) runs it before 'joint', which starts from its weights (the policy and the
classifier initialised afresh). With ImageNet weights, train 'joint' alone, as the authors do
(`config.mode=train`, `config.stage=joint`, `init.backbones`; configs/adafocus_v2.py).

Stage 'joint' (the authors' `main_v2.py`), with CE the cross-entropy averaged over B x T:

  L = 1/2 [CE(step heads) + CE(global head) + CE(local head)]    on the policy's patches
    + 1/2 [CE(step heads) + CE(global head) + CE(local head)]    on uniformly random patches

(the global head is the same in both halves). SGD with momentum, weight decay on every
parameter and learning-rate multipliers per part (`train.policy_lr_mult` 0.1 for the policy,
`global_lr_mult` 0.5 for the global CNN and its head, `local_lr_mult` 1 for the local CNN and its
head, `classifier_lr_mult` 5 for the classifier), cosine schedule (configs/adafocus_v2.py).

GFLOPs per frame (`cost_table`), counted from the model's modules with `flops.count_ops`: the
AdaFocus papers' figures are multiply-accumulates of convolutions and linear layers (the
authors' per-frame constants are these to 1e-4), so both conventions count exactly that. The
glance (global CNN + its head) is the table's policy CNN, the patch policy (1x1 conv, Dense,
GRU, corner head) its "LSTM" part, both paid on every frame; the action `glance+focus@P` is
the local CNN at P with its head and the classifier (Dense + one step head).

The baselines' tables: Random patches as AdaFocusV2 without the policy, Uniform one action
(`local@H`, the local CNN on the H x H frame) and no glance.

Inference: masked (`registry.masked_inference`): every frame's patch through the local CNN in
one batched call per patch side, which is all there is to compute; `eval.frames_per_call`
splits each CNN's call into a scan over chunks of that many frames (patches), which a CPU runs
faster (`model.frames_per_call`).

The recipe's comparison (`RECIPE_ROWS`): Uniform on the warm-up's weights, Random patches and
AdaFocusV2 on the joint stage's.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from arnet_jax import flops, losses, models, registry
from arnet_jax.models import adafocus_v2 as model_lib
from arnet_jax.models import crop

NAME = 'adafocus_v2'
STAGE = 'joint'
MODES = {NAME: 'focus', f'{NAME}_random': 'random', f'{NAME}_uniform': 'uniform'}
RECIPE_ROWS = (  # (row name, variant, stage whose weights it uses)
    ('Uniform (local CNN, whole frames)', f'{NAME}_uniform', 'warmup'),
    ('Random patches', f'{NAME}_random', STAGE),
    ('AdaFocusV2', NAME, STAGE),
)
SUMMARIES = {
    NAME: 'AdaFocusV2: a glance at each frame, then a local CNN on one differentiably cropped '
          'patch',
    f'{NAME}_random': "AdaFocusV2's networks on uniformly random patches (no policy)",
    f'{NAME}_uniform': "Uniform: AdaFocusV2's local CNN on every whole frame (a TSN)",
}


def _create_model(c: ml_collections.ConfigDict) -> model_lib.AdaFocusV2:
  return model_lib.AdaFocusV2(
      c.num_classes, global_backbone=c.global_backbone, global_resolution=c.global_resolution,
      local_backbone=c.local_backbone, patch_sizes=tuple(int(p) for p in c.patch_sizes),
      policy_channels=c.policy_channels, policy_hidden=c.policy_hidden,
      classifier_hidden=c.classifier_hidden, frame_order=c.frame_order,
      width_multiplier=c.width_multiplier, depth_multiplier=c.depth_multiplier,
      dropout_rate=c.dropout, mode=MODES[c.variant], crop_sampling=c.crop_sampling,
      dtype=models.dtype(c.dtype))


def _action_names(c: ml_collections.ConfigDict) -> tuple[str, ...]:
  if MODES[c.variant] == 'uniform':
    return (f'local@{c.frame_resolution}',)
  return tuple(f'glance+focus@{p}' for p in model_lib.distinct_patch_sizes(c.patch_sizes))


def _cost_table(c: ml_collections.ConfigDict, convention: str = 'paper') -> flops.CostTable:
  """GFLOPs per frame of each action, the glance and the policy (see the module docstring)."""
  del convention  # the papers' figures are MACs of convolutions and linear layers: 'macs'
  wd = dict(width_multiplier=c.width_multiplier, depth_multiplier=c.depth_multiplier)
  classes = c.num_classes
  if MODES[c.variant] == 'uniform':
    return whole_frame_table(c, _action_names(c))
  glance = glance_gflops(c)
  h, w, g = map_shape(c)
  # One step of each (per frame): the policy on one map, the classifier on one feature vector.
  policy = model_lib.FocusPolicy(c.policy_channels, c.policy_hidden)
  policy_gflops = flops.count_ops(policy, (1, 1, h, w, g)).gflops('macs')
  features = g + flops.num_features(c.local_backbone, **wd)
  classifier = model_lib.StepClassifier(classes, c.classifier_hidden, 0.0)
  classifier_gflops = flops.count_ops(classifier, (1, 1, features)).gflops('macs')
  focus = tuple(flops.backbone_gflops(c.local_backbone, p, classes, convention='macs', **wd)
                + classifier_gflops for p in model_lib.distinct_patch_sizes(c.patch_sizes))
  if MODES[c.variant] == 'random':
    policy_gflops = 0.0
  return flops.CostTable(_action_names(c), focus, glance, policy_gflops, 'macs')


def whole_frame_table(c: ml_collections.ConfigDict, action_names) -> flops.CostTable:
  """The Uniform baselines' table: one action, the local CNN (+ head) on the whole frame."""
  whole = flops.backbone_gflops(c.local_backbone, c.frame_resolution, c.num_classes,
                                convention='macs', width_multiplier=c.width_multiplier,
                                depth_multiplier=c.depth_multiplier)
  return flops.CostTable(tuple(action_names), (whole,), 0.0, 0.0, 'macs')


def glance_gflops(c: ml_collections.ConfigDict) -> float:
  """The glance per frame: the global CNN (+ head) at `global_resolution`."""
  return flops.backbone_gflops(c.global_backbone, c.global_resolution, c.num_classes,
                               convention='macs', width_multiplier=c.width_multiplier,
                               depth_multiplier=c.depth_multiplier)


def map_shape(c: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(h, w, G): the global CNN's last feature map at `global_resolution`."""
  net = models.create_backbone(c.global_backbone, pool=False, width_multiplier=c.width_multiplier,
                               depth_multiplier=c.depth_multiplier)
  x = jax.ShapeDtypeStruct((1, c.global_resolution, c.global_resolution, 3), jnp.float32)
  out = jax.eval_shape(lambda x: net.init_with_output(jax.random.key(0), x)[0], x)
  return tuple(out.shape[1:])


def _inference(model, config: ml_collections.ConfigDict):
  return registry.masked_inference(model.clone(frames_per_call=config.eval.frames_per_call),
                                   config)


def exit_running(out: dict, c: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """A forward's running predictions (`registry.Exit.running`), in step order: head k after
  steps 0..k (focus, random); Uniform's mean of the local head's logits over the frames read so
  far in `frame_order` (the exit program's order). Every step has one."""
  if 'step_logits' in out:
    running = out['step_logits']
  else:
    logits = out['local_logits']
    t = logits.shape[1]
    order = np.asarray(model_lib.frame_indices(c.frame_order, t))
    running = jnp.cumsum(logits[:, order], axis=1) / jnp.arange(1, t + 1)[None, :, None]
  return running, jnp.ones(running.shape[:2], bool)


def _exit_inference(model, config: ml_collections.ConfigDict):
  from arnet_jax.models import exit_adafocus_v2, routing  # pylint: disable=g-import-not-at-top
  return exit_adafocus_v2.exit_inference_fn(model, group=config.exit.group_frames,
                                            confidence=config.exit.confidence,
                                            plan=routing.resolve_plan(config.exit.plan))


def validate_networks(c: ml_collections.ConfigDict) -> None:
  """The AdaFocus methods' CNN and glance settings: a ValueError naming a bad one."""
  if c.global_backbone not in model_lib.GLOBAL_BACKBONES:
    raise ValueError(f'model.global_backbone: {c.global_backbone!r} is not one of '
                     f'{", ".join(model_lib.GLOBAL_BACKBONES)} (a CNN whose last feature map '
                     'the policy reads).')
  if c.local_backbone not in models.BACKBONES:
    raise ValueError(f'model.local_backbone: unknown backbone {c.local_backbone!r}; choose '
                     f'from {", ".join(models.BACKBONES)}.')
  if not 1 <= c.global_resolution:
    raise ValueError(f'model.global_resolution must be >= 1, got {c.global_resolution}.')


def _validate(c: ml_collections.ConfigDict) -> None:
  validate_networks(c)
  if c.crop_sampling not in crop.SAMPLINGS:
    raise ValueError(f'model.crop_sampling must be one of {crop.SAMPLINGS}, got '
                     f'{c.crop_sampling!r}.')
  if c.frame_order not in model_lib.FRAME_ORDERS:
    raise ValueError(f'model.frame_order must be one of {model_lib.FRAME_ORDERS}, got '
                     f'{c.frame_order!r}.')
  sizes = tuple(c.patch_sizes)
  if not sizes or any(not 1 <= int(p) <= c.frame_resolution for p in sizes):
    raise ValueError(f'model.patch_sizes={sizes}: give one side, or one per step, each in '
                     f'1 .. model.frame_resolution={c.frame_resolution}.')


# --- The stages. ---------------------------------------------------------------------------------

def warmup_loss(out: dict, labels: jax.Array, ctx: registry.LossContext
                ) -> tuple[jax.Array, dict]:
  """Each CNN with its head trained as a TSN, as AR-Net's warm-up trains its backbones:
  CE(mean over frames of the global head's logits) + CE(the same of the local head's). A
  per-frame loss would ask for the class on frames that do not show it."""
  del ctx
  parts = dict(ce_global=losses.cross_entropy(out['global_logits'].mean(1), labels),
               ce_local=losses.cross_entropy(out['local_logits'].mean(1), labels))
  return parts['ce_global'] + parts['ce_local'], parts


def adafocus_v2_loss(out: dict, labels: jax.Array, ctx: registry.LossContext
                     ) -> tuple[jax.Array, dict]:
  """The authors' loss (see the module docstring) -> (loss, its parts)."""
  del ctx
  ce = losses.per_step_cross_entropy
  parts = dict(ce_steps=ce(out['step_logits'], labels),
               ce_global=ce(out['global_logits'], labels),
               ce_local=ce(out['local_logits'], labels),
               ce_random_steps=ce(out['random_step_logits'], labels),
               ce_random_local=ce(out['random_local_logits'], labels))
  policy_half = parts['ce_steps'] + parts['ce_global'] + parts['ce_local']
  random_half = parts['ce_random_steps'] + parts['ce_global'] + parts['ce_random_local']
  return 0.5 * (policy_half + random_half), parts


PARTS = {  # the model's top-level children -> the learning-rate multiplier they take
    'policy': 'policy_lr_mult', 'backbone_0': 'global_lr_mult', 'backbone_1': 'local_lr_mult',
    'classifier': 'classifier_lr_mult'}


def param_group(config: ml_collections.ConfigDict, path: tuple[str, ...]) -> registry.ParamGroup:
  """The authors' optimiser groups: a multiplier per part, weight decay on every parameter."""
  if path[0] not in PARTS:
    raise ValueError(f'AdaFocusV2 has no learning-rate multiplier for parameter '
                     f'{"/".join(path)}; its parts: {", ".join(PARTS)}.')
  return registry.ParamGroup(lr_mult=float(config.train[PARTS[path[0]]]), weight_decay=True)


# --- The authors' checkpoints. --------------------------------------------------------------------

TORCH_MODULES = (  # (our subtree, the authors' module, what it is), after the `module.` prefix
    (('backbone_0', 'head'), 'global_CNN_fc.1', 'linear'),
    (('backbone_1', 'head'), 'local_CNN_fc.1', 'linear'),
    (('policy', 'conv'), 'policy_stn.encoder.0', 'linear'),
    (('policy', 'conv_bn'), 'policy_stn.encoder.1', 'linear'),
    (('policy', 'fc'), 'policy_stn.encoder.4', 'linear'),
    (('policy', 'fc_bn'), 'policy_stn.encoder.5', 'linear'),
    (('policy', 'gru', 'ih'), 'policy_stn.gru', 'gru_ih'),
    (('policy', 'gru', 'hh'), 'policy_stn.gru', 'gru_hh'),
    (('policy', 'corner'), 'policy_stn.fc.0', 'linear'),
    (('classifier', 'fc'), 'classifier.mlp.layers.0', 'linear'),
    (('classifier', 'fc_bn'), 'classifier.mlp.layers.1', 'linear'),
)


def checkpoint_steps(keys) -> int | None:
  """The number of step heads (T) of an authors' checkpoint, from its keys."""
  heads = {int(m.group(1)) for k in keys
           if (m := re.fullmatch(r'classifier\.classifiers\.(\d+)\.1\.weight', k))}
  return max(heads) + 1 if heads else None


def _torch_layout(c: ml_collections.ConfigDict, keys):
  """An authors' AdaFocusV2 checkpoint (`main_v2.py`'s `state_dict`) -> our variables: the
  global CNN (`global_CNN`, their MobileNetV2's flat names or torchvision's ResNet names) and
  its head `global_CNN_fc.1`, `local_CNN` and `local_CNN_fc.1`, `policy_stn` (encoder, GRU,
  fc) and `classifier` (mlp, one head per step: T from the checkpoint)."""
  from arnet_jax.tools import import_torch as it  # pylint: disable=g-import-not-at-top
  from arnet_jax.tools import torch_names  # pylint: disable=g-import-not-at-top
  mount = torch_names.Mount
  steps = checkpoint_steps(keys) or 16
  s = int(c.frame_resolution)
  expected = models.abstract_variables(_create_model(c), (1, steps, s, s, 3))
  mounts = [mount(('backbone_0', 'features'), 'global_CNN', c.global_backbone),
            mount(('backbone_1', 'features'), 'local_CNN', c.local_backbone)]
  mounts += [mount(ours, theirs, what) for ours, theirs, what in TORCH_MODULES]
  mounts += [mount(('classifier', f'head_{k}'), f'classifier.classifiers.{k}.1', 'linear')
             for k in range(steps)]
  imagenet = 'the ImageNet classification head, unused by AdaFocusV2'
  droppable = {'global_CNN.classifier': imagenet, 'global_CNN.fc': imagenet,
               'local_CNN.fc': imagenet}
  description = (f'model.variant={c.variant}, {steps} steps, global_backbone='
                 f'{c.global_backbone} at {c.global_resolution}, local_backbone='
                 f'{c.local_backbone}, policy {c.policy_channels}/{c.policy_hidden}, '
                 f'classifier_hidden={c.classifier_hidden}, num_classes={c.num_classes}, '
                 f'width/depth multipliers {c.width_multiplier}/{c.depth_multiplier}')
  return it.Plan(expected, mounts, droppable, description=description)


STAGES = (
    registry.Stage('warmup', warmup_loss, module=lambda model, config: model.clone(mode='warmup'),
                   param_group=param_group),
    registry.Stage(STAGE, adafocus_v2_loss, param_group=param_group, starts_from='warmup'),
)

for _variant in MODES:
  registry.register(registry.Method(
      name=_variant, summary=SUMMARIES[_variant], create_model=_create_model,
      input_resolution=lambda c: int(c.frame_resolution), action_names=_action_names,
      cost_table=_cost_table, stages=STAGES, inference=_inference,
      validate=_validate, torch_layout=_torch_layout if _variant == NAME else None,
      exit=registry.Exit(exit_running, _exit_inference),
      recipe_rows=RECIPE_ROWS if _variant == NAME else ()))
