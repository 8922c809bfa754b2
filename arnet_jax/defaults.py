"""Every config field with its default: the paper's ResNet AR-Net on ActivityNet-v1.3.

Experiment configs in `configs/` start from `get_config()` and change what differs. Sections of
the AR-Net paper (ECCV 2020) are cited where a value comes from it.

Fields left at None are derived when a job starts (`finalize`), after command-line overrides:
`data.image_size` is the model's top resolution, `data.scales` the dataset's crop scales, and
`model.num_classes`, if None, the prepared dataset's class count.
`validate` checks every field name and every enum-like value before anything runs.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.mode = 'train'         # train | eval | recipe (all three stages, then the baselines) |
                                # exit (fit exit thresholds on a checkpoint, arnet_jax.early_exit)
  config.stage = 'joint'        # warmup | joint | finetune (paper 4.1)
  config.seed = 0
  config.checkpoint = ''        # mode=eval: the checkpoint to evaluate (a workdir works)
  config.distributed = False    # multi-host: call jax.distributed.initialize() first
  # Its arguments; the defaults let JAX detect them (Cloud TPU, SLURM, Open MPI). Elsewhere
  # (e.g. several processes on one machine) give all three, process_id differing per process.
  config.coordinator_address = ''  # host:port of process 0
  config.num_processes = 0       # 0 = detect
  config.process_id = -1         # -1 = detect

  config.data = data_config('activitynet')  # paper 4.1 "Implementation details"
  # Derived when the job starts (`finalize`), so that `--config.data.name=...` and the model's
  # resolutions given on the command line decide them.
  config.data.image_size = ml_collections.config_dict.placeholder(int)
  config.data.scales = ml_collections.config_dict.placeholder(tuple)

  # --- Model (paper 3.1, 4.1). ------------------------------------------------------------------
  config.model = model = ml_collections.ConfigDict()
  model.variant = 'arnet'       # arnet | random | resolution_only | skip_only | multiscale |
                                # uniform | lstm  (see arnet_jax.models)
  model.num_classes = 200       # None: read from the prepared dataset (a custom one)
  model.backbones = ('resnet50', 'resnet34', 'resnet18')  # one per resolution, heaviest first
  model.resolutions = (224, 168, 112)
  model.policy_backbone = 'mobilenet_v2'
  model.policy_resolution = 84  # the policy looks at the lowest resolution
  model.policy_action = True    # the policy's own head is the lowest-resolution action
  model.skips = (1, 2, 4)       # skip 1, 2 or 4 frames (M = 3)
  model.lstm_hidden = 512
  model.width_multiplier = 1.0  # < 1 for tiny networks of the same structure (demo)
  model.depth_multiplier = 1.0
  model.dropout = 0.5           # before every head
  model.resize = 'nearest'      # how lower resolutions are made: 'nearest' as the original
                                # (torch F.interpolate) or antialiased 'bilinear'
  # A video of which no frame was processed (the policy skipped them all): 'none' zero logits
  # (the authors'), 'policy_head' the policy's own head on its last state (arnet_jax.models.arnet)
  model.no_frame_fallback = 'none'
  model.dtype = 'float32'       # compute dtype: float32 | bfloat16 (parameters stay float32)
  model.kernels = 'auto'        # convolution kernels: auto (cpu on a CPU, else xla) | cpu | xla
  # AdaFocusV2 (model.variant=adafocus_v2, arnet_jax/models/adafocus_v2.py); AR-Net ignores them.
  model.frame_resolution = 224  # the full frames' side (the patches' source)
  model.global_backbone = 'mobilenet_v2'  # the glance CNN on the whole frame
  model.global_resolution = 224  # its input side (the ResNet-50 glance: 96, resized)
  model.local_backbone = 'resnet50'  # the focus CNN on the patch
  model.patch_sizes = (128,)    # patch side P: one for every frame, or one per step
  model.policy_channels = 64    # the policy's 1x1 convolution
  model.policy_hidden = 2048    # its Dense and GRU
  model.classifier_hidden = 4096
  model.frame_order = 'coarse_to_fine'  # coarse_to_fine (the authors') | natural
  model.crop_sampling = 'bilinear'  # the authors' | nearest_st (a slice, bilinear gradient)
  # AdaFocus V1 (model.variant=adafocus_v1*, arnet_jax/models/adafocus_v1.py) reads the fields
  # above too (one patch side, natural frame order) and these:
  model.grid = 7                # the patch policy's actions: grid x grid corners in [0, 1]^2
  model.policy_actions = 'grid'  # grid (the authors' main code) | gaussian (their Sth-Sth code)
  model.policy_std = 0.25       # gaussian: the std of the corner's distribution
  model.finetune_local = False  # stage 3 also trains the local CNN (the paper; their code: not)

  # --- Initialisation (ImageNet weights via `python -m arnet_jax.tools.import_torch`). ---------
  config.init = init = ml_collections.ConfigDict()
  init.checkpoint = ''          # a checkpoint of this model (e.g. the warm-up's) to start from
  init.backbones = ()           # one backbone checkpoint per model.backbones entry (or '')
  init.policy = ''              # a MobileNetV2 checkpoint for the policy CNN

  # --- Optimisation, shared by the stages (paper 4.1; the original's scripts). -----------------
  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 48         # global, split over all devices (the original: 48 on 4 GPUs)
  train.momentum = 0.9
  train.weight_decay = 1e-4     # not on biases and BatchNorm parameters
  train.grad_clip = 20.0        # global gradient norm (0: no clipping)
  train.head_lr_mult = 5.0      # Linear layers' weights (the original: 5x)
  train.head_bias_lr_mult = 10.0  # Linear layers' biases (the original: 10x)
  train.lr_schedule = 'step'    # step | cosine | cosine_epoch (per epoch, the last at 0) |
                                # constant (a stage may set its own: stage_settings)
  train.warmup_epochs = 0.0     # linear learning-rate warm-up
  train.alpha = 0.1             # efficiency loss weight (eq. 12)
  train.beta = 0.3              # usage-uniformity loss weight (eq. 12)
  train.loss_form = 'paper'     # 'original': unsquared usage norm (use alpha 0.05, beta 3.0)
  # GFLOPs multiplier in the efficiency loss. None: automatic, the costliest action weighs as
  # the paper's ResNet-50 at 224 px, so alpha keeps its meaning at any network size and
  # resolution (arnet_jax.losses.gflops_weight); a number: that multiplier (1.0: raw GFLOPs).
  train.flops_loss_scale = ml_collections.config_dict.placeholder(float)
  # AdaFocusV2's learning-rate multipliers per part (the authors' stn / global / classifier
  # ratios); its stage decays every parameter, as the authors' SGD does.
  train.policy_lr_mult = 0.1
  train.global_lr_mult = 0.5    # the global CNN and its head
  train.local_lr_mult = 1.0     # the local CNN and its head
  train.classifier_lr_mult = 5.0
  # AdaFocus V1's PPO (stage 2 and AdaFocus+'s skip stage, arnet_jax.ppo): the authors' values.
  train.ppo_gamma = 0.7
  train.ppo_clip = 0.2
  train.ppo_value_weight = 0.5
  train.ppo_entropy_weight = 0.01
  train.skip_cost = 0.05        # AdaFocus+: the reward's price of processing a frame (p_y units)
  train.tau0 = 5.0              # Gumbel-Softmax temperature tau0 * exp(tau_decay * epoch)
  train.tau_decay = -0.045
  train.log_every_steps = 50
  train.checkpoint_every_steps = 500
  train.keep_checkpoints = 3
  train.eval_every_epochs = 1
  train.best_metric = 'mAP'     # keeps WORKDIR/best by this evaluation metric

  # Per-stage settings (paper 4.1): config[config.stage] is used. A method with stages of other
  # names has a group of the same fields for each (`stage_settings`).
  config.warmup = stage_settings(lr=0.02, num_epochs=10, lr_steps=(20, 40))
  config.joint = stage_settings(lr=0.001, num_epochs=50, lr_steps=(20, 40))
  config.finetune = stage_settings(lr=0.0005, num_epochs=50, lr_steps=(20, 40))

  # --- Evaluation (deterministic policy). -------------------------------------------------------
  config.eval = ev = ml_collections.ConfigDict()
  ev.batch_size = 48            # global
  ev.routing = 'sparse'         # sparse: only the chosen backbone runs; masked: all run
  ev.dispatch = 'auto'          # sparse: device (one program per batch) | host | auto (device)
  ev.plan = 'auto'              # device buckets: grid | binary | auto (binary on CPU, else grid)
  ev.grid_steps = 8             # device 'grid' capacities: N * i / grid_steps, i = 1..grid_steps
  ev.buckets = 'binary'         # host bucket sizes: binary | pow2 | exact (routing.SparseRouter)
  ev.max_bucket = 0             # host: largest bucket in frames, more overflow (0: B_local * T)
  ev.policy_chunk = 0           # frames per policy CNN call when sparse (0: all; CPU likes ~8)
  ev.frames_per_call = 0        # AdaFocusV2: frames (patches) per CNN call (0: all; CPU likes 8)
  ev.router_batch = 1           # loader batches pooled into one routed call (exact)
  ev.seed = 0                   # for the Random baseline's actions
  ev.report = True              # write the report images at the end of evaluation
  # Conditional exit at this many GFLOPs per video (0: none), with the thresholds that
  # config.mode=exit saved beside the checkpoint (arnet_jax.early_exit).
  ev.budget_gflops = 0.0

  # --- Conditional exit (config.mode=exit, arnet_jax.early_exit). -------------------------------
  config.exit = ex = ml_collections.ConfigDict()
  ex.confidence = 'max_logit'   # of the running prediction: max_logit (the authors') | max_prob
  ex.group_frames = 1           # frames read between two exit checks (1: after every frame)
  ex.q_grid = tuple(round(0.1 * i, 1) for i in range(5, 40))  # the authors' 0.5 .. 3.9
  ex.fit_split = ''             # where thresholds are fit ('': data.train_split)
  ex.fit_transforms = 'eval'    # eval | train (the authors' code: training augmentation on)
  ex.budget_fractions = (0.8, 0.6, 0.4)  # mode=exit's table: budgets, of the no-exit GFLOPs
  ex.timing_batches = 4         # mode=exit's table: evaluation batches its timings run
  ex.plan = 'auto'              # buckets of running videos: binary | grid | auto (as eval.plan)
  ex.thresholds = ''            # the thresholds file ('': beside the checkpoint)
  return config


def stage_settings(lr: float = 0.01, num_epochs: float = 1, lr_steps: tuple = (),
                   optimizer: str = 'sgd', lr_schedule: str = ''):
  """One stage's group: learning rate, epochs, the epochs where a 'step' schedule divides the
  learning rate by 10, the optimiser ('sgd': `config.train`'s SGD with momentum and weight
  decay; 'adam': Adam, betas 0.9 / 0.999, no weight decay, as AdaFocus V1's PPO) and the
  schedule ('': `train.lr_schedule`)."""
  return ml_collections.ConfigDict(dict(lr=lr, num_epochs=num_epochs, lr_steps=tuple(lr_steps),
                                        optimizer=optimizer, lr_schedule=lr_schedule))


def load_config(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file, or `get_config(arg)` for `path:arg` (as `--config=`)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  path, _, arg = path.partition(':')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Config file {path} does not exist.')
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def parse_arg(arg: str | None, **defaults_) -> ml_collections.ConfigDict:
  """`get_config(arg)`'s argument (`--config=file.py:a=1,b=x`) as fields over `defaults_`.

  Values take the type of their default; an unknown key is an error naming the valid ones.
  """
  result = ml_collections.ConfigDict(defaults_)
  for item in filter(None, (arg or '').split(',')):
    key, eq, value = item.partition('=')
    if not eq or key not in defaults_:
      raise ValueError(f'Config argument {item!r}: expected key=value with key one of '
                       f'{", ".join(defaults_)}.')
    default = defaults_[key]
    result[key] = (value.lower() in ('1', 'true', 'yes') if isinstance(default, bool) else
                   type(default)(value))
  return result


SCHEDULES = ('step', 'cosine', 'cosine_epoch', 'constant')
OPTIMIZERS = ('sgd', 'adam')
# Enum-like fields: (path, valid values). The method and stage come from the registry.
CHOICES = (
    ('mode', ('train', 'eval', 'recipe', 'exit')),
    ('model.dtype', ('float32', 'bfloat16')),
    ('model.resize', ('nearest', 'bilinear')),
    ('model.no_frame_fallback', ('none', 'policy_head')),
    ('model.kernels', ('auto', 'cpu', 'xla')),
    ('model.policy_actions', ('grid', 'gaussian')),
    ('train.lr_schedule', SCHEDULES),
    ('train.loss_form', ('paper', 'original')),
    ('eval.routing', ('sparse', 'masked')),
    ('eval.dispatch', ('auto', 'device', 'host')),
    ('eval.plan', ('auto', 'grid', 'binary')),
    ('eval.buckets', ('binary', 'pow2', 'exact')),
    ('data.dtype', ('float32', 'bfloat16')),
    ('data.sampling', ('segment', 'original')),
    ('exit.confidence', ('max_logit', 'max_prob')),
    ('exit.fit_transforms', ('eval', 'train')),
    ('exit.plan', ('auto', 'grid', 'binary')),
)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks a config before anything runs: every field name (KeyError naming the valid fields)
  and every enum-like value, the method's own settings and the crop size (ValueError naming the
  valid values)."""
  from arnet_jax import registry  # pylint: disable=g-import-not-at-top (imports JAX)
  reference = get_config()
  for name in registry.names():  # every registered stage has its group of settings
    for stage in registry.get(name).stage_names:
      if stage not in reference:
        reference[stage] = stage_settings()
  _validate(config, reference, 'config')
  choices = (*CHOICES, ('data.name', DATASET_NAMES), ('model.variant', registry.names()))
  for path, valid in choices:
    value = _get(config, path)
    if value not in valid:
      raise ValueError(f'{path} must be one of {tuple(valid)}, got {value!r}.')
  method = registry.of(config)
  method.stage(config.stage)  # names the method's stages when it has no such stage
  if config.stage not in config:
    raise ValueError(f'config.{config.stage} (the settings of stage {config.stage!r}) is '
                     f'missing: give it, e.g. config.{config.stage} = '
                     'defaults.stage_settings(lr=..., num_epochs=...).')
  settings = config[config.stage]
  if settings.get('optimizer', 'sgd') not in OPTIMIZERS:
    raise ValueError(f'{config.stage}.optimizer must be one of {OPTIMIZERS}, got '
                     f'{settings.optimizer!r}.')
  if settings.get('lr_schedule', '') not in ('', *SCHEDULES):
    raise ValueError(f"{config.stage}.lr_schedule must be '' (train.lr_schedule) or one of "
                     f'{SCHEDULES}, got {settings.lr_schedule!r}.')
  method.validate(config.model)
  for path in ('eval.max_bucket', 'eval.policy_chunk', 'eval.frames_per_call'):
    if _get(config, path) < 0:
      raise ValueError(f'config.{path} must be a number of frames >= 1, or 0 for the whole '
                       f'batch; got {_get(config, path)}.')
  for path in ('eval.grid_steps', 'eval.router_batch'):
    if _get(config, path) < 1:
      raise ValueError(f'config.{path} must be >= 1, got {_get(config, path)}.')
  _validate_exit(config)
  top = method.input_resolution(config.model)
  if config.data.image_size not in (None, top):
    raise ValueError(f'data.image_size={config.data.image_size} must equal the model\'s top '
                     f'resolution {top}: the lower ones are resized from it (leave it unset).')


def _validate_exit(config: ml_collections.ConfigDict) -> None:
  ex = config.exit
  if ex.group_frames < 1:
    raise ValueError(f'config.exit.group_frames must be >= 1 frame, got {ex.group_frames}.')
  if not ex.q_grid or min(ex.q_grid) <= 0:
    raise ValueError(f'config.exit.q_grid must hold values of q > 0, got {tuple(ex.q_grid)}.')
  if any(not 0 < f for f in ex.budget_fractions):
    raise ValueError('config.exit.budget_fractions must be fractions > 0 of the no-exit GFLOPs, '
                     f'got {tuple(ex.budget_fractions)}.')
  if ex.timing_batches < 1:
    raise ValueError(f'config.exit.timing_batches must be >= 1, got {ex.timing_batches}.')
  if config.eval.budget_gflops < 0:
    raise ValueError('config.eval.budget_gflops must be a number of GFLOPs per video > 0, or 0 '
                     f'for no exit; got {config.eval.budget_gflops}.')


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A validated copy with the derived fields filled in (see the module docstring; the class
  count needs the prepared dataset: `arnet_jax.data.with_dataset_classes`)."""
  validate(config)
  from arnet_jax import registry  # pylint: disable=g-import-not-at-top (imports JAX)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    if config.data.image_size is None:
      config.data.image_size = registry.of(config).input_resolution(config.model)
    if config.data.scales is None:
      config.data.scales = data_config(config.data.name).scales
  return config


def _get(config: ml_collections.ConfigDict, path: str):
  for key in path.split('.'):
    config = config[key]
  return config


def _validate(got, reference, path: str) -> None:
  for key in got.keys():
    if key not in reference:
      raise KeyError(f'Unknown config field {path}.{key}. Valid fields of {path}: '
                     f'{", ".join(sorted(reference.keys()))}.')
    if isinstance(got[key], ml_collections.ConfigDict) and isinstance(
        reference[key], ml_collections.ConfigDict):
      _validate(got[key], reference[key], f'{path}.{key}')


DATASET_NAMES = ('activitynet', 'fcvid', 'mini_kinetics', 'custom', 'demo')


def data_config(name: str = 'activitynet') -> ml_collections.ConfigDict:
  """The `config.data` group: the paper's values; the demo's differ where noted."""
  c = ml_collections.ConfigDict()
  c.name = name  # activitynet | fcvid | mini_kinetics | custom | demo
  c.data_dir = ml_collections.config_dict.placeholder(str)  # TFDS data_dir; None = TFDS default
  # Which prepared copy (e.g. 'videos_fps2_side256'); None = the only one in data_dir.
  c.builder_config = ml_collections.config_dict.placeholder(str)
  c.train_split = 'train'
  c.eval_split = 'validation'
  c.num_frames = 16  # T
  # Top-resolution crop side; eval resizes the short side to round(image_size*256/224).
  c.image_size = 64 if name == 'demo' else 224
  # Multi-scale crop, relative to the short side. The demo's evidence is 1-pixel
  # detail that resampling blurs: it crops 64 x 64 out of its 73 x 73 frames
  # (int(73 * .875) = 63 snaps to 64), at the 13 TSM positions, unresampled.
  c.scales = (0.875,) if name == 'demo' else (1.0, 0.875, 0.75, 0.66)
  c.max_distort = 1  # crop width/height scale indices differ by at most this (TSM)
  c.flip = True  # random horizontal flip (train)
  c.sampling = 'segment'  # train TSN rule: 'segment' or 'original' (see data/sampling.py)
  c.dtype = 'float32'  # or 'bfloat16' for `video`
  c.shuffle_buffer = 1024  # clips (T JPEGs each, not whole videos)
  c.prefetch = 2  # batches prepared ahead
  c.num_parallel_calls = -1  # decode/augment threads; -1 = tf.data AUTOTUNE
  return c
