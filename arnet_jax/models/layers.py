"""Building blocks shared by the backbones: initialisers, padding rules, convolutions, pooling.

Shapes: images are NHWC, `[N, H, W, C]`. Convolution kernels are `[kh, kw, C_in/groups, C_out]`
(flax layout; a converter transposes torch's `[C_out, C_in/groups, kh, kw]`).

The convolutions and the max pool are computed by the active kernel set (`kernels.active()`,
looked up when a layer is traced): tap formulations with custom gradients on CPU, XLA's native
ops elsewhere (`arnet_jax.models.kernels`).

Padding is always explicit (torch style, `(k - 1) // 2` on both sides, or EfficientNet's static
"same" padding), never flax's 'SAME': for stride 2 flax pads asymmetrically, which would make
imported PyTorch weights disagree with their reference.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from arnet_jax.models import kernels

Dtype = Any
Padding = Sequence[tuple[int, int]]
Initializer = Callable[..., jax.Array]


# --- Initialisers: plain JAX, no host callbacks. ----------------------------------------------
# `jax.jit(model.init)` compiles one sampler per parameter. JAX's samplers (threefry or philox
# bits, an erf_inv normal) are hundreds of HLO instructions each, which made compiling AR-Net's
# initialisation several times slower than with host callbacks (docs/kernels_bench.md). Here a
# parameter's values are a keyed integer hash of the element index (counter-based, as threefry,
# with a cheaper hash), turned into normals by Box-Muller: a few dozen instructions per parameter.
# The per-parameter key that flax derives (`fold_in` of the module path) is the hash's key, so the
# values are a deterministic function of the init key, equal on every backend up to float
# rounding of log/cos. Good for initialisation (moments tested), not a general-purpose PRNG.

def _lowbias32(x: jax.Array) -> jax.Array:
  """Chris Wellons' `lowbias32` integer hash (hash-prospector): a bijection of uint32."""
  # lax, not jnp, operators throughout the sampler: they trace several times faster.
  xorshift = lambda x, n: lax.bitwise_xor(x, lax.shift_right_logical(x, np.uint32(n)))
  x = lax.mul(xorshift(x, 16), np.uint32(0x7FEB352D))
  x = lax.mul(xorshift(x, 15), np.uint32(0x846CA68B))
  return xorshift(x, 16)


# Jitted so that an eager (unjitted) `model.init` compiles one program per shape, not one per op.
@functools.partial(jax.jit, static_argnums=1)
def _unit_uniforms(key: jax.Array, count: int) -> jax.Array:
  """`[count]` float32 in [0, 1): the hashes of 0..count-1 keyed by every word of `key`."""
  if count >= 2**32:
    raise ValueError(f'cannot draw {count} values from a 32-bit counter')
  words = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  words = lax.convert_element_type(lax.reshape(words, (words.size,)), jnp.uint32)
  bits = lax.iota(jnp.uint32, count)
  for i in range(words.shape[0]):
    # The golden-ratio offsets keep an all-zero key from mapping counter 0 to 0.
    word = lax.add(lax.index_in_dim(words, i, keepdims=False),
                   np.uint32((0x9E3779B9 * (i + 1)) % 2**32))
    bits = _lowbias32(lax.bitwise_xor(bits, word))
  # 23 random mantissa bits under exponent 0: a float in [1, 2), minus 1.
  one_to_two = lax.bitwise_or(lax.shift_right_logical(bits, np.uint32(9)), np.uint32(0x3F800000))
  return lax.sub(lax.bitcast_convert_type(one_to_two, jnp.float32), np.float32(1))


@functools.partial(jax.jit, static_argnums=1)
def _standard_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """N(0, 1) by Box-Muller's cosine branch on uniform pairs (counters i and n + i)."""
  n = math.prod(shape)
  u = _unit_uniforms(key, 2 * n)
  # 1 - u is in (0, 1]: the log is finite, |z| <= sqrt(2 * 23 * ln 2) = 5.65.
  radius = lax.sqrt(lax.mul(np.float32(-2), lax.log1p(lax.neg(lax.slice_in_dim(u, 0, n)))))
  angle = lax.mul(np.float32(2 * np.pi), lax.slice_in_dim(u, n, 2 * n))
  return lax.reshape(lax.mul(radius, lax.cos(angle)), tuple(shape))


def normal_init(stddev: float) -> Initializer:
  """N(0, stddev^2) for every element."""
  def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
    return (stddev * _standard_normal(key, tuple(shape))).astype(dtype)
  return init


def uniform_init(bound: float) -> Initializer:
  """U(-bound, bound) for every element."""
  def init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
    u = _unit_uniforms(key, math.prod(shape)).reshape(shape)
    return (bound * (2.0 * u - 1.0)).astype(dtype)
  return init


def conv_init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
  """torchvision's ResNet / MobileNetV2 conv init: N(0, 2 / fan_out), fan_out = k*k*C_out.

  `shape` is a flax kernel `[kh, kw, C_in/groups, C_out]`; for a depthwise kernel `[k, k, 1, C]`
  fan_out is k*k*C, as torch computes it for a grouped convolution.
  """
  fan_out = math.prod(shape[:-2]) * shape[-1]
  return (math.sqrt(2.0 / fan_out) * _standard_normal(key, tuple(shape))).astype(dtype)


def torch_padding(kernel_size: int) -> Padding:
  """Symmetric padding of a torch `Conv2d(padding=(k - 1) // 2)`."""
  p = (kernel_size - 1) // 2
  return ((p, p), (p, p))


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
  """TF-style 'same' padding for an input of `size` (efficientnet_pytorch's static padding).

  Returns (before, after); the odd pixel goes after, as in `Conv2dStaticSamePadding`.
  """
  out = -(-size // stride)
  pad = max((out - 1) * stride + kernel_size - size, 0)
  return pad // 2, pad - pad // 2


def batch_norm(train: bool, *, dtype: Dtype, name: str,
               momentum: float = 0.9, epsilon: float = 1e-5,
               zero_init: bool = False) -> nn.BatchNorm:
  """BatchNorm with torch's defaults (torch momentum 0.1 == flax momentum 0.9).

  No axis name: under `jit` over a globally sharded batch the statistics are those of the global
  batch, whatever the number of devices (the train step's business, not the model's).
  """
  return nn.BatchNorm(
      use_running_average=not train, momentum=momentum, epsilon=epsilon, dtype=dtype,
      name=name,
      scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


class DepthwiseConv(nn.Module):
  """Depthwise (groups = channels) k x k convolution without bias, `[N, H, W, C] -> [N, H', W', C]`.

  Kernel `[k, k, 1, C]`, the layout of a flax grouped `nn.Conv`. The active kernel set
  (`kernels.active()`) computes it: shifted multiply-adds on CPU, XLA's grouped convolution
  elsewhere.
  """
  kernel_size: int
  strides: int = 1
  padding: Padding | None = None  # default: torch's (k - 1) // 2 on every side
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = conv_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, 1, x.shape[-1]), jnp.float32)
    return kernels.active().depthwise_conv(x.astype(self.dtype), kernel.astype(self.dtype),
                                           self.strides, self.padding or torch_padding(k))


def max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
  """torch's `MaxPool2d(window, stride, padding)` on `[N, H, W, C]` (the active kernel set's)."""
  return kernels.active().max_pool(x, window, stride, padding)


def _active_conv(*args, **kwargs) -> jax.Array:
  """The active kernel set's convolution, looked up when flax's `nn.Conv` is traced."""
  return kernels.active().conv(*args, **kwargs)


def conv(features: int, kernel_size: int, *, strides: int = 1, padding: Padding | None = None,
         use_bias: bool = False, dtype: Dtype, name: str,
         kernel_init: Initializer = conv_init) -> nn.Conv:
  """A dense (groups = 1) convolution with explicit padding, computed by the active kernel set."""
  return nn.Conv(features, (kernel_size, kernel_size), strides=(strides, strides),
                 padding=padding if padding is not None else torch_padding(kernel_size),
                 use_bias=use_bias, dtype=dtype, kernel_init=kernel_init, name=name,
                 conv_general_dilated=_active_conv)


class GlobalAvgPool(nn.Module):
  """`[N, H, W, C] -> [N, C]`, accumulated in float32 (a module so FLOP counting sees it)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


relu6 = functools.partial(jnp.clip, min=0.0, max=6.0)
