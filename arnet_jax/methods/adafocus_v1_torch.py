"""The authors' AdaFocus V1 checkpoints (`main_dist.py` of "Experiments on ActivityNet, FCVID and
Mini-Kinetics") -> the variables of our AdaFocusV1 (`arnet_jax.models.adafocus_v1`).

Their `save_checkpoint` writes one dict: a state dict per part, `glancer` (the global
MobileNetV2, torchvision's nested names, its ImageNet classifier replaced by
`classifier = Sequential(Dropout, Linear(C))`), `focuser` (the local ResNet-50 `net` with
`fc = Linear(C)`, and the PPO it trains, `policy.policy` / `policy.policy_old`), `fc` (the
RecurrentClassifier: `gru`, `fc`) and `policy` (the trained ActorCritic: `state_encoder` =
1x1 conv (no bias), ReLU, Flatten, Linear, ReLU; `gru`; `actor` = Linear, Softmax; `critic` =
Linear; None when trained on random patches), besides `epoch`, `optimizer`, `best_acc`, ... and
`model_state_dict` (the same weights again, under the GFV model's names). `import_torch.
load_state_dict` flattens the four parts with their names as prefixes
('glancer.net.features.0.0.weight', 'policy.actor.0.weight'); the other entries are not read.

  ours                          theirs
  backbone_0/features           glancer.net.* (MobileNetV2; a ResNet glance: its names)
  backbone_0/head               glancer.net.classifier.1
  backbone_1/features, head     focuser.net.*, focuser.net.fc
  policy/conv, fc               policy.state_encoder.0, policy.state_encoder.3
  policy/gru/ih, hh             policy.gru (weight_ih_l0, ...)
  policy/actor, critic          policy.actor.0, policy.critic.0
  classifier/gru/ih, hh, fc     fc.gru, fc.fc

Dropped with a message: `focuser.policy.*`, the focuser's copies of the actor-critic (PPO's
`policy` and `policy_old`; the checkpoint's `policy` entry is the trained one, from which
their stage 3 reloads both), and a part the configured model does not have. A model with a
skip policy (AdaFocus+, never released) is refused: no authors' checkpoint holds one. The sizes
the checkpoint fixes are read from it (`checkpoint_fields`: the grid, the policy's and the
classifier's widths; the classes through `import_torch.infer_num_classes`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import ml_collections
import numpy as np

from arnet_jax import models

PARTS = ('glancer', 'focuser', 'fc', 'policy')  # the entries `main_dist.py` saves, in order
OURS = {'backbone_0': 'glancer', 'backbone_1': 'focuser', 'classifier': 'fc',
        'policy': 'policy'}  # our top-level subtree -> their part

TORCH_MODULES = (  # (our subtree, their module, what it is); the backbones' heads: `_head`
    (('policy', 'conv'), 'policy.state_encoder.0', 'linear'),
    (('policy', 'fc'), 'policy.state_encoder.3', 'linear'),
    (('policy', 'gru', 'ih'), 'policy.gru', 'gru_ih'),
    (('policy', 'gru', 'hh'), 'policy.gru', 'gru_hh'),
    (('policy', 'actor'), 'policy.actor.0', 'linear'),
    (('policy', 'critic'), 'policy.critic.0', 'linear'),
    (('classifier', 'gru', 'ih'), 'fc.gru', 'gru_ih'),
    (('classifier', 'gru', 'hh'), 'fc.gru', 'gru_hh'),
    (('classifier', 'fc'), 'fc.fc', 'linear'),
)


def _head(arch: str) -> str:
  """Their head module inside a backbone: MobileNetV2's `classifier = Sequential(Dropout,
  Linear)`, a ResNet's `fc`."""
  return 'classifier.1' if arch == 'mobilenet_v2' else 'fc'


def checkpoint_fields(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """The model fields (`config.model`) an authors' checkpoint fixes, from its shapes:
  policy_actions='grid' and grid (an actor with g * g outputs: their discrete PPO over the
  corners), policy_channels, policy_hidden, classifier_hidden."""
  fields = {}
  if 'policy.actor.0.weight' in state:
    cells = int(state['policy.actor.0.weight'].shape[0])
    side = math.isqrt(cells)
    if side >= 2 and side * side == cells:  # a categorical actor over the g x g corners
      fields.update(policy_actions='grid', grid=side)
  if 'policy.state_encoder.0.weight' in state:
    fields['policy_channels'] = int(state['policy.state_encoder.0.weight'].shape[0])
  if 'policy.gru.weight_hh_l0' in state:
    fields['policy_hidden'] = int(state['policy.gru.weight_hh_l0'].shape[1])
  if 'fc.gru.weight_hh_l0' in state:
    fields['classifier_hidden'] = int(state['fc.gru.weight_hh_l0'].shape[1])
  return fields


def _check_parts(c: ml_collections.ConfigDict, keys, needed: list[str]) -> None:
  """Raises one ConversionError saying what the file is when it is not an authors' V1
  checkpoint the model can read."""
  from arnet_jax.tools import import_torch as it  # pylint: disable=g-import-not-at-top
  tops = sorted({k.split('.')[0] for k in keys})
  absent = [p for p in needed if p not in tops]
  if {'global_CNN', 'local_CNN', 'policy_stn'} & set(tops):
    raise it.ConversionError(
        'This is an AdaFocusV2 checkpoint (global_CNN, local_CNN, policy_stn, classifier), '
        'not an AdaFocus V1 one: import it with --kind=adafocus_v2.')
  if absent == ['policy']:
    raise it.ConversionError(
        "The checkpoint has no 'policy' state dict (the trained patch policy), which "
        f'model.variant={c.variant} needs: the authors save None there when the focuser was '
        'trained on random patches (random_patch: true, their stage 1). Import a checkpoint '
        'of their stage 2 or 3.')
  if absent:
    raise it.ConversionError(
        f'The checkpoint lacks {", ".join(repr(p) for p in absent)}: an authors\' AdaFocus V1 '
        "checkpoint (main_dist.py) holds the state dicts 'glancer', 'focuser', 'fc' and "
        f"'policy'. This file's top-level modules: {', '.join(tops) or 'none'}.")
  if 'fc' in needed and 'fc.gru.weight_ih_l0' not in keys and 'fc.fc.weight' in keys:
    raise it.ConversionError(
        "The checkpoint's classifier `fc` has no GRU: their linear consensus (consensus: fc), "
        'which AdaFocusV1 does not implement (it has the recurrent classifier, consensus: '
        'gru).')
  if 'policy' in needed and 'policy.state_encoder.2.weight' in keys:
    raise it.ConversionError(
        "The checkpoint's policy encodes the glance with two Linear layers (policy_conv: "
        'false), which AdaFocusV1 does not implement (its encoder is the 1x1 convolution, '
        'policy_conv: true).')


def torch_layout(c: ml_collections.ConfigDict, keys):
  """An authors' AdaFocus V1 checkpoint, its parts flattened (see the module docstring) -> an
  `import_torch.Plan` for the variables of `create_model(c)`. The number of frames does not
  change the variables (every step shares the policy and the classifier)."""
  from arnet_jax.tools import import_torch as it  # pylint: disable=g-import-not-at-top
  from arnet_jax.tools import torch_names  # pylint: disable=g-import-not-at-top
  mount = torch_names.Mount
  s = int(c.frame_resolution)
  expected = models.abstract_variables(models.create_model(c), (1, 2, s, s, 3))
  ours = set(expected['params'])
  if 'skip_policy' in ours:
    raise it.ConversionError(
        f'model.variant={c.variant} has a skip policy (AdaFocus+), which the authors\' AdaFocus '
        'V1 checkpoints do not hold: import with model.variant=adafocus_v1, then train the '
        'skip policy from that checkpoint.')
  unknown = sorted(ours - set(OURS))
  if unknown:
    raise AssertionError(f'no authors\' module for our {", ".join(unknown)}')
  needed = [p for o, p in OURS.items() if o in ours]
  _check_parts(c, keys, needed)
  mounts = [mount(('backbone_0', 'features'), 'glancer.net', c.global_backbone),
            mount(('backbone_0', 'head'), f'glancer.net.{_head(c.global_backbone)}', 'linear'),
            mount(('backbone_1', 'features'), 'focuser.net', c.local_backbone),
            mount(('backbone_1', 'head'), f'focuser.net.{_head(c.local_backbone)}', 'linear')]
  mounts += [mount(o, theirs, what) for o, theirs, what in TORCH_MODULES]
  mounts = [m for m in mounts if m.ours[0] in ours]
  droppable = {'focuser.policy': "the focuser's PPO copies of the actor-critic (policy, "
                                 "policy_old); the checkpoint's 'policy' entry is read instead"}
  droppable.update({p: f'unused by model.variant={c.variant}' for p in PARTS
                    if p not in needed})
  description = (f'model.variant={c.variant}, global_backbone={c.global_backbone}, '
                 f'local_backbone={c.local_backbone}, '
                 + ', '.join(f'{k}={c.get(k)}' for k in (
                     'grid', 'policy_actions', 'policy_channels', 'policy_hidden',
                     'classifier_hidden') if k in c)
                 + f', num_classes={c.num_classes}, width/depth multipliers '
                 f'{c.width_multiplier}/{c.depth_multiplier}')
  return it.Plan(expected, mounts, droppable, description=description)
