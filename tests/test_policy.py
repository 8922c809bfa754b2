"""The policy: Gumbel-Softmax straight-through, skip semantics, frozen LSTM state, determinism."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arnet_jax.models import policy

H, A = 4, 5
SKIPS = (0, 0, 0, 2, 4)  # actions 0-2 classify, 3 skips 2 frames, 4 skips 4 frames


def random_policy_params(key, batch=2, frames=10, hidden=H, actions=A):
  k = jax.random.split(key, 4)
  return dict(input_gates=jax.random.normal(k[0], (batch, frames, 4 * hidden)),
              hh_kernel=jax.random.normal(k[1], (hidden, 4 * hidden)) * 0.5,
              head_kernel=jax.random.normal(k[2], (hidden, actions)),
              head_bias=jax.random.normal(k[3], (actions,)))


def test_gumbel_softmax_forward_is_one_hot_of_the_perturbed_argmax():
  logits = jax.random.normal(jax.random.key(0), (64, A))
  noise = jax.random.gumbel(jax.random.key(1), (64, A))
  sample = policy.gumbel_softmax_st(logits, noise, 5.0)
  np.testing.assert_array_equal(sample.sum(-1), 1.0)
  np.testing.assert_array_equal(sample.argmax(-1),
                                (jax.nn.log_softmax(logits) + noise).argmax(-1))


def test_gumbel_softmax_gradient_is_that_of_the_tempered_softmax():
  logits = jax.random.normal(jax.random.key(0), (A,))
  noise = jax.random.gumbel(jax.random.key(1), (A,))
  w = jnp.arange(A, dtype=jnp.float32)
  tau = 2.0
  got = jax.grad(lambda z: policy.gumbel_softmax_st(z, noise, tau) @ w)(logits)
  soft = lambda z: jax.nn.softmax((jax.nn.log_softmax(z) + noise) / tau) @ w
  np.testing.assert_allclose(got, jax.grad(soft)(logits), rtol=1e-5, atol=1e-7)
  assert np.abs(got).sum() > 0


def test_temperature_follows_the_paper_schedule():
  assert float(policy.temperature(0)) == pytest.approx(5.0)
  assert float(policy.temperature(10)) == pytest.approx(5.0 * np.exp(-0.45))
  assert float(policy.temperature(50)) == pytest.approx(5.0 * np.exp(-2.25))


def test_skip_k_removes_exactly_frames_t_to_t_plus_k_minus_1():
  p = random_policy_params(jax.random.key(0), batch=1, frames=10)
  # t=1 skip2 covers t=2; t=3 skip4 covers 4,5,6; the forced actions at covered steps are ignored.
  forced = jnp.array([[0, 3, 1, 4, 0, 0, 0, 2, 3, 0]])
  trace = policy.scan_policy(**p, skip_lengths=SKIPS, sampling='argmax', forced=forced)
  np.testing.assert_array_equal(trace.decided[0], [1, 1, 0, 1, 0, 0, 0, 1, 1, 0])
  np.testing.assert_array_equal(trace.actions[0].argmax(-1), [0, 3, 3, 4, 4, 4, 4, 2, 3, 3])
  classified = trace.actions[0, :, :3].sum(-1)
  np.testing.assert_array_equal(classified, [1, 0, 0, 0, 0, 0, 0, 1, 0, 0])


def test_lstm_state_h_and_c_is_frozen_across_skipped_steps():
  p = random_policy_params(jax.random.key(1), batch=1, frames=8)
  forced = jnp.array([[1, 4, 0, 0, 0, 0, 1, 1]])  # t=1 skip4: steps 2, 3, 4 are covered
  trace = policy.scan_policy(**p, skip_lengths=SKIPS, sampling='argmax', forced=forced)
  h, c = np.asarray(trace.hidden[0]), np.asarray(trace.cell[0])
  for t in (2, 3, 4):
    np.testing.assert_array_equal(h[t], h[1])
    np.testing.assert_array_equal(c[t], c[1])
  # The first step after the skip consumes frame 5 starting from the state after step 1.
  c5, h5 = policy.lstm_step((c[1][None], h[1][None]), p['input_gates'][:, 5], p['hh_kernel'])
  np.testing.assert_allclose(h[5], h5[0], rtol=1e-6)
  np.testing.assert_allclose(c[5], c5[0], rtol=1e-6)
  assert not np.allclose(h[5], h[1])


def test_lstm_step_matches_torch_lstm_cell_equations():
  rng = np.random.default_rng(0)
  x, h, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
  w_ih, w_hh, b = rng.normal(size=(3, 16)), rng.normal(size=(4, 16)), rng.normal(size=16)
  gates = x @ w_ih + b + h @ w_hh
  sig = lambda z: 1 / (1 + np.exp(-z))
  i, f, g, o = np.split(gates, 4, axis=-1)
  c_ref = sig(f) * c + sig(i) * np.tanh(g)
  h_ref = sig(o) * np.tanh(c_ref)
  c_new, h_new = policy.lstm_step((c, h), jnp.asarray(x @ w_ih + b), jnp.asarray(w_hh))
  np.testing.assert_allclose(c_new, c_ref, rtol=1e-5)
  np.testing.assert_allclose(h_new, h_ref, rtol=1e-5)


def test_stepping_the_policy_group_by_group_equals_one_scan():
  p = random_policy_params(jax.random.key(5), batch=2, frames=10)
  forced = jnp.array([[0, 4, 1, 1, 1, 3, 0, 2, 4, 1], [3, 1, 0, 4, 2, 2, 0, 1, 3, 3]])
  whole = policy.scan_policy(**p, skip_lengths=SKIPS, sampling='argmax', forced=forced)
  carry, traces = policy.initial_carry(2, H, A), []
  for lo, hi in ((0, 3), (3, 6), (6, 10)):  # skips chosen at 1, 5 and 8 cover the next group
    part = dict(p, input_gates=p['input_gates'][:, lo:hi])
    carry, trace = policy.step_policy(carry, **part, skip_lengths=SKIPS, sampling='argmax',
                                      forced=forced[:, lo:hi])
    traces.append(trace)
  for name, y in whole._asdict().items():
    np.testing.assert_allclose(np.concatenate([getattr(t, name) for t in traces], 1), y,
                               rtol=1e-6)


def test_inactive_steps_keep_the_policys_carry():
  p = random_policy_params(jax.random.key(6), batch=2, frames=4)
  forced = jnp.full((2, 4), 4)  # skip 4 frames: a pending skip must survive inactive steps too
  carry, _ = policy.step_policy(policy.initial_carry(2, H, A), **p, skip_lengths=SKIPS,
                                sampling='argmax', forced=forced,
                                active=jnp.array([[True] * 4, [True, False, False, False]]))
  first, _ = policy.step_policy(policy.initial_carry(2, H, A),
                                **dict(p, input_gates=p['input_gates'][:, :1]),
                                skip_lengths=SKIPS, sampling='argmax', forced=forced[:, :1])
  assert carry.remaining.tolist() == [0, 3]  # video 1 stopped after its first step
  for name in ('cell', 'hidden', 'action'):
    np.testing.assert_array_equal(getattr(carry, name)[1], getattr(first, name)[1])


def test_argmax_decisions_follow_the_action_logits():
  p = random_policy_params(jax.random.key(2), batch=3, frames=6)
  trace = policy.scan_policy(**p, skip_lengths=(0,) * A, sampling='argmax')
  np.testing.assert_array_equal(trace.actions.argmax(-1), trace.logits.argmax(-1))
  assert trace.decided.all()


def test_uniform_sampling_ignores_the_policy_and_covers_every_action():
  p = random_policy_params(jax.random.key(3), batch=64, frames=8)
  noise = jax.random.gumbel(jax.random.key(4), (64, 8, A))
  trace = policy.scan_policy(**p, skip_lengths=(0,) * A, sampling='uniform', noise=noise)
  counts = np.bincount(np.asarray(trace.actions.argmax(-1)).ravel(), minlength=A)
  assert (counts > 0.5 * counts.sum() / A).all()  # every action used, roughly evenly
  np.testing.assert_array_equal(trace.logits, 0.0)


def test_gumbel_sampling_requires_noise():
  p = random_policy_params(jax.random.key(0))
  with pytest.raises(ValueError, match='noise'):
    policy.scan_policy(**p, skip_lengths=SKIPS, sampling='gumbel')
