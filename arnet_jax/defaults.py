"""Every config field with its default: the paper's ResNet AR-Net on ActivityNet-v1.3.

Experiment configs in `configs/` start from `get_config()` and change what differs. Sections of
the AR-Net paper (ECCV 2020) are cited where a value comes from it.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.mode = 'train'         # train | eval
  config.stage = 'joint'        # warmup | joint | finetune (paper 4.1)
  config.seed = 0

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
  return config


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
