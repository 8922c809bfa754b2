"""Building blocks shared by the backbones.

Shapes: images are NHWC, `[N, H, W, C]`. Convolution kernels are `[kh, kw, C_in/groups, C_out]`
(flax layout; a converter transposes torch's `[C_out, C_in/groups, kh, kw]`).

Padding is always explicit (torch style, `(k - 1) // 2` on both sides, or EfficientNet's static
"same" padding), never flax's 'SAME': for stride 2 flax pads asymmetrically, which would make
imported PyTorch weights disagree with their reference.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Dtype = Any
Padding = Sequence[tuple[int, int]]



def host_initializer(sample: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]):
  """A Flax initializer drawing on the host with NumPy, seeded by the JAX key.

  XLA compiles every random initializer into its own kernel (~0.1-0.3 s each on CPU), which made
  initialising AR-Net (hundreds of tensors) take minutes of compilation. Drawing on the host costs
  no compilation; the values are a deterministic function of the key, under `jit` or not.
  """
  def init(key, shape, dtype=jnp.float32):
    shape = tuple(shape)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.key_data(key)

    def draw(key_data):
      seed = np.asarray(key_data, np.uint32).ravel().tolist()
      return np.asarray(sample(np.random.default_rng(seed), shape), dtype)
    return jax.pure_callback(draw, jax.ShapeDtypeStruct(shape, dtype), key)
  return init


def normal_init(stddev: float):
  return host_initializer(lambda rng, shape: rng.normal(0.0, stddev, shape))


def uniform_init(bound: float):
  return host_initializer(lambda rng, shape: rng.uniform(-bound, bound, shape))


def _kaiming_normal_fan_out(rng, shape):
  """torchvision's ResNet / MobileNetV2 conv init: N(0, 2 / fan_out), fan_out = k*k*C_out."""
  fan_out = int(np.prod(shape[:-2])) * shape[-1]
  return rng.normal(0.0, np.sqrt(2.0 / fan_out), shape)


conv_init = host_initializer(_kaiming_normal_fan_out)


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


def batch_norm(train: bool, *, dtype: Dtype, axis_name: str | None, name: str,
               momentum: float = 0.9, epsilon: float = 1e-5,
               zero_init: bool = False) -> nn.BatchNorm:
  """BatchNorm with torch's defaults (torch momentum 0.1 == flax momentum 0.9).

  `axis_name` makes the batch statistics synchronised across devices (data parallel).
  """
  return nn.BatchNorm(
      use_running_average=not train, momentum=momentum, epsilon=epsilon, dtype=dtype,
      axis_name=axis_name if train else None, name=name,
      scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


class DepthwiseConv(nn.Module):
  """Depthwise (groups = channels) k x k convolution without bias.

  XLA's grouped convolution is ~10x slower than PyTorch's on CPU, so the convolution is written as
  k*k shifted multiply-adds, which XLA fuses into one pass. It equals
  `lax.conv_general_dilated(..., feature_group_count=C)` (tested). Kernel `[k, k, 1, C]`, the
  layout of a flax grouped `nn.Conv`.
  """
  kernel_size: int
  strides: int = 1
  padding: Padding | None = None  # default: torch's (k - 1) // 2 on every side
  dtype: Dtype = jnp.float32
  kernel_init: Callable = conv_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.strides
    channels = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (k, k, 1, channels), jnp.float32)
    return depthwise_conv(x.astype(self.dtype), kernel.astype(self.dtype), s,
                          self.padding or torch_padding(k))


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
  """`[N, H, W, C] * [k, k, 1, C] -> [N, H', W', C]` as a sum of k*k strided slices."""
  k = kernel.shape[0]
  (pt, pb), (pl, pr) = padding
  x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  taps, _, _ = _window_taps(x, k, stride)
  return functools.reduce(jnp.add, (tap * kernel[t // k, t % k, 0] for t, tap in enumerate(taps)))


def _window_taps(x: jax.Array, k: int, stride: int) -> tuple[list[jax.Array], int, int]:
  """The k*k strided slices `[N, H', W', C]` of a padded `[N, H, W, C]` (row-major tap order)."""
  h_out = (x.shape[1] - k) // stride + 1
  w_out = (x.shape[2] - k) // stride + 1
  taps = [jax.lax.slice(x, (0, i, j, 0),
                        (x.shape[0], i + (h_out - 1) * stride + 1, j + (w_out - 1) * stride + 1,
                         x.shape[3]), (1, stride, stride, 1))
          for i in range(k) for j in range(k)]
  return taps, h_out, w_out


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
  """torch's `MaxPool2d(window, stride, padding)` on `[N, H, W, C]`, with a fast gradient.

  XLA's gradient of a max pool (select-and-scatter) runs ~45x slower than the pool itself on CPU
  and dominated a tiny ResNet's training step. Here the gradient goes, as in torch, to the first
  maximum of each window in row-major order, and is scattered back with k*k strided pads that
  XLA fuses into one pass.
  """
  x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
              constant_values=-jnp.inf)
  taps, _, _ = _window_taps(x, window, stride)
  return functools.reduce(jnp.maximum, taps)


def _max_pool_fwd(x, window, stride, padding):
  out = max_pool(x, window, stride, padding)
  return out, (x, out)


def _max_pool_bwd(window, stride, padding, residuals, g):
  x, out = residuals
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
               constant_values=-jnp.inf)
  taps, h_out, w_out = _window_taps(xp, window, stride)
  taken = jnp.zeros(out.shape, bool)
  dx = jnp.zeros(xp.shape, g.dtype)
  zero = jnp.zeros((), g.dtype)
  for t, tap in enumerate(taps):
    i, j = divmod(t, window)
    first = (tap == out) & ~taken
    taken = taken | first
    dx = dx + jax.lax.pad(jnp.where(first, g, zero), zero, (
        (0, 0, 0),
        (i, xp.shape[1] - i - (h_out - 1) * stride - 1, stride - 1),
        (j, xp.shape[2] - j - (w_out - 1) * stride - 1, stride - 1),
        (0, 0, 0)))
  return (dx[:, padding:xp.shape[1] - padding, padding:xp.shape[2] - padding],)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def conv(features: int, kernel_size: int, *, strides: int = 1, padding: Padding | None = None,
         use_bias: bool = False, dtype: Dtype, name: str,
         kernel_init: Callable = conv_init) -> nn.Conv:
  """A dense (groups = 1) convolution with explicit padding."""
  return nn.Conv(features, (kernel_size, kernel_size), strides=(strides, strides),
                 padding=padding if padding is not None else torch_padding(kernel_size),
                 use_bias=use_bias, dtype=dtype, kernel_init=kernel_init, name=name,
                 conv_general_dilated=conv_with_tap_matmul_grad)


def conv_with_tap_matmul_grad(lhs, rhs, window_strides, padding, lhs_dilation=None,
                              rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                              precision=None):
  """`lax.conv_general_dilated` whose kernel gradient is a sum of matrix products on CPU.

  XLA's CPU kernel-gradient convolution runs 6-17x slower than the forward convolution (measured
  on ResNet-50 layers), which made a training step ~18x a forward pass. On CPU the kernel gradient
  is computed instead as one `[C_in, N*H*W] @ [N*H*W, C_out]` product per kernel tap; other
  backends, dilated/grouped convolutions and convolutions of few input channels (the stem, where
  XLA's own gradient is faster) use XLA's own gradient.
  """
  plain = all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  stem = rhs.shape[2] <= 4  # an image's channels: XLA's own kernel gradient is faster
  if jax.default_backend() != 'cpu' or feature_group_count != 1 or not plain or isinstance(
      padding, str) or stem:
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers or ('NHWC', 'HWIO', 'NHWC'), feature_group_count, precision=precision)
  # Under shard_map a replicated kernel meets a per-device input: make the kernel per-device
  # too, so this custom gradient's per-device kernel cotangent has the kernel's type (JAX then
  # sums it over devices, as it does for its own convolution).
  varying = jax.typeof(lhs).manual_axis_type.varying - jax.typeof(rhs).manual_axis_type.varying
  if varying:
    rhs = jax.lax.pcast(rhs, tuple(varying), to='varying')
  return _conv_nhwc(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_nhwc(x, kernel, strides, padding):
  return jax.lax.conv_general_dilated(x, kernel, strides, padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _conv_nhwc_fwd(x, kernel, strides, padding):
  return _conv_nhwc(x, kernel, strides, padding), (x, kernel)


def _conv_nhwc_bwd(strides, padding, residuals, g):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _conv_nhwc.fun(x, kernel, strides, padding), x)
  (dx,) = input_vjp(g)
  kh, kw = kernel.shape[:2]
  (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  n, ho, wo, _ = g.shape
  taps = [jax.lax.slice(xp, (0, i, j, 0),
                        (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, xp.shape[3]),
                        (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  dkernel = jnp.stack([jnp.einsum('nhwc,nhwd->cd', tap, g, preferred_element_type=jnp.float32)
                       for tap in taps])
  return dx, dkernel.reshape(kernel.shape).astype(kernel.dtype)


_conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


class GlobalAvgPool(nn.Module):
  """`[N, H, W, C] -> [N, C]`, accumulated in float32 (a module so FLOP counting sees it)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


relu6 = functools.partial(jnp.clip, min=0.0, max=6.0)
