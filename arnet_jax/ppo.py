"""Policy-gradient pieces of AdaFocus V1's stage 2 and AdaFocus+: returns, the PPO loss and the
policies' distributions.

Shape letters: B videos, T steps (frames), A actions.

The authors' `ppo.py` (after PPO-PyTorch): per batch of B videos x T steps with rewards r_t,

  G_t     = r_t + gamma G_{t+1}  (G_T = 0), per video;     gamma 0.7
  G^      = (G - mean(G)) / (std(G) + 1e-5)                 over all B x T (torch's unbiased std)
  A_t     = G^_t - V_t                                      (V without gradient)
  rho_t   = exp(log pi(a_t) - log pi_old(a_t))
  L       = mean_{B,T} [ -min(rho A, clip(rho, 1 - eps, 1 + eps) A) ]
            + c_V mean_{B,T} (V - G^)^2 - c_H mean_{B,T} H(pi)        eps 0.2, c_V 0.5, c_H 0.01

Their K = 1 update per batch, sampled by the policy being updated, makes pi_old = pi: rho = 1 in
value and its gradient is that of log pi, so the clipped objective is the policy gradient with
the critic's baseline (A2C). `ppo_loss` writes rho = exp(log pi - stop_gradient(log pi)) by
default, which is exactly that; give `old_log_prob` for more than one update per batch.
Under `jit` over a globally sharded batch the means and the std are over the global batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def discounted_returns(rewards: jax.Array, gamma: float) -> jax.Array:
  """`[B, T]` rewards -> `[B, T]` G_t = sum_{k >= t} gamma^(k - t) r_k."""
  def step(following, r):
    g = r + gamma * following
    return g, g
  _, returns = jax.lax.scan(step, jnp.zeros(rewards.shape[0], rewards.dtype), rewards.T,
                            reverse=True)
  return returns.T


def normalise(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """(x - mean) / (std + eps) over every element, std with Bessel's correction (torch's)."""
  return (x - x.mean()) / (jnp.std(x, ddof=1) + eps)


def ppo_loss(log_prob: jax.Array, value: jax.Array, entropy: jax.Array, rewards: jax.Array, *,
             gamma: float = 0.7, clip: float = 0.2, value_weight: float = 0.5,
             entropy_weight: float = 0.01, old_log_prob: jax.Array | None = None
             ) -> tuple[jax.Array, dict]:
  """The clipped surrogate with a value loss and an entropy bonus (module docstring).

  Args: `[B, T]` each: the log-probability of the taken actions, the critic's values, the
    policy's entropy (with gradient), the rewards (no gradient needed: it is stopped).
  Returns (loss, parts: policy, value, entropy, mean reward).
  """
  returns = jax.lax.stop_gradient(normalise(discounted_returns(rewards, gamma)))
  old = jax.lax.stop_gradient(log_prob if old_log_prob is None else old_log_prob)
  ratio = jnp.exp(log_prob - old)
  advantage = returns - jax.lax.stop_gradient(value)
  surrogate = jnp.minimum(ratio * advantage, jnp.clip(ratio, 1 - clip, 1 + clip) * advantage)
  parts = dict(policy_loss=-surrogate.mean(), value_loss=jnp.mean((value - returns) ** 2),
               entropy=entropy.mean(), reward=jnp.mean(jax.lax.stop_gradient(rewards)))
  loss = (parts['policy_loss'] + value_weight * parts['value_loss']
          - entropy_weight * parts['entropy'])
  return loss, parts


# --- Distributions (float32). ---------------------------------------------------------------------

def categorical(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`[..., A]` logits -> (`[..., A]` log-probabilities, `[...]` entropy)."""
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return log_p, -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def normal_log_prob(x: jax.Array, mean: jax.Array, std: float) -> jax.Array:
  """`[..., D]` -> `[...]`: log N(x; mean, std^2 I) (torch's MultivariateNormal with a diagonal
  scale_tril of `std`)."""
  z = (x - mean) / std
  d = x.shape[-1]
  return jnp.sum(-0.5 * z ** 2, axis=-1) - d * (jnp.log(std) + 0.5 * jnp.log(2 * jnp.pi))


def normal_entropy(std: float, dims: int) -> jax.Array:
  """The entropy of N(., std^2 I) in `dims` dimensions."""
  return jnp.asarray(dims * (0.5 + 0.5 * jnp.log(2 * jnp.pi) + jnp.log(std)), jnp.float32)


def bernoulli(logit: jax.Array, taken: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`[...]` logit of p(1) and the taken `[...]` bool -> (log-probability, entropy)."""
  logit = logit.astype(jnp.float32)
  log_p1, log_p0 = jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit)
  p1 = jnp.exp(log_p1)
  return jnp.where(taken, log_p1, log_p0), -(p1 * log_p1 + (1 - p1) * log_p0)
