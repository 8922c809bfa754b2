"""Every config field with its default: the paper's ResNet AR-Net on ActivityNet-v1.3.

Experiment configs in `configs/` start from `get_config()` and change what differs. Sections of
the AR-Net paper (ECCV 2020) are cited where a value comes from it.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.mode = 'train'         # train | eval | recipe (all three stages, then the baselines)
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

  # --- Model (paper 3.1, 4.1). ------------------------------------------------------------------
  config.model = model = ml_collections.ConfigDict()
  model.variant = 'arnet'       # arnet | random | resolution_only | skip_only | multiscale |
                                # uniform | lstm  (see arnet_jax.models)
  model.num_classes = 200
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
  model.dtype = 'float32'       # compute dtype: float32 | bfloat16 (parameters stay float32)

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
  train.grad_clip = 20.0        # global gradient norm
  train.head_lr_mult = 5.0      # Linear layers' weights (the original: 5x)
  train.head_bias_lr_mult = 10.0  # Linear layers' biases (the original: 10x)
  train.lr_schedule = 'step'    # step | cosine
  train.warmup_epochs = 0.0     # linear learning-rate warm-up
  train.alpha = 0.1             # efficiency loss weight (eq. 12)
  train.beta = 0.3              # usage-uniformity loss weight (eq. 12)
  train.loss_form = 'paper'     # 'original': unsquared usage norm (use alpha 0.05, beta 3.0)
  train.flops_loss_scale = 1.0  # GFLOPs multiplier in the efficiency loss (tiny networks need
                                # a larger one for alpha to weigh as it does in the paper)
  train.tau0 = 5.0              # Gumbel-Softmax temperature tau0 * exp(tau_decay * epoch)
  train.tau_decay = -0.045
  train.log_every_steps = 50
  train.checkpoint_every_steps = 500
  train.keep_checkpoints = 3
  train.eval_every_epochs = 1
  train.best_metric = 'mAP'     # keeps WORKDIR/best by this evaluation metric

  # Per-stage settings (paper 4.1): config[config.stage] is used.
  config.warmup = ml_collections.ConfigDict(dict(lr=0.02, num_epochs=10, lr_steps=(20, 40)))
  config.joint = ml_collections.ConfigDict(dict(lr=0.001, num_epochs=50, lr_steps=(20, 40)))
  config.finetune = ml_collections.ConfigDict(dict(lr=0.0005, num_epochs=50, lr_steps=(20, 40)))

  # --- Evaluation (deterministic policy). -------------------------------------------------------
  config.eval = ev = ml_collections.ConfigDict()
  ev.batch_size = 48            # global
  ev.routing = 'sparse'         # sparse: only the chosen backbone runs; masked: all run
  ev.buckets = 'binary'         # sparse bucket sizes: binary | pow2 | exact (routing.SparseRouter)
  ev.max_bucket = 0             # largest bucket in frames, more overflow (0: B_local * T)
  ev.policy_chunk = 0           # frames per policy CNN call when sparse (0: all; CPU likes ~8)
  ev.seed = 0                   # for the Random baseline's actions
  ev.report = True              # write the report images at the end of evaluation
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises KeyError naming any field the defaults do not have, with the valid ones."""
  _validate(config, get_config(), 'config')


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
