"""Layers: the fast depthwise convolution, the CPU kernel-gradient convolution, padding rules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from arnet_jax.models import layers


def grouped_conv(x, kernel, stride, padding):
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])


@pytest.mark.parametrize('kernel_size,stride,size,padding', [
    (3, 1, 9, None), (3, 2, 9, None), (3, 2, 8, None), (5, 1, 7, None), (5, 2, 11, None),
    (3, 2, 8, ((0, 1), (0, 1))), (5, 2, 10, ((1, 2), (1, 2))),
])
def test_depthwise_conv_equals_grouped_convolution(kernel_size, stride, size, padding):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 6))
  kernel = jax.random.normal(jax.random.key(1), (kernel_size, kernel_size, 1, 6))
  padding = padding or layers.torch_padding(kernel_size)
  fast = layers.depthwise_conv(x, kernel, stride, padding)
  np.testing.assert_allclose(fast, grouped_conv(x, kernel, stride, padding), rtol=1e-5,
                             atol=1e-5)


def test_depthwise_conv_module_gradient_equals_grouped_convolution():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  module = layers.DepthwiseConv(3, strides=2)
  params = module.init(jax.random.key(1), x)
  kernel = params['params']['kernel']
  g_fast = jax.grad(lambda k: (module.apply({'params': {'kernel': k}}, x) ** 2).sum())(kernel)
  g_ref = jax.grad(lambda k: (grouped_conv(x, k, 2, ((1, 1), (1, 1))) ** 2).sum())(kernel)
  np.testing.assert_allclose(g_fast, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kernel_size,stride,in_channels', [(1, 1, 8), (1, 2, 8), (3, 2, 8),
                                                            (7, 2, 3), (3, 1, 40)])
def test_conv_gradients_equal_xla_convolution(kernel_size, stride, in_channels):
  x = jax.random.normal(jax.random.key(0), (2, 11, 11, in_channels))
  kernel = jax.random.normal(jax.random.key(1), (kernel_size, kernel_size, in_channels, 5))
  padding = layers.torch_padding(kernel_size)
  ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (stride, stride), padding,
                                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  ours = lambda x, k: layers.conv_with_tap_matmul_grad(x, k, (stride, stride), padding)
  loss = lambda conv: lambda x, k: (conv(x, k) ** 2).sum()
  np.testing.assert_allclose(ours(x, kernel), ref(x, kernel), rtol=1e-5, atol=1e-4)
  for got, want in zip(jax.grad(loss(ours), (0, 1))(x, kernel),
                       jax.grad(loss(ref), (0, 1))(x, kernel)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_same_padding_matches_efficientnet_pytorch_static_padding():
  assert layers.same_padding(224, 3, 2) == (0, 1)   # odd pixel after
  assert layers.same_padding(300, 3, 1) == (1, 1)
  assert layers.same_padding(38, 5, 2) == (1, 2)
  assert layers.same_padding(7, 1, 1) == (0, 0)


def _torch_max_pool_grad(x, g, window, stride, padding):
  """Reference: torch's MaxPool2d gradient, to the first maximum of each window (row-major)."""
  n, h, w, c = x.shape
  xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
              constant_values=-np.inf)
  dx = np.zeros_like(xp)
  for b in range(n):
    for oi in range(g.shape[1]):
      for oj in range(g.shape[2]):
        for ch in range(c):
          win = xp[b, oi * stride:oi * stride + window, oj * stride:oj * stride + window, ch]
          i, j = np.unravel_index(np.argmax(win), win.shape)  # argmax: first occurrence
          dx[b, oi * stride + i, oj * stride + j, ch] += g[b, oi, oj, ch]
  return dx[:, padding:padding + h, padding:padding + w]


@pytest.mark.parametrize('size', [8, 9])
def test_max_pool_equals_flax_and_routes_gradient_to_the_first_maximum(size):
  rng = np.random.default_rng(0)
  # Few distinct values, so windows hold ties (as after a ReLU).
  x = rng.integers(0, 3, (2, size, size, 3)).astype(np.float32)
  g = rng.normal(size=(2, (size + 2 - 3) // 2 + 1, (size + 2 - 3) // 2 + 1, 3)).astype(np.float32)
  out, vjp = jax.vjp(lambda x: layers.max_pool(x, 3, 2, 1), jnp.asarray(x))
  np.testing.assert_array_equal(
      out, nn.max_pool(jnp.asarray(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))))
  np.testing.assert_allclose(vjp(jnp.asarray(g))[0], _torch_max_pool_grad(x, g, 3, 2, 1),
                             atol=1e-6)
