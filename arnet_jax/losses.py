"""AR-Net's training losses (paper eq. 9-12) and the warm-up loss.

Shape letters: B videos, T frames, A actions, R resolution actions, C classes.

L = (1 - alpha) * CE + alpha * L_flops + beta * L_uni          ('paper', alpha 0.1, beta 0.3)
  L_flops = mean over videos and frames of the GFLOPs of the action in effect (from the lookup
            table; the straight-through one-hot carries the gradient to the policy);
  L_uni   = sum over actions of (usage_a - 1/A)^2, usage_a = share of frames taking action a.
The original code's variant is form='original' (L_uni = ||usage - 1/A||_2, unsquared) with
alpha = 0.05 and beta = 3.0.

`usage` is a statistic of the whole batch: the train step computes the loss of the global batch
(`jit` over sharded arrays), so under data parallelism it is the global batch's usage.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

LOSS_FORMS = ('paper', 'original')


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy: logits `[B, C]`, integer labels `[B]` -> scalar."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def per_step_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """CE averaged over B x T: logits `[B, T, C]`, labels `[B]` (every step the video's label)."""
  return cross_entropy(logits, jnp.broadcast_to(labels[:, None], logits.shape[:2]))


# The paper's top action, ResNet-50 at 224 px with ActivityNet's 200-class head, in GFLOPs per
# frame (FCVID's and Mini-Kinetics' heads change it by < 0.01%); tests check it against
# `arnet_jax.flops`.
PAPER_TOP_GFLOPS = 4.1321


def gflops_weight(action_gflops: jax.Array, scale: float | None = None) -> jax.Array:
  """The multiplier of the cost table `[A]` in the efficiency loss.

  None (automatic): the costliest action weighs what the paper's top action costs, so `alpha`
  means what it means in the paper for any width, depth and resolution (tiny networks at 64 px
  get ~1200, at 112 px ~400). A number: that multiplier (1.0: raw GFLOPs, as the authors).
  """
  if scale is None:
    return PAPER_TOP_GFLOPS / jnp.max(action_gflops)
  return jnp.asarray(scale, jnp.float32)


def flops_loss(actions: jax.Array, action_gflops: jax.Array) -> jax.Array:
  """Mean GFLOPs per frame of the chosen actions: actions `[B, T, A]`, table `[A]`."""
  return jnp.mean(actions @ action_gflops)


def action_usage(actions: jax.Array) -> jax.Array:
  """`[A]` share of frames taking each action."""
  return actions.mean(axis=(0, 1))


def uniformity_loss(usage: jax.Array, form: str = 'paper') -> jax.Array:
  """Paper: sum (usage - 1/A)^2. Original: the L2 norm of usage - mean(usage)."""
  deviation = usage - 1.0 / usage.shape[0]
  if form == 'paper':
    return jnp.sum(deviation ** 2)
  return jnp.sqrt(jnp.sum(deviation ** 2) + 1e-12)


def arnet_loss(logits: jax.Array, labels: jax.Array, actions: jax.Array,
               action_gflops: jax.Array, *, alpha: float, beta: float,
               form: str = 'paper') -> tuple[jax.Array, dict]:
  """The joint / fine-tuning loss. Returns (loss, parts)."""
  if form not in LOSS_FORMS:
    raise ValueError(f'train.loss_form must be one of {LOSS_FORMS}, got {form!r}')
  ce = cross_entropy(logits, labels)
  fl = flops_loss(actions, action_gflops)
  uni = uniformity_loss(action_usage(actions), form)
  total = (1 - alpha) * ce + alpha * fl + beta * uni
  return total, dict(ce=ce, flops=fl, uniformity=uni)


def warmup_loss(resolution_logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict]:
  """Each resolution action trained alone as a TSN: sum over r of CE(mean_t logits_r).

  resolution_logits `[B, T, R, C]`. The classifiers share no parameters, so the sum trains each
  exactly as it would be trained alone.
  """
  per_action = jax.vmap(cross_entropy, in_axes=(1, None))(resolution_logits.mean(1), labels)
  return per_action.sum(), {f'ce_{r}': per_action[r] for r in range(per_action.shape[0])}
