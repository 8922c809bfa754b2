"""The training losses (paper eq. 9-12) have the values and gradients the paper defines."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arnet_jax import losses

TABLE = jnp.array([4.0, 2.0, 0.5, 0.0, 0.0])


def one_hot(ids):
  return jax.nn.one_hot(jnp.asarray(ids), 5)


def test_flops_loss_is_the_mean_gflops_of_the_chosen_actions():
  actions = one_hot([[0, 1, 3, 3], [2, 2, 4, 0]])
  assert float(losses.flops_loss(actions, TABLE)) == pytest.approx((4 + 2 + 0.5 * 2 + 4) / 8)


def test_uniformity_loss_is_zero_for_uniform_usage_and_grows_with_imbalance():
  assert float(losses.uniformity_loss(jnp.full(5, 0.2))) == pytest.approx(0.0)
  one_action = jnp.array([1.0, 0, 0, 0, 0])
  assert float(losses.uniformity_loss(one_action)) == pytest.approx(0.8 ** 2 + 4 * 0.2 ** 2)
  assert float(losses.uniformity_loss(one_action, 'original')) == pytest.approx(
      np.sqrt(0.8 ** 2 + 4 * 0.2 ** 2))


def test_arnet_loss_weights_its_terms_as_equation_12():
  logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  labels = jnp.array([0, 2])
  actions = one_hot([[0, 3], [1, 4]])
  total, parts = losses.arnet_loss(logits, labels, actions, TABLE, alpha=0.1, beta=0.3)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  usage = actions.mean((0, 1))
  expected = 0.9 * ce + 0.1 * (4 + 2) / 4 + 0.3 * jnp.sum((usage - 0.2) ** 2)
  assert float(total) == pytest.approx(float(expected), rel=1e-6)
  assert set(parts) == {'ce', 'flops', 'uniformity'}


def test_the_reference_top_action_is_the_papers_resnet50_at_224():
  from arnet_jax import flops  # pylint: disable=g-import-not-at-top
  assert flops.backbone_gflops('resnet50', 224, 200) == pytest.approx(losses.PAPER_TOP_GFLOPS,
                                                                      abs=1e-4)


@pytest.mark.parametrize('top_gflops', [4.1321, 0.0034, 0.0108])  # paper, demo @64, demo @112
def test_the_automatic_gflops_weight_makes_the_top_action_weigh_as_the_papers(top_gflops):
  table = jnp.array([top_gflops, top_gflops / 3, 0.0])
  weighted = table * losses.gflops_weight(table)
  assert float(weighted[0]) == pytest.approx(losses.PAPER_TOP_GFLOPS, rel=1e-6)
  assert float(weighted[1]) == pytest.approx(losses.PAPER_TOP_GFLOPS / 3, rel=1e-6)


def test_a_given_gflops_weight_is_used_as_it_is():
  assert float(losses.gflops_weight(TABLE, 1.0)) == 1.0
  assert float(losses.gflops_weight(TABLE, 1200.0)) == 1200.0


def test_efficiency_loss_pushes_the_policy_towards_cheaper_actions():
  actions = one_hot([[0, 1]])
  grad = jax.grad(lambda a: losses.flops_loss(a, TABLE))(actions)
  np.testing.assert_allclose(grad[0, 0], TABLE / 2)  # d/d(one-hot) = cost / frames


def test_warmup_loss_trains_each_resolution_action_alone():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 4, 3, 5)))  # [B, T, R, C]
  labels = jnp.array([1, 4])
  total, parts = losses.warmup_loss(logits, labels)
  per_action = [optax.softmax_cross_entropy_with_integer_labels(logits[:, :, r].mean(1),
                                                                labels).mean() for r in range(3)]
  assert float(total) == pytest.approx(float(sum(per_action)), rel=1e-6)
  assert float(parts['ce_2']) == pytest.approx(float(per_action[2]), rel=1e-6)
