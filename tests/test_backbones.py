"""Backbones keep the reference structure (parameter counts equal torchvision/efficientnet_pytorch)
and compute the same under either kernel set."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arnet_jax import models
from arnet_jax.models import kernels


def num_params(module, size):
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  return sum(x.size for x in jax.tree.leaves(variables['params']))


# Parameter counts with a 1000-class head, as printed by the reference implementations.
@pytest.mark.parametrize('name,count', [
    ('resnet18', 11_689_512), ('resnet34', 21_797_672), ('resnet50', 25_557_032),
    ('mobilenet_v2', 3_504_872), ('efficientnet_b0', 5_288_548), ('efficientnet_b1', 7_794_184),
    ('efficientnet_b2', 9_109_994), ('efficientnet_b3', 12_233_232),
])
def test_parameter_count_equals_reference_implementation(name, count):
  classifier = models.Classifier(models.create_backbone(name), 1000)
  assert num_params(classifier, 64) == count


@pytest.mark.parametrize('name,features', [('resnet18', 512), ('resnet50', 2048),
                                           ('mobilenet_v2', 1280), ('efficientnet_b3', 1536)])
def test_backbones_return_pooled_features(name, features):
  net = models.create_backbone(name)
  out = jax.eval_shape(lambda: net.init_with_output(jax.random.key(0),
                                                    jnp.zeros((2, 96, 96, 3)))[0])
  assert out.shape == (2, features) and net.num_features == features


def test_width_and_depth_multipliers_shrink_the_same_structure():
  tiny = models.create_backbone('resnet50', width_multiplier=0.125, depth_multiplier=0.34)
  assert tiny.stage_sizes == (1, 1, 2, 1) and tiny.num_features == 256
  assert num_params(tiny, 32) < num_params(models.create_backbone('resnet50'), 32) / 50


def test_unknown_backbone_names_the_choices():
  with pytest.raises(ValueError, match='resnet50'):
    models.create_backbone('resnet51')


def test_bfloat16_compute_stays_close_to_float32():
  kw = dict(width_multiplier=0.25, depth_multiplier=0.34)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  f32 = models.Classifier(models.create_backbone('resnet18', **kw), 10)
  bf16 = models.Classifier(models.create_backbone('resnet18', dtype=jnp.bfloat16, **kw), 10)
  variables = f32.init(jax.random.key(1), x)
  a, b = f32.apply(variables, x), bf16.apply(variables, x)
  assert b.dtype == jnp.float32  # logits are returned in float32
  np.testing.assert_allclose(b, a, atol=0.05 * float(jnp.abs(a).max()) + 1e-3)


# Every kernel the sets implement: ResNet's dense convolutions and max pool, MobileNetV2's
# depthwise convolutions at strides 1 and 2 (two inverted residuals keep the compile short).
@pytest.mark.parametrize('name,module_kwargs', [
    ('resnet18', {}), ('mobilenet_v2', dict(setting=((1, 16, 1, 1), (6, 24, 1, 2))))],
    ids=['resnet18', 'mobilenet_v2'])
def test_backbone_features_and_gradients_agree_under_both_kernel_sets(name, module_kwargs):
  net = models.create_backbone(name, width_multiplier=0.25, depth_multiplier=0.34,
                               **module_kwargs)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = jax.jit(net.init)(jax.random.key(1), x)
  g = jax.random.normal(jax.random.key(2), (2, net.num_features))
  loss = lambda params: jnp.vdot(net.apply({**variables, 'params': params}, x), g)
  previous = kernels.active().name
  results = {}
  try:
    for kernel_set in ('cpu', 'xla'):
      kernels.select(kernel_set)  # before tracing: the layers look the set up then
      results[kernel_set] = jax.jit(jax.value_and_grad(loss))(variables['params'])
  finally:
    kernels.select(previous)
  (loss_cpu, grads_cpu), (loss_xla, grads_xla) = results['cpu'], results['xla']
  np.testing.assert_allclose(loss_cpu, loss_xla, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads_cpu), jax.tree.leaves(grads_xla)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))
