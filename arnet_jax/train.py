"""Training: `train_and_evaluate(config, workdir)` runs one stage of the AR-Net recipe.

Stages (`config.stage`, settings in `config[stage]`; paper section 4.1):
- warmup:   every resolution action's classifier (each backbone at its resolution, and the policy
            CNN + LSTM + lite head at the lowest) trained alone as a TSN: sum of their CEs.
- joint:    the router with its policy: (1 - alpha) CE + alpha GFLOPs + beta usage uniformity,
            Gumbel temperature annealed per epoch.
- finetune: as joint with the policy frozen (its parameters and its BatchNorm statistics).
Baselines without a learned policy (uniform, lstm, multiscale, random) train on CE alone.

The function reads top to bottom: mesh, input, model and state, step, checkpoints, loop.
"""
from __future__ import annotations

import functools
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
from flax.metrics import tensorboard
from jax.sharding import PartitionSpec as P

from arnet_jax import checkpoint as ckpt_lib
from arnet_jax import data as data_lib
from arnet_jax import defaults, evaluate, flops, losses, models, parallel
from arnet_jax.models import policy as policy_lib
from arnet_jax.tools import report

STAGES = ('warmup', 'joint', 'finetune')
LEARNED_POLICY_VARIANTS = ('arnet', 'resolution_only', 'skip_only')


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


# --- Model and optimiser. -----------------------------------------------------------------------

def stage_model(config: ml_collections.ConfigDict, *, bn_axis_name: str | None = None):
  """The module a stage trains: warm-up trains the Multi-Scale model (every resolution action on
  every frame, AR-Net's parameters) with one loss per action."""
  model = models.create_model(config.model, bn_axis_name=bn_axis_name)
  if config.stage == 'warmup' and isinstance(model, models.ARNet):
    model = model.clone(policy_mode='all')
  return model


def uses_policy_loss(config: ml_collections.ConfigDict) -> bool:
  return config.stage != 'warmup' and config.model.variant in LEARNED_POLICY_VARIANTS


def frozen_policy(config: ml_collections.ConfigDict) -> bool:
  return config.stage == 'finetune' and config.model.variant in LEARNED_POLICY_VARIANTS


def param_labels(params: Any, config: ml_collections.ConfigDict) -> Any:
  """The optimiser group of every parameter.

  'frozen': the policy when fine-tuning, the unused action head in warm-up; 'head_kernel' /
  'head_bias': Linear layers (the original trains them at 5x / 10x the learning rate);
  'no_decay': BatchNorm parameters and other biases; 'default': the rest.
  """
  def label(path: tuple[str, ...]) -> str:
    if path[0] == 'policy' and (frozen_policy(config) or (
        config.stage == 'warmup' and path[1] == 'action_head')):
      return 'frozen'
    module, name = path[-2] if len(path) > 1 else '', path[-1]
    if module in ('head', 'lite_head', 'action_head'):
      return 'head_kernel' if name == 'kernel' else 'head_bias'
    if name in ('scale', 'bias'):
      return 'no_decay'
    return 'default'
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({k: label(k) for k in flat})


def learning_rate(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  stage, t = config[config.stage], config.train
  total = stage.num_epochs * steps_per_epoch
  if t.lr_schedule == 'step':
    schedule = optax.piecewise_constant_schedule(
        stage.lr, {int(e * steps_per_epoch): 0.1 for e in stage.lr_steps if e < stage.num_epochs})
  elif t.lr_schedule == 'cosine':
    schedule = optax.cosine_decay_schedule(stage.lr, max(1, total))
  else:
    raise ValueError(f"train.lr_schedule must be 'step' or 'cosine', got {t.lr_schedule!r}")
  warmup = int(t.warmup_epochs * steps_per_epoch)
  if warmup:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, stage.lr, warmup), schedule], [warmup])
  return schedule


def create_optimizer(config: ml_collections.ConfigDict, params: Any,
                     steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with momentum, torch-style weight decay, gradient clipping, per-group learning rates."""
  t = config.train
  lr = learning_rate(config, steps_per_epoch)

  def sgd(mult: float, decay: bool) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(t.weight_decay) if decay else optax.identity(),
        optax.sgd(lambda step: lr(step) * mult, momentum=t.momentum))

  groups = {'default': sgd(1.0, True), 'no_decay': sgd(1.0, False),
            'head_kernel': sgd(t.head_lr_mult, True), 'head_bias': sgd(t.head_bias_lr_mult, False),
            'frozen': optax.set_to_zero()}
  return optax.chain(optax.clip_by_global_norm(t.grad_clip),
                     optax.multi_transform(groups, param_labels(params, config)))


# --- Initialisation. ----------------------------------------------------------------------------

def initial_variables(model, config: ml_collections.ConfigDict, example: jax.Array) -> dict:
  """Random initialisation, then whatever `config.init` names (checkpoint, backbones, policy).

  When `init.checkpoint` holds every variable (a recipe's joint and fine-tuning stages), the
  random initialisation is skipped: it would compile the whole forward pass only to be replaced.
  """
  rngs = {'params': jax.random.key(config.seed), 'gumbel': jax.random.key(config.seed + 1),
          'dropout': jax.random.key(config.seed + 2)}
  init = config.init
  abstract = lambda v: isinstance(v, jax.ShapeDtypeStruct)
  variables = None
  if init.checkpoint:
    loaded, _ = ckpt_lib.load_variables(init.checkpoint)
    variables = merge_variables(dict(jax.eval_shape(model.init, rngs, example)), loaded,
                                f'init.checkpoint {init.checkpoint}')
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


def merge_variables(variables: dict, loaded: dict, what: str) -> dict:
  """Copies every entry of `loaded` whose name and shape the model has; logs the rest."""
  out = {}
  for collection, tree in variables.items():
    flat = traverse_util.flatten_dict(tree, sep='/')
    source = traverse_util.flatten_dict(loaded.get(collection, {}), sep='/')
    taken = [k for k in flat if k in source and np.shape(source[k]) == np.shape(flat[k])]
    fresh = sorted(set(flat) - set(taken))
    if fresh:
      logging.info('%s: %d %s entries keep their fresh initialisation: %s', what, len(fresh),
                   collection, ', '.join(fresh[:10]) + (' ...' if len(fresh) > 10 else ''))
    ignored = sorted(set(source) - set(taken))
    if ignored:
      logging.info('%s: %d %s entries are not used by this model: %s', what, len(ignored),
                   collection, ', '.join(ignored[:10]) + (' ...' if len(ignored) > 10 else ''))
    flat.update({k: jnp.asarray(source[k]) for k in taken})
    out[collection] = traverse_util.unflatten_dict(flat, sep='/')
  return out


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
                    action_gflops: np.ndarray, mesh):
  """A jitted data-parallel step: (state, batch, key, tau) -> (state, metrics)."""
  policy_loss = uses_policy_loss(config)
  freeze = frozen_policy(config)
  warmup = config.stage == 'warmup' and isinstance(model, models.ARNet)
  gflops_table = jnp.asarray(action_gflops, jnp.float32)
  t = config.train
  loss_gflops = gflops_table * t.flops_loss_scale

  def per_device_step(state: TrainState, batch: dict, noise: jax.Array, key: jax.Array,
                      tau: jax.Array):
    dropout_key = jax.random.fold_in(key, jax.lax.axis_index(parallel.BATCH_AXIS))

    def loss_fn(params):
      out, new_state = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, batch['video'], train=True,
          tau=tau, noise=noise, policy_train=not freeze, rngs={'dropout': dropout_key},
          mutable=['batch_stats'])
      if warmup:
        loss, parts = losses.warmup_loss(out['resolution_logits'], batch['label'])
      elif policy_loss:
        loss, parts = losses.arnet_loss(
            out['logits'], batch['label'], out['actions'], loss_gflops, alpha=t.alpha,
            beta=t.beta, form=t.loss_form, axis_name=parallel.BATCH_AXIS)
      else:
        loss, parts = losses.cross_entropy(out['logits'], batch['label']), {}
      # The global batch's loss. Its gradient with respect to the replicated parameters is the
      # average over devices: JAX sums the per-device gradients of replicated inputs itself, so
      # averaging the gradients again would scale them by the device count.
      return jax.lax.pmean(loss, parallel.BATCH_AXIS), (out, new_state, parts)

    (loss, (out, new_state, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          batch_stats=new_state.get('batch_stats', state.batch_stats),
                          opt_state=opt_state)
    metrics = dict(loss=loss, accuracy=jnp.mean(out['logits'].argmax(-1) == batch['label']),
                   gflops_per_frame=jnp.mean(out['actions'] @ gflops_table), **parts)
    return state, jax.lax.pmean(metrics, parallel.BATCH_AXIS)

  num_actions = len(action_gflops)
  step = parallel.data_parallel(
      per_device_step, mesh,
      in_specs=(P(), P(parallel.BATCH_AXIS), P(parallel.BATCH_AXIS), P(), P()),
      out_specs=(P(), P()))

  @functools.partial(jax.jit, donate_argnums=0)
  def train_step(state: TrainState, batch: dict, key: jax.Array, tau: jax.Array):
    video = batch['video']
    # Gumbel noise for the global batch, so the samples do not depend on the device count.
    noise = jax.random.gumbel(jax.random.fold_in(key, 1), (*video.shape[:2], num_actions))
    return step(state, batch, noise, jax.random.fold_in(key, 2), tau)

  return train_step


def temperature(config: ml_collections.ConfigDict, epoch: int) -> float:
  return float(policy_lib.temperature(epoch, config.train.tau0, config.train.tau_decay))


# --- The loop. ----------------------------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config.stage` in `workdir`, resuming from its checkpoints; returns the final eval."""
  defaults.validate(config)
  if config.stage not in STAGES:
    raise ValueError(f'config.stage must be one of {STAGES}, got {config.stage!r}')
  stage = config[config.stage]
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  if config.data.name == 'demo':
    data_lib.ensure_demo_dataset_on_all_processes(config.data.data_dir,
                                                  config.data.builder_config or 'default')

  # Mesh and input.
  mesh = parallel.make_mesh()
  processes = jax.process_count()
  if config.train.batch_size % jax.device_count():
    raise ValueError(f'train.batch_size={config.train.batch_size} must be a multiple of the '
                     f'{jax.device_count()} devices.')
  local_batch = config.train.batch_size // processes
  top = models.action_space(config.model).top_resolution
  if config.data.image_size != top:
    raise ValueError(f'data.image_size={config.data.image_size} must equal the model\'s top '
                     f'resolution {top}: the lower ones are resized from it.')
  num_train = data_lib.get_builder(config.data).info.splits[config.data.train_split].num_examples
  steps_per_epoch = data_lib.steps_per_epoch(num_train, config.train.batch_size)
  total_steps = int(stage.num_epochs * steps_per_epoch)

  # Model and state (fresh, from config.init, or resumed from this workdir).
  model = stage_model(config, bn_axis_name=parallel.BATCH_AXIS)
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
  if manager.latest_step() is not None:
    state, saved_meta = ckpt_lib.load(os.path.join(workdir, 'checkpoints'),
                                      jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
    best = saved_meta.get('best', best)
    logging.info('Resuming %s from step %d.', workdir, int(state.step))
  state = parallel.replicate(mesh, state)
  start_step = int(state.step)

  train_step = make_train_step(model, tx, config, np.asarray(table.action_gflops), mesh)
  evaluator = evaluate.Evaluator(model, config, mesh)  # BatchNorm ignores the axis in eval
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
  history, last_log = [], time.time()
  progress = evaluate.progress_bar(total_steps, start_step, f'{config.stage}', is_main)
  try:
    for step in range(start_step, total_steps):
      epoch = step // steps_per_epoch
      batch = parallel.shard_batch(mesh, {k: v for k, v in next(train_iter).items()
                                          if k in ('video', 'label')})
      state, metrics = train_step(state, batch, jax.random.fold_in(key, step),
                                  jnp.float32(temperature(config, epoch)))
      history.append(metrics)
      progress.update(1)
      done = step + 1
      if done % config.train.log_every_steps == 0 or done == total_steps:
        summary = {k: float(np.mean([jax.device_get(m[k]) for m in history])) for k in history[0]}
        summary.update(lr=float(learning_rate(config, steps_per_epoch)(step)),
                       tau=temperature(config, epoch),
                       steps_per_s=len(history) / max(time.time() - last_log, 1e-9))
        history, last_log = [], time.time()
        progress.set_postfix(loss=f'{summary["loss"]:.3f}', acc=f'{summary["accuracy"]:.2f}')
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

