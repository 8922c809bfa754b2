"""The built-in demo: AR-Net's recipe in miniature on a 2-core CPU (no download).

The demo dataset (generated from a seed, see arnet_jax/data/demo_video.py) hides a small class
glyph in some of the 16 frames; its yellow pad shows *where* at any resolution (and, by its shape,
half of *what*), but the glyph is only readable at 64 px. Tiny ResNet-50/34/18 (1/8 width) at
64/48/32 px and a tiny MobileNetV2 policy at 24 px, the paper's structure and action space.

python -m arnet_jax.main --config=configs/demo.py     # warm-up, joint, fine-tune, baselines
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.mode = 'recipe'
  config.data.name = 'demo'  # 64 px crops (the model's top resolution), the demo's crop scale
  config.model.num_classes = 10
  config.model.resolutions = (64, 48, 32)
  config.model.policy_resolution = 24
  config.model.width_multiplier = 0.125
  config.model.depth_multiplier = 0.34
  config.model.lstm_hidden = 64
  config.train.batch_size = 16
  config.train.log_every_steps = 10
  config.train.checkpoint_every_steps = 100
  config.train.eval_every_epochs = 100  # evaluate at the end of each stage only (best = last)
  config.eval.batch_size = 40
  # The efficiency loss weighs tiny ResNet-50 at 64 px (0.0034 GFLOPs) as the paper's 4.1
  # (train.flops_loss_scale unset: automatic); anneal the temperature over the few joint
  # epochs. Trained from scratch for minutes, not fine-tuned from ImageNet for hours: alpha is
  # larger than the paper's 0.1, which here leaves every frame at the top resolution.
  config.train.alpha = 0.4
  config.train.tau0 = 1.0  # a policy from scratch in 4 epochs needs the sharper gradient
  config.train.tau_decay = -0.4
  # Trained from scratch: no fine-tuning learning-rate multipliers for the heads.
  config.train.head_lr_mult = config.train.head_bias_lr_mult = 1.0
  config.warmup.update(lr=0.05, num_epochs=6, lr_steps=(5,))
  config.joint.update(lr=0.03, num_epochs=4, lr_steps=(3,))
  config.finetune.update(lr=0.005, num_epochs=2, lr_steps=(100,))
  return config
