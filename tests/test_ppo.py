"""AdaFocus V1's PPO pieces (arnet_jax.ppo) on hand-computed examples."""
import jax
import jax.numpy as jnp
import numpy as np

from arnet_jax import ppo

EPS = 1e-5


def test_discounted_returns_sum_the_future_rewards_per_video():
  rewards = jnp.asarray([[1., 0., 2.], [0., 1., 0.]])
  np.testing.assert_allclose(ppo.discounted_returns(rewards, 0.5),
                             [[1.5, 1., 2.], [0.5, 1., 0.]])


def test_normalise_uses_the_unbiased_std_over_every_element():
  x = jnp.asarray([[1.5, 1., 2.]])  # mean 1.5, unbiased std 0.5
  np.testing.assert_allclose(ppo.normalise(x), [[0., -0.5 / (0.5 + EPS), 0.5 / (0.5 + EPS)]],
                             rtol=1e-6)


def test_ppo_loss_on_a_hand_computed_batch():
  # Returns [1.5, 1, 2] normalised to ~[0, -1, 1]; advantages = returns - values.
  rewards = jnp.asarray([[1., 0., 2.]])
  value = jnp.asarray([[0.2, -0.4, 0.1]])
  entropy = jnp.asarray([[1., 2., 3.]])
  log_prob = jnp.log(jnp.asarray([[0.5, 0.25, 0.1]]))
  loss, parts = ppo.ppo_loss(log_prob, value, entropy, rewards, gamma=0.5)
  g = np.asarray([0., -1., 1.]) * 0.5 / (0.5 + EPS)
  advantage = g - np.asarray([0.2, -0.4, 0.1])
  expected = dict(policy_loss=-advantage.mean(), value_loss=np.mean(advantage ** 2),
                  entropy=2.0, reward=1.0)
  for k, v in expected.items():
    np.testing.assert_allclose(parts[k], v, rtol=1e-5, err_msg=k)
  np.testing.assert_allclose(loss, expected['policy_loss'] + 0.5 * expected['value_loss']
                             - 0.01 * 2.0, rtol=1e-5)


def test_one_update_per_batch_is_the_policy_gradient_with_a_baseline():
  # rho = 1, so d loss / d log_prob = -advantage / N (A2C), whatever the clip.
  rewards, value = jnp.asarray([[1., 0., 2.]]), jnp.asarray([[0.2, -0.4, 0.1]])
  grad = jax.grad(lambda lp: ppo.ppo_loss(lp, value, jnp.zeros_like(lp), rewards, gamma=0.5,
                                          clip=0.01)[0])(jnp.zeros((1, 3)))
  advantage = np.asarray([0., -1., 1.]) * 0.5 / (0.5 + EPS) - np.asarray([0.2, -0.4, 0.1])
  np.testing.assert_allclose(grad, -advantage[None] / 3, rtol=1e-5)


def test_the_clip_stops_the_gradient_of_a_ratio_beyond_it():
  rewards, value = jnp.asarray([[1., 0., 2.]]), jnp.zeros((1, 3))
  old = jnp.zeros((1, 3))
  log_prob = jnp.asarray([[0., 0., jnp.log(1.5)]])  # step 2: ratio 1.5, advantage > 0
  grad = jax.grad(lambda lp: ppo.ppo_loss(lp, value, jnp.zeros_like(lp), rewards, gamma=0.5,
                                          old_log_prob=old)[0])(log_prob)
  assert grad[0, 2] == 0.0
  assert grad[0, 1] != 0.0


def test_the_value_loss_trains_the_critic_towards_the_normalised_returns():
  rewards = jnp.asarray([[1., 0., 2.]])
  grad = jax.grad(lambda v: ppo.ppo_loss(jnp.zeros((1, 3)), v, jnp.zeros((1, 3)), rewards,
                                         gamma=0.5)[0])(jnp.zeros((1, 3)))
  g = np.asarray([0., -1., 1.]) * 0.5 / (0.5 + EPS)
  np.testing.assert_allclose(grad, 0.5 * 2 * (0 - g)[None] / 3, rtol=1e-5, atol=1e-7)


def test_categorical_normal_and_bernoulli_match_their_closed_forms():
  log_p, entropy = ppo.categorical(jnp.zeros((2, 4)))
  np.testing.assert_allclose(log_p, np.log(0.25), rtol=1e-6)
  np.testing.assert_allclose(entropy, np.log(4), rtol=1e-6)
  x, mean = jnp.asarray([[0.5, 0.2]]), jnp.asarray([[0.25, 0.2]])
  expected = (-0.5 * (0.25 / 0.25) ** 2 - 2 * (np.log(0.25) + 0.5 * np.log(2 * np.pi)))
  np.testing.assert_allclose(ppo.normal_log_prob(x, mean, 0.25), [expected], rtol=1e-6)
  np.testing.assert_allclose(ppo.normal_entropy(0.25, 2),
                             2 * (0.5 + 0.5 * np.log(2 * np.pi) + np.log(0.25)), rtol=1e-6)
  log_prob, h = ppo.bernoulli(jnp.asarray([0., np.log(3.)]), jnp.asarray([True, False]))
  np.testing.assert_allclose(log_prob, [np.log(0.5), np.log(0.25)], rtol=1e-6)
  np.testing.assert_allclose(h[0], np.log(2), rtol=1e-6)


def test_returns_with_gamma_zero_are_the_rewards():
  rewards = jnp.asarray([[1., 2., 3.]])
  np.testing.assert_allclose(ppo.discounted_returns(rewards, 0.0), rewards)
