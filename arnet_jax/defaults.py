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

  # --- Data (paper 4.1 "Implementation details"; DESIGN.md section 1). -------------------------
  config.data = data = ml_collections.ConfigDict()
  data.name = 'activitynet'     # activitynet | fcvid | mini_kinetics | custom | demo
  data.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data_dir
  data.train_split = 'train'
  data.eval_split = 'validation'
  data.num_frames = 16          # T, uniformly (TSN) sampled
  data.image_size = 224         # top-resolution crop; lower resolutions are resized from it
  data.scales = (1.0, 0.875, 0.75, 0.66)  # multi-scale crop
  data.flip = True
  data.dtype = 'float32'        # or 'bfloat16'
  data.shuffle_buffer = 1024
  data.prefetch = 2

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
