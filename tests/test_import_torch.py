"""Importing PyTorch weights: parity with reference torch modules, key layouts, errors, and what
training and evaluation read.

Each parity test draws random reference weights (BatchNorm affine parameters and running
statistics included), saves them with torch.save as the original code or torchvision would,
imports them with `arnet_jax.tools.import_torch`, and compares our outputs with the reference's in
eval mode. The reference modules (tests/torch_reference.py) use torchvision's,
efficientnet_pytorch's and the original AR-Net's parameter names.

Parity is checked in float64 on both sides (the imported float32 weights, computed in float64):
random deep networks amplify rounding, so that PyTorch's own float32 EfficientNet-B1 features
(up to ~1e3) differ from its float64 ones by up to ~2e-2 here, and a float32 comparison at 1e-4
would measure rounding, not the import. The evaluation test runs our float32 evaluation. The ImageNet backbones
are full size; the AR-Nets have the paper's structure at 1/8 width and ~1/3 depth, which checks
the same names and wiring at a fraction of the compile time.
"""
import contextlib
import copy
import functools
import io
import json
import os
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import flags
from conftest import tiny_train_config

torch = pytest.importorskip('torch')
import torch_reference as ref  # noqa: E402  (needs torch)

from arnet_jax import checkpoint, defaults, main, models, train  # noqa: E402
from arnet_jax import data as data_lib  # noqa: E402
from arnet_jax.models import arnet as arnet_lib  # noqa: E402
from arnet_jax.tools import import_torch, torch_names  # noqa: E402
from arnet_jax.tools.import_torch import ConversionError  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
TOL = dict(rtol=1e-4, atol=1e-4)
# Each model runs once or twice here, so compiling is what costs: without LLVM's optimisations
# and with XLA's older elemental emitters, compiling takes about a third of the time (the
# comparisons below are what shows the results are unaffected).
jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0,
                                                   'xla_cpu_use_fusion_emitters': False})
# torch's OpenMP threads keep spinning after each operation and slow XLA down on a small
# machine; the reference networks are small, one thread is enough for them.
torch.set_num_threads(1)


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


def import_command_line(*args):
  """`python -m arnet_jax.tools.import_torch ARGS` in this process: (status, stdout, stderr)."""
  flag_values = flags.FlagValues()
  import_torch.define_flags(flag_values)
  argv = ['import_torch', *args]
  out, err = io.StringIO(), io.StringIO()
  # config_flags reads its --config.* overrides from sys.argv.
  with mock.patch.object(sys, 'argv', argv), contextlib.redirect_stdout(out), \
      contextlib.redirect_stderr(err):
    flag_values(argv)
    status = import_torch.run_from_flags(flag_values)
  return status, out.getvalue(), err.getvalue()


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
  state = import_torch.load_state_dict(save(tsn.state_dict(), tmp_path / 'tsn.pth.tar',
                                             wrapped=True))
  variables, meta = import_torch.convert_state_dict(state, 'tsn')
  assert (meta['arch'], meta['num_classes'], meta['dropped']) == ('resnet18', 11, [])
  x = torch_input((2, 3, 32, 32), 3)
  model = models.Classifier(models.create_backbone('resnet18', dtype=jnp.float64), 11)
  np.testing.assert_allclose(run64(jit(model.apply), variables, nhwc(x)),
                             reference_output(tsn, x), **TOL)


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
TINY = dict(width=0.125, depth=0.34, hidden=16)  # the structure of the paper's nets, smaller


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
  """The paper's AR-Net (ResNet-50/34/18, a MobileNetV2 policy with its own head, skips 1/2/4)
  at tiny width and depth, saved as the original code saves it and imported through the command
  line with configs/activitynet.py and overrides (the number of classes comes from the file).

  Returns (state dict, meta, ours(pattern), reference(pattern, freeze_cell)); the outputs are
  computed once per pattern.
  """
  net = reference_arnet(('resnet50', 'resnet34', 'resnet18'), seed=0, width=TINY['width'],
                        depth=TINY['depth'], hidden=TINY['hidden'])
  tmp = tmp_path_factory.mktemp('arnet')
  src = save(net.state_dict(), tmp / 'exp0_res_ada.pth.tar', wrapped=True)
  out = tmp / 'imported'
  status, stdout, stderr = import_command_line(
      f'--src={src}', '--kind=arnet', f'--out={out}',
      f'--config={os.path.join(ROOT, "configs", "activitynet.py")}',
      f'--config.model.width_multiplier={TINY["width"]}',
      f'--config.model.depth_multiplier={TINY["depth"]}',
      f'--config.model.lstm_hidden={TINY["hidden"]}')
  assert status == 0, stderr
  assert 'The checkpoint has 7 classes: model.num_classes 200 -> 7' in stdout
  assert f'Wrote {out}/0' in stdout
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
  return {k: v.numpy() for k, v in net.state_dict().items()}, meta, ours, reference


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
  width, depth, hidden, resolutions = TINY['width'], TINY['depth'], TINY['hidden'], (48, 40, 32)
  video = torch_input((B, T, 3, 48, 48), 6)
  net = reference_arnet(('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0'), seed=1,
                        resolutions=resolutions, width=width, depth=depth, hidden=hidden,
                        flat_policy=True)
  assert 'lite_backbone.features.1.conv.4.running_var' in net.state_dict()  # flat naming
  config = import_torch.default_config('arnet_efficientnet')
  config.model.update(width_multiplier=width, depth_multiplier=depth, lstm_hidden=hidden)
  state = import_torch.load_state_dict(save(net.state_dict(), tmp_path / 'exp6_eff_ada.pth.tar',
                                             wrapped=True))
  variables, meta = import_torch.convert_state_dict(state, 'arnet_efficientnet', config=config)
  forced = FORCED['policy_head_after_skips']
  out = our_arnet(meta['config'], resolutions)(variables, nhwc(video), forced.numpy())
  logits, decisions, _ = reference_output(net, video, forced, method='forward', freeze_cell=True)
  np.testing.assert_array_equal(out['actions'], decisions)
  np.testing.assert_allclose(out['logits'], logits, **TOL)


# --- The original baselines, through --config.model.variant (tiny networks). --------------------

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


def test_original_multiscale_gets_a_zero_action_head_unless_its_skips_are_given(capsys):
  """exp5 was trained with --skip_list 1 (4 + 1 actions). Multi-Scale never uses its action
  head: with the default skips (1, 2, 4) it has 7 outputs and is set to zeros, with a message;
  with model.skips=(1,) it is the checkpoint's."""
  torch.manual_seed(0)
  net = ref.ARNet([tiny_reference(a, r) for a, r in [('resnet50', 32), ('resnet34', 24),
                                                     ('resnet18', 16)]],
                  tiny_reference('mobilenet_v2', 16), C, (32, 24, 16), 16, skip_list=[1],
                  hidden_dim=TINY['hidden'])
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  variables, _ = import_torch.convert_state_dict(state, 'arnet',
                                                 config=tiny_config(variant='multiscale'))
  head = variables['params']['policy']['action_head']
  assert head['kernel'].shape == (TINY['hidden'], 7) and not head['kernel'].any()
  message = capsys.readouterr().out
  assert 'policy/action_head is unused by this model; the checkpoint does not fit it' in message
  assert 'linear.weight [5, 16]' in message
  np.testing.assert_array_equal(variables['params']['policy']['lite_head']['kernel'],
                                state['lite_fc.weight'].T)
  variables, _ = import_torch.convert_state_dict(
      state, 'arnet', config=tiny_config(variant='multiscale', skips=(1,)))
  np.testing.assert_array_equal(variables['params']['policy']['action_head']['kernel'],
                                state['linear.weight'].T)
  assert 'set to zeros' not in capsys.readouterr().out


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


# --- What training and evaluation read. ---------------------------------------------------------

EVAL_CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from conftest import tiny_train_config


def get_config():  # the tiny demo model: ResNet-18 at 64 px, a ResNet-18 policy at 32 px
  config = tiny_train_config({data_dir!r})
  config.mode = 'eval'
  return config
"""


@torch.no_grad()
def centre_the_policy_on(net, video):
  """Random LSTM biases swamp the little that tells one demo frame from another, and the policy
  would take one action everywhere: centre the LSTM's input gates on the frames' mean feature,
  so that the decisions vary from frame to frame."""
  mean = net.lite_backbone.embed(net.at(video.flatten(0, 1), net.policy_resolution)).mean(0)
  net.rnn.weight_ih.mul_(3.0)
  net.rnn.bias_ih.copy_(-net.rnn.weight_ih @ mean - net.rnn.bias_hh)
  net.linear.bias.zero_()


def test_an_imported_arnet_checkpoint_evaluates_as_the_reference_decides(demo_data_dir,
                                                                        tmp_path):
  """Command line to command line: a torch AR-Net checkpoint -> import_torch -> arnet_jax.main
  mode=eval on the tiny demo data. Every decision is the argmax of the reference policy's
  probabilities, and every video's logits are the reference's with those decisions."""
  config = tiny_train_config(demo_data_dir)
  batches, _ = data_lib.create_split(config.data, config.data.eval_split, batch_size=12,
                                     train=False, num_classes=4)
  batch = next(batches)  # the 12 validation videos, in evaluation order
  video = torch.tensor(batch['video']).movedim(-1, -3)
  net = ref.ARNet([tiny_reference('resnet18', 64, seed=1)], tiny_reference('resnet18', 32), 4,
                  (64,), 32, skip_list=[1, 2, 4], hidden_dim=TINY['hidden'])
  for module in (net.rnn, net.linear, net.lite_fc, *net.new_fc_list):
    ref.randomize(module, seed=2)
  centre_the_policy_on(net, video)
  src = save(net.state_dict(), tmp_path / 'tiny_ada.pth.tar', wrapped=True)
  config_file = tmp_path / 'tiny_eval.py'
  config_file.write_text(EVAL_CONFIG.format(tests=TESTS, data_dir=demo_data_dir))
  status, _, stderr = import_command_line(f'--src={src}', '--kind=arnet',
                                          f'--out={tmp_path / "imported"}',
                                          f'--config={config_file}')
  assert status == 0, stderr

  argv = ['main', f'--config={config_file}', f'--config.checkpoint={tmp_path / "imported"}',
          f'--workdir={tmp_path / "eval_run"}', '--compilation_cache=']
  with mock.patch.object(sys, 'argv', argv):
    main.main(main.parse_flags(argv))
  with open(tmp_path / 'eval_run' / 'eval' / 'metrics.json') as f:
    assert json.load(f)['num_videos'] == 12
  ours = dict(np.load(tmp_path / 'eval_run' / 'eval' / 'predictions.npz'))
  np.testing.assert_array_equal(ours['label'], batch['label'])

  forced = ours['actions'].argmax(-1)
  logits, decisions, log_probs = reference_output(net, video, torch.from_numpy(forced),
                                                  method='forward', freeze_cell=True)
  decided = ours['decided']
  assert len(np.unique(forced[decided])) == 5  # every action is taken somewhere
  np.testing.assert_array_equal(forced[decided], log_probs.argmax(-1)[decided])
  np.testing.assert_array_equal(ours['actions'], decisions)  # skips cover the same frames
  # Our evaluation runs in float32, the reference in float64.
  np.testing.assert_allclose(ours['logits'], logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())


def test_imagenet_checkpoints_initialise_the_backbones_and_the_policy_for_training(tmp_path):
  """config.init.backbones / init.policy go through train.load_features: an imported ResNet-18
  and MobileNetV2 become backbone_0's and the policy's features (parameters and BatchNorm
  statistics); the rest of the model is left as it was."""
  sources = {arch: save(reference_backbone(arch).state_dict(), tmp_path / f'{arch}.pth')
             for arch in ('resnet18', 'mobilenet_v2')}
  paths = {arch: import_torch.import_checkpoint(src, arch, str(tmp_path / arch))
           for arch, src in sources.items()}
  config = defaults.get_config()
  config.model.update(backbones=('resnet18',), resolutions=(32,), policy_resolution=16,
                      lstm_hidden=16, num_classes=5)
  config.stage = 'warmup'
  model = train.stage_model(config)
  shapes = models.abstract_variables(model, (1, 2, 32, 32, 3))
  fresh = {k: jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes[k])  # as initialised
           for k in ('params', 'batch_stats')}
  variables = train.load_features(fresh, paths['resnet18'], 'backbone_0')
  variables = train.load_features(variables, paths['mobilenet_v2'], 'policy')
  for module, arch in (('backbone_0', 'resnet18'), ('policy', 'mobilenet_v2')):
    imported, _ = import_torch.convert_state_dict(import_torch.load_state_dict(sources[arch]),
                                                  arch)
    for collection in ('params', 'batch_stats'):
      jax.tree.map(np.testing.assert_array_equal, variables[collection][module]['features'],
                   imported[collection]['features'])
  jax.tree.map(np.testing.assert_array_equal, variables['params']['backbone_0']['head'],
               fresh['params']['backbone_0']['head'])
  jax.tree.map(np.testing.assert_array_equal,
               {k: v for k, v in variables['params']['policy'].items() if k != 'features'},
               {k: v for k, v in fresh['params']['policy'].items() if k != 'features'})


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


@pytest.fixture(scope='module')
def full_size_exp0():
  """exp0_res_ada's keys and shapes (200 classes), its values zeros."""
  with torch.device('meta'):  # shapes only, no memory
    net = ref.ARNet([ref.backbone(a, num_classes=None) for a in ('resnet50', 'resnet34',
                                                                   'resnet18')],
                    ref.backbone('mobilenet_v2', num_classes=None), 200, (224, 168, 112), 84,
                    skip_list=[1, 2, 4])
  return {k: np.zeros(v.shape, np.float32) for k, v in net.state_dict().items()}


def test_a_full_size_original_checkpoint_fits_the_default_config(full_size_exp0):
  """The default config (configs/activitynet.py) takes every entry, at the real sizes."""
  variables, meta = import_torch.convert_state_dict(full_size_exp0, 'arnet')
  assert meta['config'] == import_torch.default_config('arnet').to_dict()
  assert (meta['num_classes'], meta['dropped']) == (200, [])
  params = variables['params']
  assert params['policy']['lstm_ih']['kernel'].shape == (1280, 4 * 512)
  assert params['backbone_0']['head']['kernel'].shape == (2048, 200)
  assert params['policy']['action_head']['kernel'].shape == (512, 7)


def test_config_mismatch_names_the_parameters_and_both_shapes(resnet_arnet):
  config = tiny_config()
  config.model.skips = (1, 2)  # the checkpoint was trained with skips (1, 2, 4)
  with pytest.raises(ConversionError) as error:
    import_torch.convert_state_dict(resnet_arnet[0], 'arnet', config=config)
  assert str(error.value).splitlines()[1:3] == [
      '  shape:      linear.bias is [7], the model needs [6]  (params/policy/action_head/bias [6])',
      '  shape:      linear.weight is [7, 16], the model needs [6, 16]  '
      '(params/policy/action_head/kernel [16, 6])']
  assert ('The model: model.variant=arnet, actions (6): resnet50@32, resnet34@24, resnet18@16, '
          'policy@16, skip1, skip2;') in str(error.value)


def test_wrong_backbone_kind_is_named_in_a_hint(tmp_path):
  src = save(reference_backbone('resnet50').state_dict(), tmp_path / 'r50.pth')
  with pytest.raises(ConversionError, match='the file holds a resnet50, where the model expects '
                     r'a resnet34.\n  Import it with --kind=resnet50.'):
    import_torch.import_checkpoint(src, 'resnet34', str(tmp_path / 'out'))
  assert not (tmp_path / 'out').exists()


def test_a_resnet_arnet_given_as_the_efficientnet_kind_is_named_in_a_hint(full_size_exp0):
  # A small EfficientNet AR-Net to compare with: the hints are the same for any.
  config = tiny_config(backbones=('efficientnet_b0',), resolutions=(32,))
  with pytest.raises(ConversionError) as error:
    import_torch.convert_state_dict(full_size_exp0, 'arnet_efficientnet', config=config)
  hints = str(error.value).split('Hints:\n')[1].splitlines()
  assert hints[0] == ('  `base_model_list.0` holds a resnet50, where the model expects a '
                      'efficientnet_b0.')
  assert '  An AR-Net with ResNet backbones: use --kind=arnet.' in hints
  assert not any('arnet_efficientnet' in h for h in hints)


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
