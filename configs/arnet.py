"""AR-Net on the paper's datasets, one file for every variant (big_vision style arguments).

  python -m arnet_jax.main --config=configs/arnet.py:dataset=fcvid,backbones=efficientnet

Arguments (`get_config('key=value,...')`):
  dataset    activitynet (default) | fcvid | mini_kinetics | custom (your own prepared videos;
             the number of classes is read from the dataset)
  backbones  resnet (ResNet-50/34/18, default) | efficientnet (EfficientNet-B3/B1/B0)

Runs the whole recipe by default (warm-up, joint, fine-tune, then the paper's baselines); give
`--config.mode=train --config.stage=joint` for one stage. Paper values (arnet_jax/defaults.py):
  data   T = 16 TSN frames, 224 crops, multi-scale crop + flip (paper 4.1)
  model  ResNet-50/34/18 at 224/168/112, MobileNetV2 policy at 84 + LSTM(512), skips 1/2/4
  train  SGD momentum 0.9, weight decay 1e-4, batch 48, clip 20; alpha 0.1, beta 0.3;
         tau 5 * exp(-0.045 epoch); warm-up lr 0.02 x 10 epochs, joint 0.001 x 50,
         fine-tune 0.0005 x 50 (4.1)
Published (paper Tables 1-3): ActivityNet 73.8 mAP at 33.47 GFLOPs/V (EfficientNet 79.7 at
15.29); FCVID 81.3 at 35.12; Mini-Kinetics 71.7 top-1 at 32.0.
"""
from arnet_jax import defaults

NUM_CLASSES = {'activitynet': 200, 'fcvid': 239, 'mini_kinetics': 200, 'custom': None}
BACKBONES = {'resnet': ('resnet50', 'resnet34', 'resnet18'),
             'efficientnet': ('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0')}


def get_config(arg: str | None = None):
  arg = defaults.parse_arg(arg, dataset='activitynet', backbones='resnet')
  if arg.dataset not in NUM_CLASSES or arg.backbones not in BACKBONES:
    raise ValueError(f'configs/arnet.py: dataset must be one of {", ".join(NUM_CLASSES)} and '
                     f'backbones one of {", ".join(BACKBONES)}; got {arg.dataset!r}, '
                     f'{arg.backbones!r}.')
  config = defaults.get_config()
  config.mode = 'recipe'
  config.data.name = arg.dataset
  config.model.num_classes = NUM_CLASSES[arg.dataset]
  config.model.backbones = BACKBONES[arg.backbones]
  if arg.backbones == 'efficientnet':  # the authors chose alpha for raw GFLOPs; automatic
    config.train.flops_loss_scale = 1.0  # would weigh B3's 1.8 as ResNet-50's 4.1
  if arg.dataset == 'mini_kinetics':  # the paper reports top-1 on Mini-Kinetics
    config.train.best_metric = 'top1'
  return config
