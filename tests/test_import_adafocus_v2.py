"""Importing the authors' AdaFocusV2 checkpoints: parity with a plain-torch AdaFocusV2 written from
their code (tests/torch_reference_adafocus.py) in float64, their key names (DataParallel's
`module.`, `{'state_dict': ...}`), the steps and classes read from the checkpoint, and
all-or-nothing checks."""
import copy
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip('torch')
import torch_reference as ref  # noqa: E402  (needs torch)
import torch_reference_adafocus as ref_adafocus  # noqa: E402

from arnet_jax import checkpoint, defaults, models  # noqa: E402
from arnet_jax.tools import import_torch  # noqa: E402
from arnet_jax.tools.import_torch import ConversionError  # noqa: E402

B, T, C, SIZE, PATCH = 2, 4, 5, 64, 24
TINY = dict(width_multiplier=0.125, depth_multiplier=0.34)
torch.set_num_threads(1)
jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0,
                                                   'xla_cpu_use_fusion_emitters': False})


def tiny_config():
  """configs/adafocus_v2.py at the reference's toy sizes (MobileNetV2 glance: a 2 x 2 map)."""
  config = defaults.load_config('configs/adafocus_v2.py')
  config.model.update(frame_resolution=SIZE, global_resolution=SIZE, patch_sizes=(PATCH,),
                      policy_channels=4, policy_hidden=8, classifier_hidden=16, **TINY)
  return config


@functools.cache
def reference():
  """The authors' structure, random weights (BatchNorm statistics included), eval mode."""
  torch.manual_seed(0)
  calibrate = lambda size: torch.randn(8, 3, size, size, generator=torch.Generator()
                                       .manual_seed(size))
  global_cnn = ref.randomize(ref.backbone('mobilenet_v2', 0.125, 0.34, flat=True), 1,
                             calibrate(SIZE))
  local_cnn = ref.randomize(ref.backbone('resnet50', 0.125, 0.34), 2, calibrate(PATCH))
  net = ref_adafocus.AdaFocusV2(global_cnn, local_cnn, C, T, PATCH, SIZE, channels=4, hidden=8,
                                classifier_hidden=16)
  return ref_adafocus.randomize_heads(net, 3)


def saved_like_the_authors(state, path):
  """`main_v2.save_checkpoint({'state_dict': model.state_dict()})` of a DataParallel model."""
  torch.save({'state_dict': {f'module.{k}': v for k, v in state.items()}}, path)
  return str(path)


def test_an_authors_checkpoint_imports_to_the_same_logits_corners_and_heads(tmp_path):
  net = reference()
  src = saved_like_the_authors(net.state_dict(), tmp_path / 'actnet_p24_mbv2.pth.tar')
  log = []
  out = import_torch.import_checkpoint(src, 'adafocus_v2', str(tmp_path / 'imported'),
                                       config=tiny_config(), log=log.append)
  variables, meta = checkpoint.load_variables(out)
  assert f'The checkpoint has {C} classes: model.num_classes 200 -> {C}.' in log
  assert f'The checkpoint has {T} steps: data.num_frames 16 -> {T}.' in log
  assert sorted(k.rsplit('.', 1)[0] for k in meta['dropped']) == [
      'global_CNN.classifier', 'global_CNN.classifier', 'local_CNN.fc', 'local_CNN.fc']

  video = torch.randn(B, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
  with torch.no_grad():
    want = {k: v.numpy() for k, v in copy.deepcopy(net).double()(video.double()).items()}
  model = models.create_model(ml_collections.ConfigDict(meta['config']).model).clone(
      dtype=jnp.float64)
  params = jax.tree.map(np.asarray, variables['params'])
  stats = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['batch_stats'])
  with jax.enable_x64(True):
    got = jit(lambda v, x: model.apply(v, x))({'params': params, 'batch_stats': stats},
                                              np.asarray(video.double().movedim(2, -1)))
    got = jax.tree.map(np.asarray, got)
  for key in ('logits', 'step_logits', 'global_logits', 'local_logits'):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-4, err_msg=key)
  np.testing.assert_allclose(got['policy_corners'], want['corners'], rtol=1e-4, atol=1e-6)
  assert 0.02 < np.abs(want['corners'] - 0.5).max() < 0.5  # corners that move the patch


def state_of(net):
  return {k: v.numpy() for k, v in net.state_dict().items()}


def test_a_checkpoint_that_does_not_fit_is_refused_listing_every_difference():
  state = state_of(reference())
  del state['policy_stn.gru.bias_hh_l0']
  state['policy_stn.extra.weight'] = np.zeros(3)
  state['classifier.mlp.layers.0.weight'] = np.zeros((32, 416))  # hidden 32, not 16
  with pytest.raises(ConversionError, match='does not fit the model: 1 missing, 1 unexpected, '
                                            '1 of another shape') as error:
    import_torch.convert_state_dict(state, 'adafocus_v2', config=tiny_config(), log=print)
  message = str(error.value)
  assert 'missing:    policy_stn.gru.bias_hh_l0 [24]  (params/policy/gru/hh/bias [24])' in message
  assert 'unexpected: policy_stn.extra.weight [3]' in message
  assert ('shape:      classifier.mlp.layers.0.weight is [32, 416], the model needs [16, 416]'
          in message)
  assert 'model.variant=adafocus_v2, 4 steps' in message


def test_the_adafocus_kind_needs_an_adafocus_config():
  with pytest.raises(ConversionError, match='--kind=adafocus_v2 does not fit the config.s '
                                            'model.variant=arnet'):
    import_torch.convert_state_dict(state_of(reference()), 'adafocus_v2',
                                    config=defaults.get_config())
