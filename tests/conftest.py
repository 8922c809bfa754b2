"""Shared fixtures: tiny AR-Net configurations of the paper's structure, fast on CPU."""
import os
import signal
import subprocess
import sys

# The suite is bound by XLA compile time on CPU: tiny models, a few steps each. Unoptimised LLVM
# code and XLA's loop emitters (instead of its newer fusion emitters) compile the train tests'
# training step 3.4x faster than LLVM -O1 (6.5 s -> 1.9 s) and run it 3.6x slower (0.12 s ->
# 0.42 s); see docs/testing.md for the whole suite. Fast-math stays off. XLA aborts on a flag it
# does not know, so they are first tried in a child process (a later jaxlib may drop the second),
# then one at a time if they fail together.
FAST_COMPILE_FLAGS = ('--xla_backend_optimization_level=0', '--xla_cpu_use_fusion_emitters=false')


def _xla_accepts(flags: str) -> bool:
  return subprocess.run([sys.executable, '-c', 'import jax; jax.devices()'],
                        env=dict(os.environ, XLA_FLAGS=flags), capture_output=True,
                        check=False).returncode == 0


if 'XLA_FLAGS' not in os.environ:  # set before JAX starts its backend
  os.environ['XLA_FLAGS'] = ' '.join(
      FAST_COMPILE_FLAGS if _xla_accepts(' '.join(FAST_COMPILE_FLAGS))
      else [f for f in FAST_COMPILE_FLAGS if _xla_accepts(f)])

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position

from arnet_jax import defaults  # pylint: disable=wrong-import-position


def tiny_model_config(**overrides):
  """The paper's architecture (ResNet-50/34/18 + MobileNetV2 policy) at toy width/depth/size."""
  model = defaults.get_config().model
  model.num_classes = 5
  model.resolutions = (32, 24, 16)
  model.policy_resolution = 16
  model.lstm_hidden = 16
  model.width_multiplier = 0.125
  model.depth_multiplier = 0.34
  model.dropout = 0.0
  model.update(overrides)
  return model


def random_variables(model, video, seed=0):
  """Random variables of `model`'s shapes for input `video`, drawn on the host.

  `jax.jit(model.init)` compiles the whole forward pass (~20 s for the paper's networks);
  `eval_shape` only traces it. Kernels are LeCun-normal; batch-norm statistics and affine
  parameters are random around the identity, so the normalisation is exercised too.
  """
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name = path[-1].key
    if name in ('scale', 'var'):
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    if name in ('bias', 'mean'):
      return rng.normal(0.0, 0.1, x.shape).astype(np.float32)
    return rng.normal(0.0, int(np.prod(x.shape[:-1])) ** -0.5, x.shape).astype(np.float32)
  from arnet_jax import models  # pylint: disable=g-import-not-at-top
  return jax.tree_util.tree_map_with_path(draw, models.abstract_variables(model, video.shape))


@pytest.fixture
def tiny_config():
  return tiny_model_config()


@pytest.fixture
def rngs():
  return {'params': jax.random.key(0), 'gumbel': jax.random.key(1), 'dropout': jax.random.key(2)}


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """JAX's persistent compilation cache for the session: tests that build the same program
  (e.g. an interrupted and a resumed training run) compile it once."""
  jax.config.update('jax_compilation_cache_dir', str(tmp_path_factory.mktemp('xla_cache')))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


@pytest.fixture(scope='session')
def demo_data_dir(tmp_path_factory):
  """The demo dataset's 'tiny' configuration (4 classes, 24 train / 12 validation videos)."""
  from arnet_jax.data import demo  # pylint: disable=g-import-not-at-top (imports TensorFlow)
  path = str(tmp_path_factory.mktemp('tfds'))
  demo.ensure_demo_dataset(path, 'tiny')
  return path


def tiny_train_config(data_dir, **model_overrides):
  """A full config training a small AR-Net on the tiny demo data: 3 steps per epoch."""
  config = defaults.get_config()
  config.data = defaults.data_config('demo')
  config.data.data_dir = data_dir
  config.data.builder_config = 'tiny'
  config.model = tiny_model_config(num_classes=4, backbones=('resnet18',), resolutions=(64,),
                                   policy_backbone='resnet18', policy_resolution=32,
                                   **model_overrides)
  config.train.batch_size = 8
  config.train.log_every_steps = 1
  config.eval.batch_size = 4
  config.eval.report = False
  for stage in ('warmup', 'joint', 'finetune'):
    config[stage].num_epochs = 2
  return config


def tiny_adafocus_model_config(**overrides):
  """AdaFocusV2 at toy width and size; ResNet-18s (the quickest to compile) glance and focus,
  as the AR-Net train tests use ResNet-18s (the GFLOPs tests count the paper's networks)."""
  model = defaults.get_config().model
  model.update(variant='adafocus_v2', num_classes=4, frame_resolution=32, global_resolution=24,
               global_backbone='resnet18', local_backbone='resnet18',
               patch_sizes=(16,), policy_channels=4, policy_hidden=8, classifier_hidden=16,
               width_multiplier=0.125, depth_multiplier=0.34, dropout=0.0)
  model.update(overrides)
  return model


def with_tiny_adafocus(config, **overrides):
  """`config` training a tiny AdaFocusV2 for 2 epochs (of 3 steps on the tiny demo data)."""
  config.model = tiny_adafocus_model_config(**overrides)
  config.stage = 'joint'
  config.train.update(lr_schedule='cosine', grad_clip=0.0)
  config.joint = defaults.stage_settings(lr=0.05, num_epochs=2)
  return config



ADAFOCUS_T = 4  # frames of the tiny AdaFocusV2 tests


@pytest.fixture(scope='session')
def tiny_adafocus_recipe(demo_data_dir, tmp_path_factory):
  """A tiny AdaFocusV2's recipe on the tiny demo data (warm-up and joint, an epoch each, at
  32 px and T = 4), shared by the tests that need a trained one: (config, workdir, rows)."""
  from arnet_jax import recipe  # pylint: disable=g-import-not-at-top (imports TensorFlow)
  workdir = str(tmp_path_factory.mktemp('adafocus_recipe'))
  config = with_tiny_adafocus(tiny_train_config(demo_data_dir))
  config.data.image_size, config.data.num_frames = 32, ADAFOCUS_T  # the demo's crops resized
  config.warmup = defaults.stage_settings(lr=0.05, num_epochs=1)
  config.joint.num_epochs = 1
  return config, workdir, recipe.run(config, workdir)


def sigterm_at_batch(batch_index: int, set_attribute=setattr) -> None:
  """Makes this process send itself SIGTERM when its training input yields batch `batch_index`.

  `set_attribute` patches `arnet_jax.data.create_split` (pytest's `monkeypatch.setattr` undoes
  it after the test; a worker process passes the builtin).
  """
  from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top (TensorFlow)
  create_split = data_lib.create_split

  def create_split_then_sigterm(*args, **kwargs):
    iterator, n = create_split(*args, **kwargs)
    if not kwargs.get('train'):
      return iterator, n

    def batches():
      for i, batch in enumerate(iterator):
        if i == batch_index:
          os.kill(os.getpid(), signal.SIGTERM)
        yield batch
    return batches(), n
  set_attribute(data_lib, 'create_split', create_split_then_sigterm)
