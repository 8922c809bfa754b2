"""`python -m arnet_jax.export` and `arnet_jax.serving`: a checkpoint's evaluation forward as one
serialized program that a fresh process runs with JAX alone and that gives the live model's
outputs.

Tiny AR-Net and AdaFocusV2 checkpoints of random variables (T = 4 frames, batches of B = 2),
exported for CPU and CUDA (the default); one fresh process serves both folders.
"""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_variables, tiny_model_config
from conftest import tiny_adafocus_model_config

from arnet_jax import checkpoint, defaults, errors, export, flops, models, registry, serving

T, B = 4, 2
ARNET_CLASSES = [f'class_{i}' for i in range(5)]
ADAFOCUS_CLASSES = ['archery', 'bowling', 'cooking', 'diving']
# A fresh process: serves (folder, video.npy, out.npz) triples, prints the modules it loaded.
SERVE = """
import json, sys
import numpy as np
from arnet_jax import serving
for folder, video, out in zip(*[iter(sys.argv[1:])] * 3):
  np.savez(out, **serving.load(folder)(np.load(video)))
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in
                        ('flax', 'tensorflow', 'orbax', 'ml_collections', 'arnet_jax'))))
"""


@dataclasses.dataclass
class Exported:
  config: object
  variables: dict
  folder: str
  manifest: dict
  live: dict          # the live model's inference outputs on `clip(config)`
  served: dict = None  # a fresh process's `serving.load(folder)(clip(config))`


def write_checkpoint(directory, model_config, adjust=lambda model, variables, config: variables):
  """A one-step checkpoint of random variables (changed by `adjust`) with its config in meta,
  as training saves it. The device router's grid has 2 capacities: fewer branches to trace."""
  config = defaults.get_config()
  config.model = model_config
  config.data.num_frames = T
  config.eval.grid_steps = 2
  config = defaults.finalize(config)
  model = models.create_model(config.model)
  size = config.data.image_size
  variables = adjust(model, random_variables(model, jnp.zeros((1, T, size, size, 3))), config)
  checkpoint.write_variables(str(directory), variables, {'config': config.to_dict()})
  return config, variables


def standardise_policy(model, variables, config):
  """The action head standardised over the test clip's frames, so that its argmax follows how
  the frames differ rather than the largest random bias: the frames take several actions."""
  decide = jax.jit(lambda v, video: model.apply(v, video, method=lambda m, x: m.decide(x)))
  logits = np.asarray(decide(variables, clip(config))['action_logits'])
  mean, std = logits.mean((0, 1)), logits.std((0, 1))
  head = variables['params']['policy']['action_head']
  head['kernel'], head['bias'] = head['kernel'] / std, (head['bias'] - mean) / std
  return variables


def live_outputs(config, variables):
  """What evaluation's forward gives on `clip(config)` (`Evaluator.predict`, first batch)."""
  forward = registry.of(config).inference(models.create_model(config.model), config)
  rng = jax.random.fold_in(jax.random.key(config.eval.seed), 0)
  out = forward(variables, jnp.asarray(clip(config)), rng=rng)
  return {k: np.asarray(v) for k, v in out.items()}


def clip(config, seed=0):
  size = config.data.image_size
  return np.random.default_rng(seed).normal(size=(B, T, size, size, 3)).astype(np.float32)


def start(args, logs):
  """A child process writing its stdout and stderr to files (a full pipe would block it)."""
  with open(f'{logs}.out', 'w', encoding='utf-8') as out, \
       open(f'{logs}.err', 'w', encoding='utf-8') as err:
    return subprocess.Popen([sys.executable, *args], stdout=out, stderr=err)


def finished(process, logs):
  """The child's stdout, once it has ended well."""
  process.wait()
  with open(f'{logs}.err', encoding='utf-8') as f:
    assert process.returncode == 0, f.read()[-3000:]
  with open(f'{logs}.out', encoding='utf-8') as f:
    return f.read()


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """{'arnet', 'adafocus': Exported}, and the modules the serving process loaded.

  AR-Net (two ResNet-18s, the quickest to trace) is exported by the function, with a
  SavedModel, while a child process exports AdaFocusV2 by the command line; then one fresh
  process serves both folders while this one computes the live outputs (2 cores)."""
  root = tmp_path_factory.mktemp('export')
  config, variables = write_checkpoint(root / 'adafocus', tiny_adafocus_model_config())
  (root / 'classInd.txt').write_text('\n'.join(ADAFOCUS_CLASSES) + '\n')
  cli = start(['-m', 'arnet_jax.export', f'--checkpoint={root / "adafocus"}',
               f'--out={root / "adafocus_out"}', f'--batch_size={B}',
               f'--class_names={root / "classInd.txt"}'], root / 'cli')
  runs = {'adafocus': (config, variables)}
  model_config = tiny_model_config(backbones=('resnet18', 'resnet18'), resolutions=(32, 16),
                                   policy_backbone='resnet18')
  runs['arnet'] = write_checkpoint(root / 'arnet', model_config, standardise_policy)
  export.export_checkpoint(str(root / 'arnet'), str(root / 'arnet_out'), batch_size=B,
                           names=ARNET_CLASSES, saved_model=True)
  stdout = finished(cli, root / 'cli')
  args = []
  for name, (config, _) in runs.items():
    np.save(root / f'{name}.npy', clip(config))
    args += [str(root / f'{name}_out'), str(root / f'{name}.npy'), str(root / f'{name}.npz')]
  serve = start(['-c', SERVE, *args], root / 'serve')
  result = {}
  for name, (config, variables) in runs.items():
    folder = str(root / f'{name}_out')
    result[name] = Exported(config, variables, folder, serving.read_manifest(folder),
                            live_outputs(config, variables))
  modules = json.loads(finished(serve, root / 'serve').strip().splitlines()[-1])
  for name in runs:
    result[name].served = dict(np.load(root / f'{name}.npz'))
  return result, modules, stdout


def assert_same_outputs(run):
  got, live = run.served, run.live
  assert set(got) == set(live) | {'gflops'}
  for key, value in live.items():
    assert got[key].shape == value.shape and got[key].dtype == value.dtype, key
    np.testing.assert_allclose(got[key], value, atol=1e-5, rtol=0, err_msg=key)
  table = flops.cost_table(run.config.model)
  np.testing.assert_allclose(got['gflops'],
                             flops.decision_gflops(live['actions'], table)['per_video'],
                             rtol=1e-12)


def test_exported_arnet_gives_the_live_outputs_in_a_fresh_process(exported):
  run = exported[0]['arnet']
  assert {0, 1} <= set(run.live['actions'].argmax(-1).ravel())  # both backbones have frames
  assert_same_outputs(run)


def test_exported_adafocus_v2_gives_the_live_outputs_in_a_fresh_process(exported):
  assert_same_outputs(exported[0]['adafocus'])


def test_serving_loads_neither_flax_nor_the_model_code(exported):
  assert exported[1] == ['arnet_jax', 'arnet_jax.serving']  # no flax, tensorflow, orbax either


def test_the_folder_holds_the_program_its_weights_and_the_manifest(exported):
  runs = exported[0]
  assert sorted(os.listdir(runs['adafocus'].folder)) == ['manifest.json', 'model.jax_export',
                                                         'variables.npz']
  assert sorted(os.listdir(runs['arnet'].folder)) == ['manifest.json', 'model.jax_export',
                                                      'saved_model', 'variables.npz']
  run = runs['arnet']
  manifest = run.manifest
  assert manifest['input']['shape'] == [B, T, 32, 32, 3]
  assert manifest['input']['dtype'] == 'float32'
  assert manifest['input']['normalisation']['mean'] == [0.485, 0.456, 0.406]
  assert manifest['method']['variant'] == 'arnet'
  assert manifest['class_names'] == ARNET_CLASSES
  assert manifest['action_names'] == list(flops.cost_table(run.config.model).action_names)
  assert manifest['outputs']['logits'] == dict(shape=[B, 5], dtype='float32')
  assert manifest['platforms'] == ['cpu', 'cuda'] and manifest['jax_version'] == jax.__version__
  with np.load(os.path.join(run.folder, 'variables.npz')) as weights:
    assert 'params/backbone_0/head/kernel' in weights.files
    assert len(weights.files) == manifest['num_weights']


def test_the_command_line_reports_what_it_wrote_and_reads_the_class_names(exported):
  manifest, stdout = exported[0]['adafocus'].manifest, exported[2]
  assert manifest['class_names'] == ADAFOCUS_CLASSES
  assert manifest['method']['variant'] == 'adafocus_v2'
  assert manifest['routing']['dispatch'] == 'masked'
  assert 'adafocus_v2 for [2, 4, 32, 32, 3] float32' in stdout and 'on cpu, cuda' in stdout


def test_the_saved_model_gives_the_live_outputs(exported):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  run = exported[0]['arnet']
  assert run.manifest['saved_model'] == 'saved_model'
  loaded = tf.saved_model.load(os.path.join(run.folder, 'saved_model'))
  got = loaded.signatures['serving_default'](video=tf.constant(clip(run.config)))
  assert set(got) == set(run.live)
  for key, value in run.live.items():
    np.testing.assert_allclose(got[key].numpy(), value, atol=1e-5, rtol=0, err_msg=key)


def test_arnet_routes_in_one_program_planned_as_evaluation_plans_each_platform(exported):
  routing = exported[0]['arnet'].manifest['routing']
  assert routing['dispatch'] == 'device'
  assert routing['per_platform'] == {'cpu': dict(plan='binary', kernels='cpu'),
                                     'cuda': dict(plan='grid', kernels='xla')}


def test_host_dispatch_is_exported_as_the_device_dispatch():
  config = defaults.get_config()
  config.eval.dispatch = 'host'
  assert export.platform_config(config, 'tpu').eval.dispatch == 'device'
  assert config.eval.dispatch == 'host'  # a copy


def test_a_video_of_another_batch_shape_is_refused_naming_the_exported_one(exported):
  run = exported[0]['arnet']
  model = serving.load(run.folder)
  video = clip(run.config)
  with pytest.raises(ValueError, match=r'video has shape \[1, 4, 32, 32, 3\], but this model '
                     r'was exported for \[2, 4, 32, 32, 3\] float32 \(2 videos of 4 frames, '
                     r'32x32 RGB, ImageNet-normalised\): pad the batch to 2 videos \(and drop '
                     r'the padding outputs\) or export again with --batch_size=1\.$'):
    model(video[:1])
  with pytest.raises(ValueError, match='call it on 2 videos at a time or export again with '
                     '--batch_size=4'):
    model(np.concatenate([video, video]))
  with pytest.raises(ValueError, match=r"sample, resize and crop the clips as the manifest's "
                     r'"preprocessing" says\.$'):
    model(video[:, :2])


def test_a_clip_that_is_not_normalised_floats_is_refused(exported):
  run = exported[0]['arnet']
  with pytest.raises(ValueError, match='video is uint8, but this model takes .* scale uint8 '
                     'frames to \\[0, 1\\], then subtract the manifest.s mean'):
    serving.load(run.folder)(clip(run.config).astype(np.uint8))


def test_a_missing_checkpoint_is_one_error_line_and_status_2(tmp_path):
  done = subprocess.run([sys.executable, '-m', 'arnet_jax.export',
                         f'--checkpoint={tmp_path / "nowhere"}', f'--out={tmp_path / "out"}'],
                        capture_output=True, text=True, check=False)
  assert done.returncode == errors.EXIT_STATUS
  shown = [line for line in done.stderr.splitlines() if line.startswith('error: ')]
  assert shown == [f'error: Checkpoint {tmp_path / "nowhere"} does not exist. Give a training '
                   'workdir, its checkpoints/ or best/ folder, or one step folder inside them.']
  assert 'Traceback' not in done.stderr and not (tmp_path / 'out').exists()


def test_an_output_folder_in_use_is_refused_before_anything_is_written(exported, tmp_path):
  (tmp_path / 'out').mkdir()
  (tmp_path / 'out' / 'notes.txt').write_text('mine')
  with pytest.raises(errors.UserError, match='not an empty folder'):
    export.export_checkpoint(exported[0]['arnet'].manifest['checkpoint']['path'],
                             str(tmp_path / 'out'))
  assert os.listdir(tmp_path / 'out') == ['notes.txt']
