"""AdaFocus V1 and AdaFocus+ on the built-in demo: their recipe in miniature on a 2-core CPU.

The demo's class glyph (16 x 16, see configs/demo.py) is readable at 64 px only, in 3-6 of the
16 frames; its yellow pad shows where it is at any resolution. A tiny MobileNetV2 glances at
each whole 64 px frame, the actor-critic policy picks one of 7 x 7 corners for a 24 x 24 patch
(14% of the frame; from some corner of the grid every glyph lies whole in the patch) and a tiny
ResNet-50 (1/8 width) reads it.

Stages (all from scratch, no ImageNet): warmup (both CNNs on whole frames), random (local CNN
and classifier on random patches), policy (PPO), finetune (the classifier on the policy's
patches), skip (AdaFocus+'s policy). Then the comparison: Uniform, Random patches and AdaFocus
V1 with the same (stage-2) classifier, AdaFocus V1 after fine-tuning, AdaFocus+
(docs/adafocus_v1.md#the-demo).

python -m arnet_jax.main --config=configs/adafocus_v1_demo.py
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.mode, config.stage = 'recipe', 'warmup'
  config.data.name = 'demo'
  model = config.model
  model.variant = 'adafocus_v1_plus'
  model.num_classes = 10
  model.frame_resolution = 64
  model.global_backbone = 'mobilenet_v2'
  model.global_resolution = 44
  model.local_backbone = 'resnet50'
  model.patch_sizes = (24,)
  model.policy_channels = 16
  model.policy_hidden = 64
  model.classifier_hidden = 64
  model.grid = 7
  model.width_multiplier = 0.125
  model.depth_multiplier = 0.34
  model.dropout = 0.2
  train = config.train
  train.batch_size = 16
  train.lr_schedule = 'cosine'
  train.grad_clip = 0.0
  train.log_every_steps = 10
  train.checkpoint_every_steps = 100
  train.eval_every_epochs = 100  # evaluate at the end of each stage only
  train.global_lr_mult = train.local_lr_mult = train.policy_lr_mult = 1.0
  train.classifier_lr_mult = 1.0
  train.skip_cost = 0.01
  config.warmup = defaults.stage_settings(lr=0.05, num_epochs=10)
  config.random = defaults.stage_settings(lr=0.02, num_epochs=12)
  config.policy = defaults.stage_settings(lr=3e-3, num_epochs=15, optimizer='adam',
                                          lr_schedule='constant')
  config.finetune = defaults.stage_settings(lr=0.005, num_epochs=2)
  config.skip = defaults.stage_settings(lr=1e-3, num_epochs=3, optimizer='adam',
                                        lr_schedule='constant')
  config.eval.batch_size = 40
  return config
