"""Importing the authors' AdaFocus V1 checkpoints (`main_dist.py`'s dict of the `glancer`,
`focuser`, `fc` and `policy` state dicts): parity in float64 with a plain-torch AdaFocus V1
written from their code (models/gfv_net.py, ppo.py), the sizes read from the checkpoint, the
command line, and one clear message for a file that is not such a checkpoint."""
import contextlib
import copy
import functools
import io
import math
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import flags

torch = pytest.importorskip('torch')
import torch_reference as ref  # noqa: E402  (needs torch)
from torch import nn  # noqa: E402

from arnet_jax import checkpoint, models  # noqa: E402
from arnet_jax.tools import import_torch  # noqa: E402
from arnet_jax.tools.import_torch import ConversionError  # noqa: E402

B, T, C, SIZE, PATCH, GRID = 2, 3, 5, 64, 32, 3
POLICY_HIDDEN, CLASSIFIER_HIDDEN = 8, 16
TINY = dict(width_multiplier=0.125, depth_multiplier=0.34)
torch.set_num_threads(1)
jit = functools.partial(jax.jit, static_argnames='mode',
                        compiler_options={'xla_backend_optimization_level': 0,
                                          'xla_cpu_use_fusion_emitters': False})


# --- The authors' AdaFocus V1 in plain torch (their module names). ------------------------------

class ActorCritic(nn.Module):
  """ppo.py's ActorCritic (policy_conv=True): the state encoder, the GRU, actor and critic."""

  def __init__(self, feature_dim, map_size, actions, hidden):
    super().__init__()
    self.state_encoder = nn.Sequential(
        nn.Conv2d(feature_dim, 32, 1, bias=False), nn.ReLU(), nn.Flatten(),
        nn.Linear(32 * map_size, hidden), nn.ReLU())
    self.gru = nn.GRU(hidden, hidden, batch_first=False)
    self.actor = nn.Sequential(nn.Linear(hidden, actions), nn.Softmax(dim=-1))
    self.critic = nn.Sequential(nn.Linear(hidden, 1))
    self.hidden = hidden

  def forward(self, maps):
    """maps `[B, T, G, h, w]` -> (action probabilities `[B, T, A]`, values `[B, T]`), the GRU
    from a zero state over t (their `act`, one step at a time)."""
    b, t = maps.shape[:2]
    x = self.state_encoder(maps.flatten(0, 1)).view(b, t, -1).transpose(0, 1)
    out, _ = self.gru(x, torch.zeros(1, b, self.hidden, dtype=x.dtype))
    out = out.transpose(0, 1)
    return self.actor(out), self.critic(out)[..., 0]


class PPO(nn.Module):
  """The focuser's PPO: `policy` and `policy_old`, copies of the actor-critic."""

  def __init__(self, *args):
    super().__init__()
    self.policy, self.policy_old = ActorCritic(*args), ActorCritic(*args)


class RecurrentClassifier(nn.Module):
  def __init__(self, input_dim, hidden, num_classes, dropout=0.8):
    super().__init__()
    self.gru = nn.GRU(input_dim, hidden, batch_first=True)
    self.fc = nn.Linear(hidden, num_classes)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    out, _ = self.gru(x, torch.zeros(1, x.shape[0], self.gru.hidden_size, dtype=x.dtype))
    return self.fc(self.dropout(out))


def grid_corners(grid: int) -> torch.Tensor:
  """`Focuser.standard_actions_set[g * g]`: cell k -> (k // g, k % g) / (g - 1), float32."""
  k = torch.arange(grid * grid)
  return torch.stack([k // grid, k % grid], 1).float() / (grid - 1)


class AdaFocusV1(nn.Module):
  """gfv_net.GFV's parts: `glancer.net` (MobileNetV2, classifier Dropout + Linear),
  `focuser.net` (ResNet-50, fc) and `focuser.policy` (PPO), `classifier` (saved as 'fc'),
  `policy` (the trained actor-critic, saved as 'policy')."""

  def __init__(self, glancer_net, focuser_net, num_classes, patch, size):
    super().__init__()
    self.glancer, self.focuser = nn.Module(), nn.Module()
    self.glancer.net, self.focuser.net = glancer_net, focuser_net
    g = glancer_net.num_features
    args = (g, math.ceil(size / 32) ** 2, GRID * GRID, POLICY_HIDDEN)
    self.focuser.policy = PPO(*args)  # stale copies: the importer must read `policy`
    self.policy = ActorCritic(*args)
    self.classifier = RecurrentClassifier(g + focuser_net.num_features, CLASSIFIER_HIDDEN,
                                          num_classes)
    self.patch, self.size = patch, size

  def forward(self, video, cells=None):
    """video `[B, T, 3, S, S]` (glance at S); cells `[B, T]` forced, else the policy's argmax
    (their evaluation)."""
    b, t = video.shape[:2]
    maps = self.glancer.net.features(video.flatten(0, 1))  # get_featmap
    global_features = maps.mean([2, 3])
    probs, values = self.policy(maps.view(b, t, *maps.shape[1:]))
    cells = probs.argmax(-1) if cells is None else cells
    origins = torch.floor(grid_corners(GRID)[cells] * (self.size - self.patch)).int()  # get_patch
    frames, flat = video.flatten(0, 1), origins.view(-1, 2)
    patches = torch.stack([f[:, y:y + self.patch, x:x + self.patch]
                           for f, (y, x) in zip(frames, flat.tolist())])
    local_features = self.focuser.net.embed(patches)
    step_logits = self.classifier(torch.cat([global_features, local_features], 1).view(b, t, -1))
    return dict(logits=step_logits[:, -1], step_logits=step_logits, cells=cells,
                origins=origins, probs=probs, values=values,
                global_logits=self.glancer.net.classifier(global_features).view(b, t, -1),
                local_logits=self.focuser.net.fc(local_features).view(b, t, -1))

  def checkpoint(self, policy=True) -> dict:
    """What `main_dist.py` saves (`model_state_dict` with the GFV's own names)."""
    return {'epoch': 7, 'model_state_dict': self.state_dict(), 'glancer': self.glancer.state_dict(),
            'focuser': self.focuser.state_dict(), 'fc': self.classifier.state_dict(),
            'scaler': None, 'policy': self.policy.state_dict() if policy else None,
            'acc': 41.5, 'best_acc': 41.5, 'optimizer': None}


@torch.no_grad()
def randomize_policy_and_classifier(net: AdaFocusV1, seed: int) -> AdaFocusV1:
  g = torch.Generator().manual_seed(seed)
  for module in (net.policy, net.focuser.policy, net.classifier):
    for name, p in module.named_parameters():
      scale = 3.0 if 'actor' in name else 1.0  # decisive argmaxes
      p.normal_(0.0, scale / math.sqrt(p.shape[-1] if p.ndim > 1 else 4.0), generator=g)
  return net.eval()


@functools.cache
def reference() -> AdaFocusV1:
  torch.manual_seed(0)
  calibrate = lambda size: torch.randn(8, 3, size, size, generator=torch.Generator()
                                       .manual_seed(size))
  glancer = ref.randomize(ref.backbone('mobilenet_v2', **TINY, num_classes=C), 1,
                          calibrate(SIZE))
  focuser = ref.randomize(ref.backbone('resnet50', **TINY, num_classes=C), 2, calibrate(PATCH))
  return randomize_policy_and_classifier(AdaFocusV1(glancer, focuser, C, PATCH, SIZE), 3)


def tiny_config():
  """The default adafocus_v1 config at the reference's toy sizes; the grid, the hidden sizes
  and the classes are left to the checkpoint."""
  config = import_torch.default_config('adafocus_v1')
  config.model.update(frame_resolution=SIZE, global_resolution=SIZE, patch_sizes=(PATCH,),
                      **TINY)
  return config


def save(obj, path):
  torch.save(obj, path)
  return str(path)


def import_command_line(*args):
  """`python -m arnet_jax.tools.import_torch ARGS` in this process: (status, stdout, stderr)."""
  flag_values = flags.FlagValues()
  import_torch.define_flags(flag_values)
  argv = ['import_torch', *args]
  out, err = io.StringIO(), io.StringIO()
  with mock.patch.object(sys, 'argv', argv), contextlib.redirect_stdout(out), \
      contextlib.redirect_stderr(err):
    flag_values(argv)
    status = import_torch.run_from_flags(flag_values)
  return status, out.getvalue(), err.getvalue()


def test_an_authors_checkpoint_imports_to_the_same_patches_logits_and_policy(tmp_path):
  net = reference()
  src = save(net.checkpoint(), tmp_path / 'actnet_stage3.pth.tar')
  log = []
  out = import_torch.import_checkpoint(src, 'adafocus_v1', str(tmp_path / 'imported'),
                                       config=tiny_config(), log=log.append)
  variables, meta = checkpoint.load_variables(out)
  config = ml_collections.ConfigDict(meta['config'])
  assert (config.model.num_classes, config.model.grid, config.model.policy_hidden,
          config.model.classifier_hidden) == (C, GRID, POLICY_HIDDEN, CLASSIFIER_HIDDEN)
  assert any(line.startswith(f'The checkpoint has grid={GRID}: model.grid') for line in log)
  assert meta['dropped'] and all(k.startswith('focuser.policy.policy') for k in meta['dropped'])
  assert any(line.startswith('Dropped focuser.policy (') for line in log)

  video = torch.randn(B, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
  net64 = copy.deepcopy(net).double()
  with torch.no_grad():
    want = {k: v.numpy() for k, v in net64(video.double()).items()}
  assert len(np.unique(want['cells'])) > 1  # the policy moves the patch
  model = models.create_model(config.model).clone(dtype=jnp.float64)
  params = jax.tree.map(np.asarray, variables['params'])
  stats = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['batch_stats'])
  x = np.asarray(video.double().movedim(2, -1))

  @jit
  def forward(v, x, mode):
    return model.clone(mode=mode).apply(v, x, rngs={'gumbel': jax.random.key(5)})

  with jax.enable_x64(True):
    got = jax.tree.map(np.asarray, forward({'params': params, 'batch_stats': stats}, x, 'focus'))
    sampled = jax.tree.map(np.asarray, forward({'params': params, 'batch_stats': stats}, x,
                                               'ppo'))
  np.testing.assert_array_equal(got['grid_index'], want['cells'])
  np.testing.assert_array_equal(got['origins'], want['origins'])
  for key in ('logits', 'step_logits', 'global_logits', 'local_logits'):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-4, err_msg=key)

  # Mode ppo: the policy samples its cells; the reference forced to them gives the same
  # classifier steps, and the sampled cells' log-probabilities, the values and the entropies
  # are the reference actor-critic's.
  cells = sampled['grid_index']
  assert len(np.unique(cells)) > 1
  with torch.no_grad():
    forced = {k: v.numpy() for k, v in net64(video.double(), torch.tensor(cells).long()).items()}
  probs = forced['probs']
  np.testing.assert_allclose(sampled['step_logits'], forced['step_logits'], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(sampled['log_prob'],
                             np.log(np.take_along_axis(probs, cells[..., None], -1)[..., 0]),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(sampled['value'], forced['values'], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(sampled['entropy'], -(probs * np.log(probs)).sum(-1), rtol=1e-4,
                             atol=1e-6)


def test_the_command_line_imports_and_names_a_checkpoint_without_a_policy(tmp_path):
  config_file = tmp_path / 'tiny_v1.py'
  config_file.write_text(
      'from arnet_jax.tools import import_torch\n\n'
      'def get_config():\n'
      "  config = import_torch.default_config('adafocus_v1')\n"
      f'  config.model.update(frame_resolution={SIZE}, global_resolution={SIZE}, '
      f'patch_sizes=({PATCH},), **{TINY!r})\n'
      '  return config\n')
  net = reference()
  good = save(net.checkpoint(), tmp_path / 'stage3.pth.tar')
  status, out, err = import_command_line(f'--src={good}', '--kind=adafocus_v1',
                                         f'--out={tmp_path / "ok"}', f'--config={config_file}')
  assert status == 0, err
  assert f'Wrote {tmp_path / "ok"}' in out
  stage1 = save(net.checkpoint(policy=False), tmp_path / 'stage1.pth.tar')
  status, out, err = import_command_line(f'--src={stage1}', '--kind=adafocus_v1',
                                         f'--out={tmp_path / "no"}', f'--config={config_file}')
  assert status != 0
  assert "The checkpoint has no 'policy' state dict" in out + err
  assert 'random_patch: true' in out + err


def test_an_adafocus_v2_checkpoint_is_named_as_such(tmp_path):
  v2 = {'state_dict': {'module.global_CNN.features.0.0.weight': torch.zeros(32, 3, 3, 3),
                       'module.local_CNN.conv1.weight': torch.zeros(64, 3, 7, 7),
                       'module.policy_stn.gru.weight_ih_l0': torch.zeros(6, 2),
                       'module.classifier.classifiers.0.1.weight': torch.zeros(C, 4)}}
  with pytest.raises(ConversionError, match=r'This is an AdaFocusV2 checkpoint .* import it '
                                            r'with --kind=adafocus_v2\.'):
    import_torch.import_checkpoint(save(v2, tmp_path / 'v2.pth.tar'), 'adafocus_v1',
                                   str(tmp_path / 'out'), config=tiny_config(), log=print)
  with pytest.raises(ConversionError, match='--kind=adafocus_v1 does not fit the config.s '
                                            'model.variant=adafocus_v2'):
    config = tiny_config()
    config.model.variant = 'adafocus_v2'
    import_torch.convert_state_dict({}, 'adafocus_v1', config=config)
