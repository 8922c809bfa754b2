"""Backend-specific kernels of the backbones: two sets of the same three functions.

Shapes (NHWC, flax kernel layouts):
  depthwise_conv(x `[N, H, W, C]`, kernel `[k, k, 1, C]`, stride, padding) -> `[N, H', W', C]`
  conv(lhs `[N, H, W, C_in]`, rhs `[kh, kw, C_in, C_out]`, window_strides, padding, ...)
      -> `[N, H', W', C_out]`; the signature of `lax.conv_general_dilated`, which flax's
      `nn.Conv(conv_general_dilated=...)` calls. Unlike lax, dimension numbers default to NHWC.
  max_pool(x `[N, H, W, C]`, window, stride, padding) -> `[N, H', W', C]`: torch's
      `MaxPool2d(window, stride, padding)`, the padding being -inf.
`padding` is explicit `((top, bottom), (left, right))` for the convolutions, an int for the pool.

The sets:
- 'cpu': formulations XLA's CPU backend runs faster than its native ones.
  * depthwise_conv: the k*k strided slices of the padded input, each times one kernel tap, summed
    (XLA fuses them into one pass); XLA's grouped convolution is slow on CPU.
  * conv: XLA's forward, except that an unpadded 1 x 1 convolution is the matrix product
    `[N*H'*W', C_in] @ [C_in, C_out]` of the (strided) input (the same numbers; a ResNet-50
    forward 1.2x and a MobileNetV2 forward 1.5x faster than XLA's convolution here); XLA's
    input gradient; a custom kernel gradient, one
    `[C_in, N*H'*W'] @ [N*H'*W', C_out]` product per kernel tap, because XLA's CPU
    kernel-gradient convolution is many times slower than the forward. Convolutions the custom
    rule does not cover (dilated, grouped, string-padded, other layouts, an explicit precision
    or output type) and those of at most 4 input channels (an image: XLA's own gradient is
    faster there) are the 'xla' set's.
  * max_pool: the maximum of the k*k strided slices; a custom gradient to the first maximum of
    each window in row-major order (torch's rule), scattered back with k*k strided pads that XLA
    fuses, instead of XLA's select-and-scatter, which is slow on CPU.
- 'xla': XLA's native ops and JAX's own gradients, the fast path on GPU and TPU:
  `lax.conv_general_dilated` with `feature_group_count=C` for depthwise, plain
  `lax.conv_general_dilated`, and `lax.reduce_window(max)` whose gradient is XLA's
  select-and-scatter. On ties that scatter picks the element its `select` (`>=`) keeps; on the
  CPU backend that is the first maximum in row-major order, as torch (tested), but XLA does not
  specify the order in which other backends visit a window, so a tie may go elsewhere there.
  Ties are rare with real activations (no two equal floats in a window).

Both sets run the policy's LSTM as a `lax.scan` of `scan_unroll` steps per iteration (1 until
an accelerator measures a larger one faster: `bench.inference --scan_unroll`).

`select(name)` chooses the set, once, from `KERNEL_SETS`; 'auto' is 'cpu' on the CPU backend and
'xla' elsewhere. `active()` is the chosen set ('auto' unless selected). The layers look it up
when they are traced, so select before tracing: jitted functions keep the kernels they were
traced with. Measurements: docs/kernels_bench.md, `python -m arnet_jax.bench.kernels`.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = Sequence[tuple[int, int]]
KERNEL_SETS = ('auto', 'cpu', 'xla')
NHWC = ('NHWC', 'HWIO', 'NHWC')


class KernelSet(NamedTuple):
  """One implementation of each kernel (see the module docstring for shapes)."""
  name: str
  depthwise_conv: Callable[..., jax.Array]
  conv: Callable[..., jax.Array]
  max_pool: Callable[..., jax.Array]
  scan_unroll: int = 1  # policy LSTM steps per `lax.scan` iteration (`jax.lax.scan(unroll=)`)


# --- 'cpu': tap formulations and custom gradients. ------------------------------------------------

def _window_taps(x: jax.Array, k: int, stride: int) -> tuple[list[jax.Array], int, int]:
  """The k*k strided slices `[N, H', W', C]` of a padded `[N, H, W, C]` (row-major tap order)."""
  h_out = (x.shape[1] - k) // stride + 1
  w_out = (x.shape[2] - k) // stride + 1
  taps = [lax.slice(x, (0, i, j, 0),
                    (x.shape[0], i + (h_out - 1) * stride + 1, j + (w_out - 1) * stride + 1,
                     x.shape[3]), (1, stride, stride, 1))
          for i in range(k) for j in range(k)]
  return taps, h_out, w_out


def cpu_depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int,
                       padding: Padding) -> jax.Array:
  """Depthwise convolution as a sum of k*k strided slices times kernel taps."""
  k = kernel.shape[0]
  (pt, pb), (pl, pr) = padding
  x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  taps, _, _ = _window_taps(x, k, stride)
  return functools.reduce(jnp.add, (tap * kernel[t // k, t % k, 0] for t, tap in enumerate(taps)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def cpu_max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
  """torch's max pool as the maximum of k*k strided slices; gradient to each first maximum."""
  x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
              constant_values=-jnp.inf)
  taps, _, _ = _window_taps(x, window, stride)
  return functools.reduce(jnp.maximum, taps)


def _cpu_max_pool_fwd(x, window, stride, padding):
  out = cpu_max_pool(x, window, stride, padding)
  return out, (x, out)


def _cpu_max_pool_bwd(window, stride, padding, residuals, g):
  x, out = residuals
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
               constant_values=-jnp.inf)
  taps, h_out, w_out = _window_taps(xp, window, stride)
  taken = jnp.zeros(out.shape, bool)  # windows whose maximum already took the gradient
  dx = jnp.zeros(xp.shape, g.dtype)
  zero = jnp.zeros((), g.dtype)
  for t, tap in enumerate(taps):
    i, j = divmod(t, window)
    first = (tap == out) & ~taken
    taken = taken | first
    # Interior padding spreads the window grid back to the input's positions of this tap.
    dx = dx + lax.pad(jnp.where(first, g, zero), zero, (
        (0, 0, 0),
        (i, xp.shape[1] - i - (h_out - 1) * stride - 1, stride - 1),
        (j, xp.shape[2] - j - (w_out - 1) * stride - 1, stride - 1),
        (0, 0, 0)))
  return (dx[:, padding:xp.shape[1] - padding, padding:xp.shape[2] - padding],)


cpu_max_pool.defvjp(_cpu_max_pool_fwd, _cpu_max_pool_bwd)


def _is_nhwc(lhs: jax.Array, rhs: jax.Array, dimension_numbers) -> bool:
  if dimension_numbers is None:
    return True
  return (lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
          == lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC))


def cpu_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding,
             lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
             dimension_numbers=None, feature_group_count: int = 1, precision=None,
             preferred_element_type=None) -> jax.Array:
  """Dense convolution (a matrix product if 1 x 1 and unpadded) whose kernel gradient is a sum
  of per-tap matrix products."""
  undilated = all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  if (feature_group_count != 1 or not undilated or isinstance(padding, str)
      or not _is_nhwc(lhs, rhs, dimension_numbers) or rhs.shape[2] <= 4
      or precision is not None or preferred_element_type is not None):
    return xla_conv(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                    dimension_numbers, feature_group_count, precision, preferred_element_type)
  return _conv_nhwc(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_nhwc(x, kernel, strides, padding):
  if kernel.shape[:2] == (1, 1) and all(tuple(p) == (0, 0) for p in padding):
    x = x[:, ::strides[0], ::strides[1]]  # a 1 x 1 convolution: a matrix product
    n, h, w, c = x.shape
    return jnp.dot(x.reshape(n * h * w, c), kernel.reshape(c, -1)).reshape(n, h, w, -1)
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC)


def _conv_nhwc_fwd(x, kernel, strides, padding):
  return _conv_nhwc(x, kernel, strides, padding), (x, kernel)


def _conv_nhwc_bwd(strides, padding, residuals, g):
  x, kernel = residuals
  _, input_vjp = jax.vjp(
      lambda x: lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC), x)
  (dx,) = input_vjp(g)
  kh, kw = kernel.shape[:2]
  (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  n, ho, wo, _ = g.shape
  taps = [lax.slice(xp, (0, i, j, 0),
                    (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, xp.shape[3]),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  dkernel = jnp.stack([jnp.einsum('nhwc,nhwd->cd', tap, g, preferred_element_type=jnp.float32)
                       for tap in taps])
  return dx, dkernel.reshape(kernel.shape).astype(kernel.dtype)


_conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


# --- 'xla': native ops, JAX's own gradients. ------------------------------------------------------

def xla_depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int,
                       padding: Padding) -> jax.Array:
  """Depthwise convolution as XLA's grouped convolution (one group per channel)."""
  return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=NHWC,
                                  feature_group_count=x.shape[-1])


def xla_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding,
             lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
             dimension_numbers=None, feature_group_count: int = 1, precision=None,
             preferred_element_type=None) -> jax.Array:
  """`lax.conv_general_dilated`, NHWC unless `dimension_numbers` says otherwise."""
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                  dimension_numbers or NHWC, feature_group_count,
                                  precision=precision,
                                  preferred_element_type=preferred_element_type)


def xla_max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
  """torch's max pool as `lax.reduce_window(max)`; its -inf init value pads."""
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1),
                           ((0, 0), (padding, padding), (padding, padding), (0, 0)))


# --- Selection. -----------------------------------------------------------------------------------

CPU = KernelSet('cpu', cpu_depthwise_conv, cpu_conv, cpu_max_pool)
XLA = KernelSet('xla', xla_depthwise_conv, xla_conv, xla_max_pool)
_active: KernelSet | None = None  # None: 'auto', resolved on first use


def get(name: str) -> KernelSet:
  """The kernel set called `name` ('auto' resolved for the current backend), not selecting it."""
  if name not in KERNEL_SETS:
    raise ValueError(f'kernels must be one of {KERNEL_SETS}, got {name!r}')
  if name == 'auto':
    name = 'cpu' if jax.default_backend() == 'cpu' else 'xla'
  return {'cpu': CPU, 'xla': XLA}[name]


def select(name: str, *, scan_unroll: int | None = None) -> KernelSet:
  """Makes `name` (one of `KERNEL_SETS`) the set the layers use from now on; returns it.
  `scan_unroll` overrides the set's LSTM unrolling (benchmarks sweep it)."""
  global _active
  _active = get(name)
  if scan_unroll is not None:
    if scan_unroll < 1:
      raise ValueError(f'scan_unroll must be >= 1, got {scan_unroll}')
    _active = _active._replace(scan_unroll=scan_unroll)
  return _active


def active() -> KernelSet:
  """The selected kernel set; 'auto' if none was selected."""
  return _active if _active is not None else select('auto')
