"""Layers and kernels: the 'cpu' and 'xla' kernel sets agree, the selector, padding, initialisers.

Agreement is to 1e-5 in float32, relative to the largest value compared.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from arnet_jax import models
from arnet_jax.models import kernels, layers


def grouped_conv(x, kernel, stride, padding):
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])


def assert_close(got, want, tol=1e-5):
  want = np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol * float(np.abs(want).max()))


def value_and_vjp(f, *args, seed=2):
  """`f(*args)` and the gradients of `<f(*args), g>` for a random cotangent g."""
  out, vjp = jax.vjp(f, *args)
  g = jax.random.normal(jax.random.key(seed), out.shape, out.dtype)
  return out, vjp(g)


@pytest.fixture
def restore_kernels():
  """Tests that select a kernel set leave the previous one active."""
  previous = kernels.active().name
  yield
  kernels.select(previous)


# --- The two kernel sets agree. -------------------------------------------------------------------

@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('padding', ['torch', 'same'])
def test_cpu_and_xla_depthwise_conv_agree_in_value_and_gradients(stride, padding):
  size, k = 10, 3
  x = jax.random.normal(jax.random.key(0), (2, size, size, 8))
  kernel = jax.random.normal(jax.random.key(1), (k, k, 1, 8))
  pad = (layers.torch_padding(k) if padding == 'torch'
         else (layers.same_padding(size, k, stride),) * 2)
  run = lambda ks: value_and_vjp(lambda x, w: ks.depthwise_conv(x, w, stride, pad), x, kernel)
  (out_cpu, (dx_cpu, dk_cpu)), (out_xla, (dx_xla, dk_xla)) = run(kernels.CPU), run(kernels.XLA)
  assert_close(out_cpu, out_xla)
  assert_close(dx_cpu, dx_xla)
  assert_close(dk_cpu, dk_xla)


@pytest.mark.parametrize('size', [8, 9])
def test_cpu_and_xla_max_pool_agree_on_tie_free_data(size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 4))  # continuous: no ties
  run = lambda ks: value_and_vjp(lambda x: ks.max_pool(x, 3, 2, 1), x)
  (out_cpu, (dx_cpu,)), (out_xla, (dx_xla,)) = run(kernels.CPU), run(kernels.XLA)
  np.testing.assert_array_equal(out_cpu, out_xla)
  assert_close(dx_cpu, dx_xla)


# --- The selector. --------------------------------------------------------------------------------

def test_select_rejects_an_unknown_name_naming_the_valid_ones():
  with pytest.raises(ValueError, match=r"'auto', 'cpu', 'xla'.*'gpu'"):
    kernels.select('gpu')


def test_auto_is_cpu_on_the_cpu_backend_and_xla_elsewhere():
  expected = 'cpu' if jax.default_backend() == 'cpu' else 'xla'
  assert kernels.get('auto').name == expected


def test_select_returns_the_set_that_becomes_active(restore_kernels):
  assert kernels.select('xla') is kernels.XLA and kernels.active() is kernels.XLA
  assert kernels.select('cpu') is kernels.CPU and kernels.active() is kernels.CPU


def _equations(f, *args):
  """`{primitive name: [params of each equation]}` of `f`'s jaxpr (top level)."""
  eqns = {}
  for e in jax.make_jaxpr(f)(*args).eqns:
    eqns.setdefault(str(e.primitive), []).append(e.params)
  return eqns


@pytest.mark.parametrize('name', ['cpu', 'xla'])
def test_layers_trace_the_selected_kernel_set(name, restore_kernels):
  kernels.select(name)
  x = jnp.ones((1, 8, 8, 6))
  depthwise = layers.DepthwiseConv(3)
  dense = layers.conv(5, 3, dtype=jnp.float32, name='conv')
  d_vars, c_vars = depthwise.init(jax.random.key(0), x), dense.init(jax.random.key(0), x)
  dw_ops = _equations(lambda x: depthwise.apply(d_vars, x), x)
  conv_ops = _equations(lambda x: dense.apply(c_vars, x), x)
  pool_ops = _equations(lambda x: layers.max_pool(x, 3, 2, 1), x)
  if name == 'xla':  # native ops, XLA's own gradients
    assert [p['feature_group_count'] for p in dw_ops['conv_general_dilated']] == [6]
    assert 'conv_general_dilated' in conv_ops and 'custom_vjp_call' not in conv_ops
    assert 'reduce_window_max' in pool_ops and 'custom_vjp_call' not in pool_ops
  else:  # depthwise taps are slices; the dense conv and the pool carry custom gradients
    assert 'conv_general_dilated' not in dw_ops and 'slice' in dw_ops
    assert 'custom_vjp_call' in conv_ops
    assert 'custom_vjp_call' in pool_ops and 'reduce_window_max' not in pool_ops


# --- Depthwise convolution, dense convolution and max pool of the 'cpu' set (today's tests). ------

@pytest.mark.parametrize('kernel_size,stride,size,padding', [
    (3, 1, 9, None), (3, 2, 9, None), (3, 2, 8, None), (5, 1, 7, None), (5, 2, 11, None),
    (3, 2, 8, ((0, 1), (0, 1))), (5, 2, 10, ((1, 2), (1, 2))),
])
def test_depthwise_conv_equals_grouped_convolution(kernel_size, stride, size, padding):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 6))
  kernel = jax.random.normal(jax.random.key(1), (kernel_size, kernel_size, 1, 6))
  padding = padding or layers.torch_padding(kernel_size)
  fast = kernels.CPU.depthwise_conv(x, kernel, stride, padding)
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
  ours = lambda x, k: kernels.CPU.conv(x, k, (stride, stride), padding)
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


def _tied_pool_input(size):
  rng = np.random.default_rng(0)
  # Few distinct values, so windows hold ties (as after a ReLU).
  x = rng.integers(0, 3, (2, size, size, 3)).astype(np.float32)
  g = rng.normal(size=(2, (size + 2 - 3) // 2 + 1, (size + 2 - 3) // 2 + 1, 3)).astype(np.float32)
  return x, g


@pytest.mark.parametrize('size', [8, 9])
def test_max_pool_equals_flax_and_routes_gradient_to_the_first_maximum(size):
  x, g = _tied_pool_input(size)
  out, vjp = jax.vjp(lambda x: kernels.CPU.max_pool(x, 3, 2, 1), jnp.asarray(x))
  np.testing.assert_array_equal(
      out, nn.max_pool(jnp.asarray(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))))
  np.testing.assert_allclose(vjp(jnp.asarray(g))[0], _torch_max_pool_grad(x, g, 3, 2, 1),
                             atol=1e-6)


@pytest.mark.skipif(jax.default_backend() != 'cpu',
                    reason="XLA leaves a window's visiting order, hence ties, to the backend")
def test_xla_max_pool_gradient_also_goes_to_the_first_maximum_on_the_cpu_backend():
  x, g = _tied_pool_input(9)
  _, vjp = jax.vjp(lambda x: kernels.XLA.max_pool(x, 3, 2, 1), jnp.asarray(x))
  np.testing.assert_allclose(vjp(jnp.asarray(g))[0], _torch_max_pool_grad(x, g, 3, 2, 1),
                             atol=1e-6)


# --- Initialisers. --------------------------------------------------------------------------------

INITIALISERS = {'conv': layers.conv_init, 'normal': layers.normal_init(0.5),
                'uniform': layers.uniform_init(0.5)}


@pytest.mark.parametrize('name', INITIALISERS)
def test_initialiser_is_a_deterministic_function_of_the_key(name):
  init = INITIALISERS[name]
  shape = (3, 3, 4, 8)
  a, b = init(jax.random.key(0), shape), init(jax.random.key(0), shape)
  jitted = jax.jit(init, static_argnums=1)(jax.random.key(0), shape)
  other = init(jax.random.key(1), shape)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(jitted, a, rtol=1e-6, atol=1e-7)
  assert a.shape == shape and a.dtype == jnp.float32
  assert np.mean(np.asarray(a) == np.asarray(other)) < 0.01


def test_kaiming_normal_std_is_sqrt_two_over_fan_out():
  kernel = np.asarray(layers.conv_init(jax.random.key(0), (3, 3, 64, 128)))
  fan_out = 3 * 3 * 128
  assert abs(kernel.std() / np.sqrt(2 / fan_out) - 1) < 0.05
  assert abs(kernel.mean()) < 0.01 * kernel.std()


def test_normal_init_has_the_normal_distributions_quantiles():
  z = np.asarray(layers.normal_init(2.0)(jax.random.key(3), (200_000,))) / 2.0
  for k, share in ((1, 0.6827), (2, 0.9545), (3, 0.9973)):
    assert abs(np.mean(np.abs(z) < k) - share) < 0.005
  assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01  # neighbours independent


def test_uniform_init_fills_its_interval_evenly():
  u = np.asarray(layers.uniform_init(0.25)(jax.random.key(4), (200_000,)))
  assert -0.25 <= u.min() and u.max() < 0.25
  np.testing.assert_allclose(np.histogram(u, 10, (-0.25, 0.25))[0] / u.size, 0.1, atol=0.005)


def test_initialisation_has_no_host_callbacks():
  net = models.Classifier(models.create_backbone('mobilenet_v2', width_multiplier=0.25,
                                                 depth_multiplier=0.34), 10)
  jaxpr = str(jax.make_jaxpr(net.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  assert 'callback' not in jaxpr
