"""Your own videos (a `prepare --dataset=custom` dataset): AR-Net's recipe, sized for your data.

  python -m arnet_jax.main --config=configs/custom.py --config.data.data_dir=/data/tfds \
      --workdir=runs/my                          # small: minutes on a CPU
  python -m arnet_jax.main --config=configs/custom.py:size=full ...  # the paper's (GPU, TPU)

Arguments (`get_config('size=...')`):
  size  small (default): the demo's networks (ResNet-50/34/18 at 1/8 width, a MobileNetV2
        policy, configs/demo.py) at 112/84/56 px with the policy at 42, trained from scratch:
        for a few hundred videos on a CPU, or to try a dataset before the full recipe.
        full: the paper's networks at 224/168/112 (configs/arnet.py:dataset=custom), best
        started from ImageNet weights (`init.*`, docs/import.md); hours on a GPU.
Both run the whole recipe (warm-up, joint, fine-tune, then Uniform, Random policy and
Multi-Scale), read the number of classes from the prepared dataset, weigh GFLOPs in the
efficiency loss as the paper does at any size (train.flops_loss_scale unset), and classify a
video whose frames the policy skipped entirely with the policy's own head
(model.no_frame_fallback='policy_head'; the authors' code predicts it from zero logits).
"""
import os

from arnet_jax import defaults

SIZES = ('small', 'full')


def get_config(arg: str | None = None):
  arg = defaults.parse_arg(arg, size='small')
  if arg.size not in SIZES:
    raise ValueError(f'configs/custom.py: size must be one of {", ".join(SIZES)}; got '
                     f'{arg.size!r}.')
  here = os.path.dirname(__file__)
  if arg.size == 'full':
    config = defaults.load_config(os.path.join(here, 'arnet.py') + ':dataset=custom')
  else:
    config = defaults.load_config(os.path.join(here, 'demo.py'))
    config.data.name = 'custom'  # its crop scales (multi-scale, as for real videos)
    config.model.num_classes = None
    config.model.resolutions = (112, 84, 56)
    config.model.policy_resolution = 42
    # A few hundred videos, not the demo's 600 of a made-to-measure task: longer stages (the
    # warm-up's classifiers must be good before processing a frame pays off against the
    # efficiency loss), the temperature annealed over the longer joint stage, and half the
    # demo's alpha (at 0.4 the policy sent every frame to its own head).
    config.train.alpha = 0.2
    config.train.tau_decay = -0.1
    config.warmup.update(lr=0.05, num_epochs=30, lr_steps=(25,))
    config.joint.update(lr=0.03, num_epochs=15, lr_steps=(12,))
    config.finetune.update(lr=0.005, num_epochs=5, lr_steps=(100,))
  config.model.no_frame_fallback = 'policy_head'
  return config
