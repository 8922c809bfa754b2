"""Importing PyTorch weights: parity with reference torch modules, key layouts, errors.

Each parity test draws random reference weights (BatchNorm affine parameters and running
statistics included), saves them with torch.save as the original code or torchvision would,
imports them with `arnet_jax.tools.import_torch`, and compares our outputs with the reference's in
eval mode. The reference modules (tests/torch_reference.py) use torchvision's,
efficientnet_pytorch's and the original AR-Net's parameter names.

Parity is checked in float64 on both sides (the imported float32 weights, computed in float64):
random deep networks amplify rounding, so that PyTorch's own float32 ResNet-50 features differ from
its float64 ones by up to ~1e-3 here, and a float32 comparison at 1e-4 would measure rounding, not
the import. One test also runs our float32 forward. Inputs are small and every model is compiled
once, so the file runs in about two minutes on two CPU cores.
"""
import copy
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip('torch')
import torch_reference as ref  # noqa: E402  (needs torch)

from arnet_jax import checkpoint, defaults, models  # noqa: E402
from arnet_jax.models import arnet as arnet_lib  # noqa: E402
from arnet_jax.tools import import_torch, torch_names  # noqa: E402
from arnet_jax.tools.import_torch import ConversionError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = dict(rtol=1e-4, atol=1e-4)
# Each model runs once or twice here: LLVM's optimisations would cost more than they save
# (compiles ~35% faster; results are unaffected).
jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})


def nhwc(x):
  return np.asarray(x.movedim(-3, -1).double().numpy())


def torch_input(shape, seed):
  return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def reference_output(net, *args, method='embed', **kwargs):
  """The float32 reference weights, computed in float64."""
  net = copy.deepcopy(net).double()
  args = [a.double() if a.is_floating_point() else a for a in args]
  with torch.no_grad():
    out = getattr(net, method)(*args, **kwargs)
  return [o.numpy() for o in out] if isinstance(out, tuple) else out.numpy()


def run64(fn, variables, *args):
  """`fn(variables, *args)` with 64-bit types enabled and float64 BatchNorm statistics (flax's
  BatchNorm computes its scale in the statistics' dtype; other parameters are promoted)."""
  variables = {'params': jax.tree.map(np.asarray, variables['params']),  # as NumPy: restored
               'batch_stats': jax.tree.map(lambda a: np.asarray(a, np.float64),  # jax.Arrays
                                           variables['batch_stats'])}  # would recompile
  with jax.enable_x64(True):
    return jax.tree.map(np.asarray, fn(variables, *args))


# Input sizes of the backbone parity tests. efficientnet_pytorch pads every convolution for the
# native size (224, 240, 260, 300), not for the input. At these sizes that padding differs from
# 'same' padding computed for the input at some stride-2 layer of each: B0 at an odd size, B1-B3
# where their native sizes pass odd intermediate sizes (15, 65, 75).
SIZES = {'resnet18': 32, 'resnet34': 32, 'resnet50': 32, 'mobilenet_v2': 32,
         'efficientnet_b0': 45, 'efficientnet_b1': 32, 'efficientnet_b2': 32,
         'efficientnet_b3': 32}


@functools.cache
def reference_backbone(arch, flat=False):
  """A randomised reference network with its 1000-class ImageNet head (cached: built once)."""
  torch.manual_seed(0)
  return ref.randomize(ref.backbone(arch, flat=flat), seed=1,
                       calibration_input=torch_input((16, 3, SIZES[arch], SIZES[arch]), 2))


@functools.cache
def compiled_features(arch, dtype=jnp.float64):
  net = models.create_backbone(arch, dtype=dtype)
  return jit(lambda v, x: net.apply({k: v[k]['features'] for k in v}, x))


def save(state, path, *, wrapped=False):
  """torch.save a state dict, as torchvision (plain) or as the original AR-Net code does."""
  if wrapped:
    state = {'epoch': 50, 'arch': 'resnet50', 'best_prec1': torch.tensor(73.8),
             'state_dict': {f'module.{k}': v for k, v in state.items()},
             'optimizer': {'state': {}, 'param_groups': [{'lr': 0.001, 'params': [0, 1]}]}}
  torch.save(state, path)
  return str(path)


# --- ImageNet backbones. ----------------------------------------------------------------------

@pytest.mark.parametrize('arch,size', SIZES.items())
def test_imagenet_backbone_features_equal_the_reference(arch, size, tmp_path, capsys):
  net = reference_backbone(arch)
  src = save(net.state_dict(), tmp_path / f'{arch}.pth')
  variables, meta = import_torch.convert_state_dict(import_torch.load_state_dict(src), arch)
  head = {'resnet': 'fc', 'mobile': 'classifier.1', 'effici': '_fc'}[arch[:6]]
  assert meta['dropped'] == [f'{head}.weight', f'{head}.bias']
  assert f'{head}.weight [1000, {net.num_features}]' in capsys.readouterr().out
  x = torch_input((2, 3, size, size), 3)
  np.testing.assert_allclose(run64(compiled_features(arch), variables, nhwc(x)),
                             reference_output(net, x), **TOL)


def test_flat_mobilenet_v2_naming_imports_to_the_same_network(tmp_path, capsys):
  net = reference_backbone('mobilenet_v2', flat=True)
  state = net.state_dict()
  assert 'features.2.conv.7.running_var' in state and 'classifier.weight' in state
  assert torch_names.mobilenet_v2_naming(state) == 'flat'
  assert torch_names.mobilenet_v2_naming(reference_backbone('mobilenet_v2').state_dict()) == (
      'nested')
  path = import_torch.import_checkpoint(save(state, tmp_path / 'tsm_mbv2.pth'), 'mobilenet_v2',
                                        str(tmp_path / 'out'))
  variables, meta = checkpoint.load_variables(path)
  assert meta['dropped'] == ['classifier.weight', 'classifier.bias']
  assert meta['kind'] == 'mobilenet_v2' and meta['source'].endswith('tsm_mbv2.pth')
  x = torch_input((2, 3, 32, 32), 3)
  np.testing.assert_allclose(run64(compiled_features('mobilenet_v2'), variables, nhwc(x)),
                             reference_output(net, x), **TOL)


@pytest.mark.parametrize('arch', SIZES)
def test_architecture_is_inferred_from_the_keys(arch):
  state = reference_backbone(arch).state_dict()
  shapes = {f'base_model.{k}': v.shape for k, v in state.items()}
  assert torch_names.infer_architecture(shapes, 'base_model') == arch


# --- TSN checkpoints (base_model + new_fc). -----------------------------------------------------

class TSN(torch.nn.Module):
  """The original TSN baseline's modules: base_model (its fc replaced by Dropout) and new_fc."""

  def __init__(self, base_model, new_fc):
    super().__init__()
    self.base_model, self.new_fc = base_model, new_fc

  def embed(self, x):
    return self.new_fc(self.base_model.embed(x))


def test_tsn_checkpoint_imports_as_a_classifier_with_its_head(tmp_path):
  torch.manual_seed(0)
  tsn = TSN(ref.randomize(ref.backbone('resnet18', num_classes=None), 1,
                          torch_input((16, 3, 32, 32), 2)),
            ref.randomize(torch.nn.Linear(512, 11), 2))
  path = import_torch.import_checkpoint(save(tsn.state_dict(), tmp_path / 'tsn.pth.tar',
                                             wrapped=True), 'tsn', str(tmp_path / 'out'))
  variables, meta = checkpoint.load_variables(path)
  assert (meta['arch'], meta['num_classes'], meta['dropped']) == ('resnet18', 11, [])
  x = torch_input((2, 3, 32, 32), 3)
  expected = reference_output(tsn, x)
  model = models.Classifier(models.create_backbone('resnet18', dtype=jnp.float64), 11)
  np.testing.assert_allclose(run64(jit(model.apply), variables, nhwc(x)), expected, **TOL)
  # Our float32 forward, as run in practice, is within float32 rounding of it.
  model = models.Classifier(models.create_backbone('resnet18'), 11)
  ours = jit(model.apply)(variables, nhwc(x).astype(np.float32))
  np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_tsn_needs_a_known_architecture_and_its_head():
  thin = tiny_reference('resnet18', 32)
  base = {f'base_model.{k}': v.numpy() for k, v in thin.state_dict().items()}
  with pytest.raises(ConversionError, match='give --arch'):  # a thin ResNet is no torchvision net
    import_torch.convert_state_dict(base, 'tsn')
  with pytest.raises(ConversionError, match='needs `new_fc.weight`'):
    import_torch.convert_state_dict(base, 'tsn', arch='resnet18')


# --- The original AR-Net. -----------------------------------------------------------------------

B, T, C = 2, 8, 7
RESOLUTIONS, POLICY_RESOLUTION = (32, 24, 16), 16


def reference_arnet(backbones, seed, *, resolutions=RESOLUTIONS, width=1.0, depth=1.0, hidden=512,
                    flat_policy=False):
  torch.manual_seed(seed)
  make = lambda arch, r, **kw: ref.randomize(
      ref.backbone(arch, width, depth, num_classes=None, **kw), seed,
      torch_input((16, 3, r, r), seed))
  net = ref.ARNet([make(a, r) for a, r in zip(backbones, resolutions)],
                  make('mobilenet_v2', POLICY_RESOLUTION, flat=flat_policy), C, resolutions,
                  POLICY_RESOLUTION, skip_list=[1, 2, 4], hidden_dim=hidden)
  for module in (net.rnn, net.linear, net.lite_fc, *net.new_fc_list):
    ref.randomize(module, seed)
  return net.eval()


def our_arnet(config, resolutions=RESOLUTIONS):
  """The model of an imported checkpoint's config at the test's resolutions, in float64."""
  model_config = ml_collections.ConfigDict(config).model
  model_config.resolutions, model_config.policy_resolution = list(resolutions), POLICY_RESOLUTION
  model = models.create_model(model_config).clone(dtype=jnp.float64)
  forward = jit(lambda v, video, forced: model.apply(v, video, forced=forced))
  return lambda v, video, forced: run64(forward, v, video, forced)


VIDEO = torch_input((B, T, 3, 32, 32), 5)
# Actions: 0-2 ResNet-50/34/18, 3 the policy head, 4-6 skip 1/2/4. Covered frames hold 3s that
# must be ignored. 'policy_head_before_skips' uses the policy head only before any multi-frame
# skip, where the original's unfrozen LSTM cell cannot matter.
FORCED = {'policy_head_before_skips': torch.tensor([[3, 0, 6, 3, 3, 3, 1, 2],
                                                    [3, 3, 5, 3, 2, 4, 0, 1]]),
          'policy_head_after_skips': torch.tensor([[6, 3, 3, 3, 3, 5, 3, 3],
                                                   [0, 5, 3, 3, 4, 3, 6, 3]])}


@pytest.fixture(scope='module')
def resnet_arnet(tmp_path_factory):
  """The paper's AR-Net, real structures, imported through the command line (default config).

  Returns (reference net, meta, ours(pattern), reference(pattern, freeze_cell)); the outputs are
  computed once per pattern.
  """
  net = reference_arnet(('resnet50', 'resnet34', 'resnet18'), seed=0)
  tmp = tmp_path_factory.mktemp('arnet')
  src = save(net.state_dict(), tmp / 'exp0_res_ada.pth.tar', wrapped=True)
  out = tmp / 'imported'
  run = subprocess.run([sys.executable, '-m', 'arnet_jax.tools.import_torch', f'--src={src}',
                        '--kind=arnet', f'--out={out}'], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, 'PYTHONPATH': ROOT}, check=False)
  assert run.returncode == 0, run.stderr
  assert 'The checkpoint has 7 classes: model.num_classes 200 -> 7' in run.stdout
  variables, meta = checkpoint.load_variables(str(out))
  forward = our_arnet(meta['config'])
  net64 = copy.deepcopy(net).double()
  with torch.no_grad():
    frame_outputs = net64.frame_outputs(VIDEO.double())

  @functools.cache
  def ours(pattern):
    return forward(variables, nhwc(VIDEO), FORCED[pattern].numpy())

  @functools.cache
  def reference(pattern, freeze_cell):
    with torch.no_grad():
      return [x.numpy() for x in net64.decide(*frame_outputs, FORCED[pattern], freeze_cell)]
  return net, meta, ours, reference


@pytest.mark.parametrize('pattern', FORCED)
def test_arnet_logits_equal_the_reference_with_forced_decisions(resnet_arnet, pattern):
  _, meta, ours, reference = resnet_arnet
  assert meta['num_classes'] == C and meta['dropped'] == []
  assert meta['config']['model']['backbones'] == ['resnet50', 'resnet34', 'resnet18']
  out = ours(pattern)
  logits, decisions, log_probs = reference(pattern, freeze_cell=True)
  np.testing.assert_array_equal(out['actions'], decisions)
  np.testing.assert_allclose(out['logits'], logits, **TOL)
  # The action head, LSTM gates and both biases: the policy's log-probabilities at every step.
  np.testing.assert_allclose(jax.nn.log_softmax(out['action_logits']), log_probs, **TOL)


def test_arnet_equals_the_original_forward_where_its_unfrozen_cell_cannot_matter(resnet_arnet):
  """The original froze h but not c across skips. Where the policy head is used only before any
  multi-frame skip, its forward (freeze_cell=False) gives our logits; after skips it does not."""
  _, _, ours, reference = resnet_arnet
  safe, unsafe = FORCED
  np.testing.assert_allclose(ours(safe)['logits'], reference(safe, False)[0], **TOL)
  assert not np.allclose(ours(unsafe)['logits'], reference(unsafe, False)[0], **TOL)


def test_efficientnet_arnet_with_flat_mobilenet_names_equals_the_reference(tmp_path):
  """B3/B1/B0 + a policy with the older flat MobileNetV2 names, at reduced width and depth.

  (B0 needs 32 pixels or more: below, a 5x5 convolution padded for 224 overhangs its input.)"""
  width, depth, hidden, resolutions = 0.25, 0.34, 64, (48, 40, 32)
  video = torch_input((B, T, 3, 48, 48), 6)
  net = reference_arnet(('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0'), seed=1,
                        resolutions=resolutions, width=width, depth=depth, hidden=hidden,
                        flat_policy=True)
  assert 'lite_backbone.features.1.conv.4.running_var' in net.state_dict()  # flat naming
  config = import_torch.default_config('arnet_efficientnet')
  config.model.update(width_multiplier=width, depth_multiplier=depth, lstm_hidden=hidden)
  path = import_torch.import_checkpoint(
      save(net.state_dict(), tmp_path / 'exp6_eff_ada.pth.tar', wrapped=True),
      'arnet_efficientnet', str(tmp_path / 'out'), config=config)
  variables, meta = checkpoint.load_variables(path)
  forced = FORCED['policy_head_after_skips']
  out = our_arnet(meta['config'], resolutions)(variables, nhwc(video), forced.numpy())
  logits, decisions, _ = reference_output(net, video, forced, method='forward', freeze_cell=True)
  np.testing.assert_array_equal(out['actions'], decisions)
  np.testing.assert_allclose(out['logits'], logits, **TOL)


# --- The original baselines, through --config.model.variant (tiny networks). --------------------

TINY = dict(width=0.125, depth=0.34, hidden=16)


def tiny_config(**model):
  config = defaults.get_config()
  config.model.update({'width_multiplier': TINY['width'], 'depth_multiplier': TINY['depth'],
                       'lstm_hidden': TINY['hidden'], 'resolutions': (32, 24, 16),
                       'policy_resolution': 16, **model})
  return config


def tiny_reference(arch, size, seed=0):
  torch.manual_seed(seed)
  return ref.randomize(ref.backbone(arch, TINY['width'], TINY['depth'], num_classes=None), seed,
                       torch_input((16, 3, size, size), seed))


def original_baseline(seed, *, frame_independent):
  """exp2/exp3's modules: a ResNet "policy" network read by --offline_lstm_all, plus the unused
  ones the original builds anyway (exp3 also has a ResNet in base_model_list)."""
  backbones = [] if frame_independent else [tiny_reference('resnet18', 32, seed + 1)]
  net = ref.ARNet(backbones, tiny_reference('resnet18', 32, seed), C, (32,), 32, skip_list=[1],
                  hidden_dim=TINY['hidden'], policy_action=False,
                  frame_independent=frame_independent)
  for module in (net.rnn, net.linear, net.lite_fc, *net.new_fc_list):
    ref.randomize(module, seed)
  return net.eval()


@pytest.mark.parametrize('variant,frame_independent,dropped', [
    ('lstm', False, ['base_model_list', 'new_fc_list', 'linear']),  # exp3_res_lstm
    ('uniform', True, ['rnn', 'linear']),  # exp2_res_uniform
])
def test_original_baselines_import_as_our_variants(variant, frame_independent, dropped,
                                                   tmp_path, capsys):
  net = original_baseline(0, frame_independent=frame_independent)
  config = tiny_config(variant=variant, backbones=('resnet18',), resolutions=(32,))
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  variables, meta = import_torch.convert_state_dict(state, 'arnet', config=config)
  assert sorted({k.split('.')[0] for k in meta['dropped']}) == sorted(dropped)
  assert 'unused by model.variant=' + variant in capsys.readouterr().out
  model = models.create_model(ml_collections.ConfigDict(meta['config']).model).clone(
      dtype=jnp.float64)
  video = torch_input((B, T, 3, 32, 32), 7)
  ours = run64(jit(lambda v, x: model.apply(v, x)['logits']), variables, nhwc(video))
  np.testing.assert_allclose(ours, reference_output(net, video, method='policy_only'), **TOL)


def test_original_multiscale_gets_a_zero_action_head(capsys):
  """exp5 was trained with a skip action (4 + 1 actions) that Multi-Scale never uses."""
  torch.manual_seed(0)
  net = ref.ARNet([tiny_reference(a, r) for a, r in [('resnet50', 32), ('resnet34', 24),
                                                     ('resnet18', 16)]],
                  tiny_reference('mobilenet_v2', 16), C, (32, 24, 16), 16, skip_list=[1],
                  hidden_dim=TINY['hidden'])
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  variables, _ = import_torch.convert_state_dict(state, 'arnet',
                                                 config=tiny_config(variant='multiscale'))
  head = variables['params']['policy']['action_head']
  assert head['kernel'].shape == (TINY['hidden'], 4) and not head['kernel'].any()
  message = capsys.readouterr().out
  assert 'policy/action_head is unused by this model; the checkpoint does not fit it' in message
  assert 'linear.weight [5, 16]' in message
  np.testing.assert_array_equal(variables['params']['policy']['lite_head']['kernel'],
                                state['lite_fc.weight'].T)


def test_original_tsn_imports_as_the_uniform_variant():
  """exp7: `base_model` + `new_fc` become backbone_0 of the Uniform baseline."""
  base = tiny_reference('resnet18', 32)
  state = {**{f'base_model.{k}': v.numpy() for k, v in base.state_dict().items()},
           'new_fc.weight': np.ones((C, base.num_features), np.float32),
           'new_fc.bias': np.arange(C, dtype=np.float32)}
  variables, meta = import_torch.convert_state_dict(
      state, 'arnet', config=tiny_config(variant='uniform', backbones=('resnet18',)))
  assert meta['num_classes'] == C and list(variables['params']) == ['backbone_0']
  np.testing.assert_array_equal(variables['params']['backbone_0']['head']['bias'], np.arange(C))
  np.testing.assert_array_equal(variables['batch_stats']['backbone_0']['features']['bn1']['var'],
                                state['base_model.bn1.running_var'])


def test_nearest_resize_equals_torch_interpolate():
  """The original makes its low resolutions with F.interpolate(mode='nearest') of float32 images
  (torch computes the source indices in the input's dtype)."""
  interpolate = torch.nn.functional.interpolate
  for size in (32, 224, 256, 300):
    ramp = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    for out in range(8, size):
      expected = interpolate(ramp, size=out, mode='nearest').view(-1).long().numpy()
      np.testing.assert_array_equal(arnet_lib._torch_nearest_indices(size, out), expected,
                                    err_msg=f'{size} -> {out}')
  for size, out in [(224, 168), (224, 112), (224, 84), (300, 112)]:
    x = torch_input((2, 3, size, size), 0)
    np.testing.assert_array_equal(models.resize(nhwc(x), out),
                                  nhwc(interpolate(x, size=(out, out), mode='nearest')))


# --- Errors: nothing is written. ----------------------------------------------------------------

def small_state():
  return dict(reference_backbone('resnet18').state_dict())


@pytest.mark.parametrize('edit,listed', [
    (lambda s: s.pop('layer3.1.bn2.running_var'),
     'missing:    layer3.1.bn2.running_var [256]  (batch_stats/features/layer3_1/bn2/var [256])'),
    (lambda s: s.update({'layer5.0.conv1.weight': torch.zeros(8, 4, 3, 3)}),
     'unexpected: layer5.0.conv1.weight [8, 4, 3, 3]'),
    (lambda s: s.update({'layer1.0.conv1.weight': torch.zeros(64, 64, 1, 1)}),
     'shape:      layer1.0.conv1.weight is [64, 64, 1, 1], the model needs [64, 64, 3, 3]  '
     '(params/features/layer1_0/conv1/kernel [3, 3, 64, 64])'),
], ids=['missing', 'unexpected', 'shape'])
def test_mismatch_lists_the_offending_names_and_writes_nothing(edit, listed, tmp_path):
  state = small_state()
  edit(state)
  out = tmp_path / 'out'
  with pytest.raises(ConversionError) as error:
    import_torch.import_checkpoint(save(state, tmp_path / 'r18.pth'), 'resnet18', str(out))
  assert listed in str(error.value) and 'Nothing was written' in str(error.value)
  assert not out.exists()


def test_config_mismatch_names_the_parameters_and_both_shapes(resnet_arnet, tmp_path):
  net = resnet_arnet[0]
  config = defaults.get_config()
  config.model.skips = (1, 2)  # the checkpoint was trained with skips (1, 2, 4)
  with pytest.raises(ConversionError, match=r'shape:      linear.weight is \[7, 512\], the model '
                     r'needs \[6, 512\]  \(params/policy/action_head/kernel \[512, 6\]\)'):
    import_torch.convert_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, 'arnet',
                                    config=config)


def test_wrong_backbone_kind_is_named_in_a_hint(tmp_path):
  src = save(reference_backbone('resnet50').state_dict(), tmp_path / 'r50.pth')
  with pytest.raises(ConversionError, match='holds a resnet50, where the model expects a resnet34'):
    import_torch.import_checkpoint(src, 'resnet34', str(tmp_path / 'out'))


def test_files_with_python_objects_need_allow_pickle(tmp_path):
  import argparse
  state = {k: v for k, v in small_state().items()}
  src = tmp_path / 'pickled.pth'
  torch.save({'state_dict': state, 'args': argparse.Namespace(lr=0.1)}, src)
  with pytest.raises(ConversionError, match='--allow_pickle'):
    import_torch.load_state_dict(str(src))
  assert set(import_torch.load_state_dict(str(src), allow_pickle=True)) == set(state)


def test_output_directory_must_be_new_or_empty(tmp_path):
  (tmp_path / 'out').mkdir()
  (tmp_path / 'out' / 'keep.txt').write_text('x')
  with pytest.raises(FileExistsError):
    import_torch.import_checkpoint('unused.pth', 'resnet18', str(tmp_path / 'out'))
