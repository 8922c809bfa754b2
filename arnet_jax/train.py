"""Training: `train_and_evaluate(config, workdir)` runs one stage of the configured method.

The method (`config.model.variant`) is a registry entry (`arnet_jax.registry`): its stage
`config.stage` says what the stage trains (its module), its loss, what it freezes and what the
forward pass is given; settings are in `config[stage]`. AR-Net's stages (paper section 4.1) are
in `arnet_jax/methods/arnet.py`.

The function reads top to bottom: mesh, input, model and state, step, checkpoints, loop.
"""
from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import defaults, evaluate, flops, health, models, parallel, registry
from arnet_jax.models import kernels


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


# --- Model and optimiser. -----------------------------------------------------------------------

def stage(config: ml_collections.ConfigDict) -> registry.Stage:
  """The registry's `config.stage` of the configured method."""
  return registry.of(config).stage(config.stage)


def stage_model(config: ml_collections.ConfigDict, evaluation: bool = False):
  """The module `config.stage` trains (from the method's model), or with `evaluation` the one
  its evaluations run."""
  spec = stage(config)
  module = spec.eval_module if evaluation and spec.eval_module else spec.module
  return module(models.create_model(config.model), config)


def param_labels(params: Any, config: ml_collections.ConfigDict) -> Any:
  """The optimiser group of every parameter.

  'frozen': what the stage freezes; 'head_kernel' / 'head_bias': Linear layers (the original
  trains them at 5x / 10x the learning rate); 'no_decay': BatchNorm parameters and other biases;
  'default': the rest. A stage with a `param_group` (registry.Stage) labels the unfrozen
  parameters with their `ParamGroup`s instead.
  """
  spec = stage(config)
  frozen = spec.frozen

  def label(path: tuple[str, ...]) -> str:
    if frozen(config, path):
      return 'frozen'
    if spec.param_group is not None:
      return spec.param_group(config, path).label
    module, name = path[-2] if len(path) > 1 else '', path[-1]
    if module in ('head', 'lite_head', 'action_head'):
      return 'head_kernel' if name == 'kernel' else 'head_bias'
    if name in ('scale', 'bias'):
      return 'no_decay'
    return 'default'
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({k: label(k) for k in flat})


def learning_rate(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """The stage's learning rate per step (the stage's `lr_schedule`, else `train.lr_schedule`):
  'constant', 'step' (x0.1 at each of
  `lr_steps` epochs), 'cosine' (per step, to 0 at the end), 'cosine_epoch' (AdaFocus's: constant
  within an epoch, lr/2 (1 + cos(pi e / (E - 1))) in epoch e of E, so the last epoch runs at 0);
  after `train.warmup_epochs` of linear warm-up."""
  settings, t = config[config.stage], config.train
  total = settings.num_epochs * steps_per_epoch
  kind = settings.get('lr_schedule') or t.lr_schedule
  if kind == 'constant':
    schedule = optax.constant_schedule(settings.lr)
  elif kind == 'step':
    schedule = optax.piecewise_constant_schedule(
        settings.lr, {int(e * steps_per_epoch): 0.1 for e in settings.lr_steps
                      if e < settings.num_epochs})
  elif kind == 'cosine':
    schedule = optax.cosine_decay_schedule(settings.lr, max(1, total))
  elif kind == 'cosine_epoch':
    last = max(1, math.ceil(settings.num_epochs) - 1)

    def schedule(step):
      epoch = jnp.minimum(step // steps_per_epoch, last)
      return settings.lr * 0.5 * (1 + jnp.cos(jnp.pi * epoch / last))
  else:
    raise ValueError(f"train.lr_schedule must be one of 'step', 'cosine', 'cosine_epoch', "
                     f"'constant'; got {kind!r}")
  warmup = int(t.warmup_epochs * steps_per_epoch)
  if warmup:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, settings.lr, warmup), schedule], [warmup])
  return schedule


def create_optimizer(config: ml_collections.ConfigDict, params: Any,
                     steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with momentum and torch-style weight decay (or the stage's `optimizer='adam'`: Adam
  without weight decay), gradient clipping (`train.grad_clip`, 0: none), per-group learning
  rates."""
  t = config.train
  lr = learning_rate(config, steps_per_epoch)
  adam = config[config.stage].get('optimizer', 'sgd') == 'adam'

  def optimiser(mult: float, decay: bool) -> optax.GradientTransformation:
    """A group's optimiser at `mult` x the learning rate."""
    if adam:
      return optax.adam(lambda step: lr(step) * mult, b1=0.9, b2=0.999, eps=1e-8)
    return optax.chain(
        optax.add_decayed_weights(t.weight_decay) if decay else optax.identity(),
        optax.sgd(lambda step: lr(step) * mult, momentum=t.momentum))

  groups = {'default': optimiser(1.0, True), 'no_decay': optimiser(1.0, False),
            'head_kernel': optimiser(t.head_lr_mult, True),
            'head_bias': optimiser(t.head_bias_lr_mult, False),
            'frozen': optax.set_to_zero()}
  param_group = stage(config).param_group
  if param_group is not None:  # the stage's own groups (registry.ParamGroup)
    for path in traverse_util.flatten_dict(params):
      group = param_group(config, path)
      groups.setdefault(group.label, optimiser(group.lr_mult, group.weight_decay))
  clip = optax.clip_by_global_norm(t.grad_clip) if t.grad_clip else optax.identity()
  return optax.chain(clip, optax.multi_transform(groups, param_labels(params, config)))


# --- Initialisation. ----------------------------------------------------------------------------

def initial_variables(model, config: ml_collections.ConfigDict, example: jax.Array) -> dict:
  """Random initialisation, then whatever `config.init` names (checkpoint, backbones, policy).

  When `init.checkpoint` holds every variable (a recipe's later stages), the random
  initialisation is skipped: it would compile the whole forward pass only to be replaced.
  """
  rngs = {'params': jax.random.key(config.seed), 'gumbel': jax.random.key(config.seed + 1),
          'dropout': jax.random.key(config.seed + 2)}
  init = config.init
  abstract = lambda v: isinstance(v, jax.ShapeDtypeStruct)
  variables = None
  if init.checkpoint:
    loaded, _ = ckpt_lib.load_variables(init.checkpoint)
    variables = ckpt_lib.select_variables(
        loaded, models.abstract_variables(model, example.shape),
        f'init.checkpoint {init.checkpoint}', strict=False)
  if variables is None or any(map(abstract, jax.tree.leaves(variables))):
    fresh = dict(jax.jit(model.init)(rngs, example))
    variables = fresh if variables is None else jax.tree.map(
        lambda v, f: f if abstract(v) else v, variables, fresh)
  variables.setdefault('batch_stats', {})
  for i, path in enumerate(init.backbones):
    if path:
      variables = load_features(variables, path, f'backbone_{i}')
  if init.policy:
    variables = load_features(variables, init.policy, 'policy')
  return variables


def load_features(variables: dict, path: str, module: str) -> dict:
  """Loads a backbone checkpoint (`{'params': {'features': ...}}`) into `module/features`."""
  loaded, _ = ckpt_lib.load_variables(path)
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    if module not in tree:
      raise ValueError(f'The model has no {module} to load {path} into.')
    target = dict(tree[module])
    source = loaded.get(collection, {}).get('features')
    if source is None and collection == 'params':
      raise ValueError(f'{path} holds no backbone features (expected params/features/...); '
                       'write it with `python -m arnet_jax.tools.import_torch --kind=<arch>`.')
    if source is not None:
      ckpt_lib.check_structure(source, target['features'], f'{path} (for {module}/features)')
      target['features'] = jax.tree.map(jnp.asarray, source)
    tree[module] = target
    out[collection] = tree
  return out


# --- The step. ----------------------------------------------------------------------------------

def make_train_step(model, tx: optax.GradientTransformation, config: ml_collections.ConfigDict,
                    action_gflops: np.ndarray, mesh, steps_per_epoch: int):
  """The data-parallel step: (state, batch, key) -> (state, metrics), jitted over `mesh`.

  Written for the global batch: `jit` over arrays sharded along the mesh's batch axis, state
  replicated (big_vision's update step). XLA averages gradients and computes BatchNorm statistics
  and action usage over the global batch; random numbers (Gumbel, dropout) are drawn for the
  global batch, so the step does not depend on the device count. The learning rate and the
  stage's forward arguments (AR-Net: the Gumbel temperature) come from the step count.
  """
  spec = stage(config)
  lr = learning_rate(config, steps_per_epoch)
  action_names = registry.of(config).action_names(config.model)
  gflops_table = jnp.asarray(action_gflops, jnp.float32)
  context = registry.LossContext(gflops_table, config.train)
  replicated, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)

  @functools.partial(jax.jit, donate_argnums=0, out_shardings=(replicated, replicated),
                     in_shardings=(replicated, sharded, replicated))
  def train_step(state: TrainState, batch: dict, key: jax.Array):
    kwargs = spec.apply_kwargs(config, (state.step // steps_per_epoch).astype(jnp.float32))

    def loss_fn(params):
      out, new_state = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, batch['video'], train=True,
          mutable=['batch_stats'], **kwargs,
          rngs={'dropout': jax.random.fold_in(key, 2), 'gumbel': jax.random.fold_in(key, 1)})
      loss, parts = spec.loss(out, batch['label'], context)
      return loss, (out, new_state, parts)

    (loss, (out, new_state, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    metrics = dict(loss=loss, accuracy=jnp.mean(out['logits'].argmax(-1) == batch['label']),
                   gflops_per_frame=jnp.mean(out['actions'] @ gflops_table), lr=lr(state.step),
                   **parts, **{k: v for k, v in kwargs.items() if not isinstance(v, bool)},
                   **policy_use(out, action_names))
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          batch_stats=new_state.get('batch_stats', state.batch_stats),
                          opt_state=opt_state)
    return state, metrics

  return train_step


def policy_use(out: dict, action_names: tuple[str, ...]) -> dict:
  """`usage/<action>`: the batch's share of frames per action; `no_frame_videos` (models that
  may skip frames): its share of videos with no processed frame."""
  usage = out['actions'].mean(axis=(0, 1))
  result = {f'usage/{name}': usage[a] for a, name in enumerate(action_names)}
  if 'processed' in out:
    result.update(health.frame_counts(out['processed']))
  return result


def log_summary(summary: dict, config: ml_collections.ConfigDict, step: int,
                warn: bool) -> bool:
  """Logs a log step's summary (loss, accuracy, the policy's action usage and empty videos) and,
  with `warn`, `arnet_jax.health`'s words on it; returns whether it warned."""
  usage = {k.split('/', 1)[1]: v for k, v in summary.items() if k.startswith('usage/')}
  policy = ', '.join(f'{name} {100 * share:.0f}%' for name, share in usage.items()
                     if share >= 0.005)
  if 'no_frame_videos' in summary:
    policy += f'; {100 * summary["no_frame_videos"]:.0f}% of videos with no processed frame'
  logging.info('Step %d (%s stage): loss %.4g, accuracy %.3f; action usage %s.', step,
               config.stage, summary['loss'], summary['accuracy'], policy)
  if not warn:
    return False
  found = health.warnings(usage, summary.get('no_frame_videos'),
                          summary.get('frames_per_video'), config)
  for line in found:
    logging.warning('Step %d (%s, %s stage): %s', step, config.model.variant, config.stage, line)
  return bool(found)


# --- The loop. ----------------------------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config.stage` in `workdir`, resuming from its checkpoints; returns the final eval."""
  from arnet_jax import data as data_lib  # pylint: disable=g-import-not-at-top (TensorFlow)
  from arnet_jax.tools import report  # pylint: disable=g-import-not-at-top (matplotlib)
  from flax.metrics import tensorboard  # pylint: disable=g-import-not-at-top (TensorFlow)
  config = defaults.finalize(config)
  kernels.select(config.model.kernels)  # once per job, before anything is traced
  settings = config[config.stage]
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  if config.data.name == 'demo':
    data_lib.ensure_demo_dataset_on_all_processes(config.data.data_dir,
                                                  config.data.builder_config or 'default')
  config = data_lib.with_dataset_classes(config)

  # Mesh and input.
  mesh = parallel.make_mesh()
  local_batch = parallel.local_batch_size(config.train.batch_size, 'train.batch_size')
  top = registry.of(config).input_resolution(config.model)
  num_train = data_lib.get_builder(config.data).info.splits[config.data.train_split].num_examples
  steps_per_epoch = data_lib.steps_per_epoch(num_train, config.train.batch_size)
  total_steps = int(settings.num_epochs * steps_per_epoch)

  # Model and state (fresh, from config.init, or resumed from this workdir).
  model = stage_model(config)
  table = flops.cost_table(config.model)
  example = jnp.zeros((1, config.data.num_frames, top, top, 3), jnp.float32)
  manager = ckpt_lib.manager(os.path.join(workdir, 'checkpoints'), config.train.keep_checkpoints)
  best_manager = ckpt_lib.manager(os.path.join(workdir, 'best'), 1)
  variables = initial_variables(model, config, example)
  tx = create_optimizer(config, variables['params'], steps_per_epoch)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                     batch_stats=variables['batch_stats'],
                     opt_state=tx.init(variables['params']))
  meta = dict(config=config.to_dict(), stage=config.stage, steps_per_epoch=steps_per_epoch)
  best = {'value': -np.inf, 'metrics': None}
  best_predictions = None
  # The newest intact checkpoint (damaged ones are moved aside); one of another model stops here.
  resumed = ckpt_lib.restore_latest(manager, jax.tree.map(ocp.utils.to_shape_dtype_struct, state),
                                    meta['config'])
  if resumed is not None:
    state, saved_meta = resumed
    best = saved_meta.get('best', best)
    logging.info('Resuming %s from step %d.', workdir, int(state.step))
  state = parallel.replicate(mesh, state)
  start_step = int(state.step)

  train_step = make_train_step(model, tx, config, np.asarray(table.action_gflops), mesh,
                               steps_per_epoch)
  evaluator = evaluate.Evaluator(stage_model(config, evaluation=True), config, mesh)
  train_iter, _ = data_lib.create_split(
      config.data, config.data.train_split, batch_size=local_batch, train=True,
      num_classes=config.model.num_classes, seed=config.seed, start_batch=start_step)
  writer = tensorboard.SummaryWriter(os.path.join(workdir, 'tensorboard')) if is_main else None

  saved = {'step': start_step}

  def save(step: int, metrics: dict | None = None):
    if saved['step'] != step:
      ckpt_lib.save(manager, step, jax.device_get(state),
                    dict(meta, step=step, best=best, metrics=metrics))
      saved['step'] = step

  # SIGTERM (preemption, scancel, kill): save at a step boundary and exit cleanly.
  stop = parallel.StopOnSigterm()
  key = jax.random.key(config.seed)
  history, last_log, warned_epoch = [], time.time(), -1
  progress = evaluate.progress_bar(total_steps, start_step, f'{config.stage}', is_main)
  try:
    for step in range(start_step, total_steps):
      batch = parallel.shard_batch(mesh, {k: v for k, v in next(train_iter).items()
                                          if k in ('video', 'label')})
      state, metrics = train_step(state, batch, jax.random.fold_in(key, step))
      history.append(metrics)
      progress.update(1)
      done = step + 1
      if done % config.train.log_every_steps == 0 or done == total_steps:
        summary = {k: float(np.mean([jax.device_get(m[k]) for m in history])) for k in history[0]}
        summary['steps_per_s'] = len(history) / max(time.time() - last_log, 1e-9)
        history, last_log = [], time.time()
        progress.set_postfix(loss=f'{summary["loss"]:.3f}', acc=f'{summary["accuracy"]:.2f}')
        if is_main and log_summary(summary, config, done,
                                   warn=done // steps_per_epoch != warned_epoch):
          warned_epoch = done // steps_per_epoch  # warns at most once an epoch
        if writer:
          for k, v in summary.items():
            writer.scalar(f'train/{k}', v, done)
      end_of_epoch = done % steps_per_epoch == 0 or done == total_steps
      if end_of_epoch and (done == total_steps or
                           (done // steps_per_epoch) % config.train.eval_every_epochs == 0):
        results = evaluator.run(_variables(state), step=done, writer=writer)
        value = results['metrics'][config.train.best_metric]
        if value > best['value']:
          best = {'value': value, 'metrics': results['metrics']}
          best_predictions = results['predictions']
          # A best step this run resumed from before (killed between the two saves, or newer
          # checkpoints damaged) is trained again: the new save replaces it.
          if done in best_manager.all_steps():
            best_manager.delete(done)
          ckpt_lib.save(best_manager, done, jax.device_get(state),
                        dict(meta, step=done, best=best, metrics=results['metrics']))
        save(done, results['metrics'])
      elif done % config.train.checkpoint_every_steps == 0:
        save(done)
      if stop.requested(done):
        save(done)
        manager.wait_until_finished()
        logging.warning('Stopped by signal %d at step %d; checkpoint saved. Run the same '
                        'command again to resume.', stop.signal, done)
        return {'interrupted_at_step': done}
  finally:
    stop.close()
    progress.close()
    manager.wait_until_finished()
    best_manager.wait_until_finished()
    if writer:
      writer.flush()

  # The final evaluation is the best checkpoint's (the last one when nothing was evaluated, or
  # when this run resumed after the best evaluation and so no longer holds its predictions).
  final = best['metrics']
  if best_predictions is None:
    variables = _variables(state)
    if final is not None:
      variables = parallel.replicate(mesh, ckpt_lib.load_variables(
          os.path.join(workdir, 'best'))[0])
    results = evaluator.run(variables, step=total_steps)
    final, best_predictions = final or results['metrics'], results['predictions']
  evaluate.write_metrics(os.path.join(workdir, 'eval'), final, is_main, best_predictions)
  if is_main:
    print(evaluate.summary_table({f'{config.stage} ({config.model.variant})': final}))
  report.maybe_write_report(workdir, config)
  return final


def _variables(state: TrainState) -> dict:
  return {'params': state.params, 'batch_stats': state.batch_stats}

