"""Subprocess side of tests/test_scale.py (JAX's device count and processes are fixed at start).

  python tests/scale_worker.py equivalence OUT.json
      On 8 (fake CPU) devices: 3 joint-stage train steps on the same global batches with a
      mesh of 1 device and with one of 8; writes the largest differences of parameters,
      BatchNorm statistics and losses; then the device router on a batch split over the 8
      devices against masked compute on one.
  python tests/scale_worker.py train OUT.json DATA_DIR WORKDIR PROCESS_ID PORT SIGTERM_AT_BATCH
      Process PROCESS_ID of 2 (coordinator localhost:PORT): joint training on the tiny demo,
      sending itself SIGTERM when its input yields batch SIGTERM_AT_BATCH (-1: never); after a
      completed run, also evaluates WORKDIR from its checkpoint. Writes what each returned.
"""
import concurrent.futures
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from conftest import sigterm_at_batch, tiny_train_config  # pylint: disable=wrong-import-position

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from arnet_jax import evaluate, flops, parallel, train  # pylint: disable=wrong-import-position

STEPS = 3


def equivalence(out_path: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  config = tiny_train_config(data_dir=None)  # joint stage, AR-Net, no dropout; no data read
  model = train.stage_model(config)
  variables = train.initial_variables(model, config, jnp.zeros((1, 16, 64, 64, 3)))
  tx = train.create_optimizer(config, variables['params'], steps_per_epoch=STEPS)
  state0 = jax.device_get(train.TrainState(  # on the host: each run gets its own copy to donate
      jnp.zeros((), jnp.int32), variables['params'], variables['batch_stats'],
      tx.init(variables['params'])))
  gflops = np.asarray(flops.cost_table(config.model).action_gflops)
  rng = np.random.default_rng(0)
  batches = [{'video': rng.normal(size=(8, 16, 64, 64, 3)).astype(np.float32),
              'label': np.arange(8, dtype=np.int32) % 4} for _ in range(STEPS)]

  def compiled_step(devices: int):
    """The step on the first `devices` devices, compiled ahead (both compile at once)."""
    mesh = parallel.make_mesh(jax.devices()[:devices])
    step = train.make_train_step(model, tx, config, gflops, mesh, steps_per_epoch=STEPS)
    args = (parallel.replicate(mesh, state0), parallel.shard_batch(mesh, batches[0]),
            jax.random.key(0))
    return mesh, step.lower(*args).compile()

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    steps = dict(zip((1, 8), pool.map(compiled_step, (1, 8))))
  results = {}
  for devices, (mesh, step) in steps.items():
    state, losses = parallel.replicate(mesh, state0), []
    for i, batch in enumerate(batches):
      state, metrics = step(state, parallel.shard_batch(mesh, batch), jax.random.key(i))
      losses.append(float(metrics['loss']))
    results[devices] = (jax.device_get(state), losses)
  (one, loss_one), (eight, loss_eight) = results[1], results[8]

  def max_diff(a, b):
    return max(float(np.max(np.abs(x - y), initial=0)) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  changed = max_diff(one.params, state0.params)
  routed = device_routing(model, {'params': one.params, 'batch_stats': one.batch_stats},
                          batches[0]['video'])
  with open(out_path, 'w') as f:
    json.dump(dict(**routed, params=max_diff(one.params, eight.params),
                   batch_stats=max_diff(one.batch_stats, eight.batch_stats),
                   loss=float(np.max(np.abs(np.subtract(loss_one, loss_eight)))),
                   params_moved=changed, steps=int(eight.step)), f)


def device_routing(model, variables, video) -> dict:
  """The device router on a batch split over 8 devices (each routes its own videos) against
  masked compute on one device."""
  from arnet_jax.models import routing  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  router = routing.DeviceRouter(model, plan='binary')
  sharded = router(parallel.replicate(mesh, variables),
                   parallel.shard_batch(mesh, {'video': video})['video'])
  masked = jax.jit(model.apply)(variables, jnp.asarray(video))
  return dict(routing_logits=float(jnp.abs(sharded['logits'] - masked['logits']).max()),
              routing_actions_equal=bool((sharded['actions'] == masked['actions']).all()),
              routing_syncs=router.stats.syncs, routing_dispatches=router.stats.dispatches,
              routing_shards=router.stats.shards)


def train_process(out_path, data_dir, workdir, process_id, port, sigterm_batch):
  config = tiny_train_config(data_dir)
  config.distributed = True
  config.coordinator_address = f'localhost:{port}'
  config.num_processes, config.process_id = 2, int(process_id)
  parallel.initialize_distributed(config)  # what main.py does for config.distributed
  assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()
  if int(sigterm_batch) >= 0:
    sigterm_at_batch(int(sigterm_batch))
  result = {'train': train.train_and_evaluate(config, workdir)}
  if 'interrupted_at_step' not in result['train']:
    eval_config = config.copy_and_resolve_references()
    eval_config.mode, eval_config.checkpoint = 'eval', workdir
    result['eval'] = evaluate.evaluate_checkpoint(eval_config, os.path.join(workdir, 'from_ckpt'))
  with open(out_path, 'w') as f:
    json.dump(result, f)


if __name__ == '__main__':
  # The same persistent compilation cache as the test session (process 0 writes it).
  if os.environ.get('ARNET_TEST_XLA_CACHE'):
    jax.config.update('jax_compilation_cache_dir', os.environ['ARNET_TEST_XLA_CACHE'])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  if sys.argv[1] == 'equivalence':
    equivalence(sys.argv[2])
  else:
    train_process(*sys.argv[2:])
