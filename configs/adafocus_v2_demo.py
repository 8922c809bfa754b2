"""AdaFocusV2 on the built-in demo, trained from scratch on a 2-core CPU (no download).

The demo's class glyph (see configs/demo.py) is readable at 64 px only, in 3-6 of the 16
frames. As in the paper's main setting, a cheap global CNN (a tiny MobileNetV2) glances at each
whole 64 px frame, the policy places a 32 x 32 patch (a quarter of the frame) and an expensive
local CNN (a tiny ResNet-50, 1/8 width) reads it; policy and classifier of 64 / 128 units.

Measured on dataset 1.2.0, the development machine's 2-core CPU shared with other jobs (load
~4): 12 epochs (444 steps, ~1.4 steps/s), 39.9 mAP in 14 min wall; 6 epochs gave 24.3 mAP,
about what the pads' shapes alone give (~20, docs/demo.md). From scratch, the method's
per-frame losses learn the sparse glyphs slowly; more epochs help.

python -m arnet_jax.main --config=configs/adafocus_v2_demo.py --workdir=/tmp/adafocus_demo
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.mode, config.stage = 'train', 'joint'
  config.data.name = 'demo'
  model = config.model
  model.variant = 'adafocus_v2'
  model.num_classes = 10
  model.frame_resolution = 64
  model.global_backbone = 'mobilenet_v2'
  model.global_resolution = 64
  model.local_backbone = 'resnet50'
  model.patch_sizes = (32,)
  model.policy_channels = 16
  model.policy_hidden = 64
  model.classifier_hidden = 128
  model.width_multiplier = 0.125
  model.depth_multiplier = 0.34
  model.dropout = 0.2
  train = config.train
  train.batch_size = 16
  train.lr_schedule = 'cosine'
  train.grad_clip = 0.0
  train.log_every_steps = 10
  train.checkpoint_every_steps = 100
  train.eval_every_epochs = 100  # evaluate at the end only
  # From scratch: every part at the full learning rate except the policy, which learns through
  # the crop and is kept slower, as the authors keep it.
  train.policy_lr_mult, train.global_lr_mult = 0.1, 1.0
  train.local_lr_mult, train.classifier_lr_mult = 1.0, 1.0
  config.joint = defaults.stage_settings(lr=0.05, num_epochs=12)
  config.eval.batch_size = 40
  return config
