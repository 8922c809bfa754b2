"""AdaFocusV2 on the built-in demo: its recipe in miniature on a 2-core CPU (no download).

The demo's class glyph (16 x 16, see configs/demo.py) is readable at 64 px only, in 3-6 of the
16 frames; its yellow pad shows where it is at any resolution. As in the paper's main setting,
a cheap global CNN (a tiny MobileNetV2 at 44 px) glances at each whole 64 px frame, the policy
places a 30 x 30 patch (under a quarter of the frame) and an expensive local CNN (a tiny
ResNet-50, 1/8 width, the demo's top backbone) reads it: 47% of Uniform's GFLOPs (the same
ResNet-50 on every whole 64 px frame; 0.0244 against 0.0513 per video).

There are no ImageNet weights to start from, so the recipe first trains both CNNs on whole
frames (stage 'warmup', 6 epochs, each CNN as a TSN; its local CNN is also the Uniform
baseline), then the method in one stage ('joint', 16 epochs) from them, then evaluates Uniform,
Random patches and AdaFocusV2 (results and what we tried: docs/adafocus_v2.md#the-demo).

python -m arnet_jax.main --config=configs/adafocus_v2_demo.py
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.mode = 'recipe'
  config.data.name = 'demo'
  model = config.model
  model.variant = 'adafocus_v2'
  model.num_classes = 10
  model.frame_resolution = 64
  model.global_backbone = 'mobilenet_v2'
  model.global_resolution = 44
  model.local_backbone = 'resnet50'
  model.patch_sizes = (30,)
  model.policy_channels = 16
  model.policy_hidden = 64
  model.classifier_hidden = 128
  model.width_multiplier = 0.125
  model.depth_multiplier = 0.34
  model.dropout = 0.2
  # The glyphs' 1-pixel textures: bilinear sampling at a half-pixel offset averages them away,
  # and the plain crop gradient is their sign flips. A slice, steered by a smoothed frame.
  model.crop_sampling = 'nearest_smooth'
  train = config.train
  train.batch_size = 16
  train.lr_schedule = 'cosine'
  train.grad_clip = 0.0
  train.log_every_steps = 10
  train.checkpoint_every_steps = 100
  train.eval_every_epochs = 100  # evaluate at the end of each stage only
  # The authors' multipliers, but the global CNN at the full rate: it was trained for minutes,
  # not on ImageNet.
  train.policy_lr_mult, train.global_lr_mult = 0.1, 1.0
  train.local_lr_mult, train.classifier_lr_mult = 1.0, 5.0
  config.warmup = defaults.stage_settings(lr=0.05, num_epochs=6)
  config.joint = defaults.stage_settings(lr=0.02, num_epochs=16)
  config.eval.batch_size = 40
  return config
