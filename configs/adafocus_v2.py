"""AdaFocusV2 on the paper's datasets, one file for every variant (big_vision style arguments).

  python -m arnet_jax.main --config=configs/adafocus_v2.py:dataset=fcvid,patch=128

Arguments (`get_config('key=value,...')`):
  dataset  activitynet (default) | fcvid | mini_kinetics
  patch    96 | 128 (default) | 160 | 192: the patch side P
  global   mobilenet_v2 (default: on the whole 224 frame) | resnet50 (on a 96 x 96 copy)

One stage ('joint'), trained end to end. The authors' values (their scripts/train.sh, DESIGN.md):
  data   T = 16 TSN frames, 224 crops (multi-scale crop + flip), read coarse to fine
  model  global CNN -> 1x1 conv 64 -> Dense 2048 -> GRU 2048 -> corner; ResNet-50 on the patch;
         classifier Dense 4096 + running max, a head per step; dropout 0.2 before every head
  train  SGD momentum 0.9, weight decay 1e-4 on every parameter, no gradient clipping, cosine
         per epoch over 50 epochs + a 51st at lr 0; lr 0.002 batch 32 (Mini-Kinetics 0.003, 48); multipliers policy 0.1,
         global CNN 0.5, local CNN 1, classifier 5
ImageNet initialisation: `--config.init.backbones=(<MobileNetV2>,<ResNet-50>)` (checkpoints
written by `python -m arnet_jax.tools.import_torch --kind=mobilenet_v2|resnet50`); the ResNet-50
glance starts from the authors' ResNet-50 trained on 96 x 96 ImageNet images.
Published: ActivityNet mAP 77.4 / 79.0 / 79.9 at P = 96 / 128 / 160 (17.6 / 27.0 / 39.0 GFLOPs
per video), ResNet-50 glance 77.5 / 78.9 / 80.2 (24.8 / 34.1 / 46.1); FCVID (P = 128) 85.0 mAP;
Mini-Kinetics (P = 128) 75.4 top-1.
"""
from arnet_jax import defaults

NUM_CLASSES = {'activitynet': 200, 'fcvid': 239, 'mini_kinetics': 200}
PATCH_SIZES = (96, 128, 160, 192)
GLOBAL_RESOLUTION = {'mobilenet_v2': 224, 'resnet50': 96}


def get_config(arg: str | None = None):
  arg = defaults.parse_arg(arg, dataset='activitynet', patch=128, **{'global': 'mobilenet_v2'})
  if (arg.dataset not in NUM_CLASSES or arg.patch not in PATCH_SIZES
      or arg['global'] not in GLOBAL_RESOLUTION):
    raise ValueError(f'configs/adafocus_v2.py: dataset must be one of {", ".join(NUM_CLASSES)}, '
                     f'patch one of {PATCH_SIZES} and global one of '
                     f'{", ".join(GLOBAL_RESOLUTION)}; got {arg.dataset!r}, {arg.patch!r}, '
                     f'{arg["global"]!r}.')
  config = defaults.get_config()
  config.mode, config.stage = 'train', 'joint'
  config.data.name = arg.dataset
  model = config.model
  model.variant = 'adafocus_v2'
  model.num_classes = NUM_CLASSES[arg.dataset]
  model.frame_resolution = 224
  model.global_backbone = arg['global']
  model.global_resolution = GLOBAL_RESOLUTION[arg['global']]
  model.local_backbone = 'resnet50'
  model.patch_sizes = (arg.patch,)
  model.dropout = 0.2
  train = config.train
  train.batch_size = 48 if arg.dataset == 'mini_kinetics' else 32
  train.lr_schedule = 'cosine_epoch'  # the authors': per epoch, 50 epochs + 1 at lr 0
  train.grad_clip = 0.0
  train.weight_decay = 1e-4
  train.momentum = 0.9
  config.joint = defaults.stage_settings(
      lr=0.003 if arg.dataset == 'mini_kinetics' else 0.002, num_epochs=51)
  config.eval.batch_size = train.batch_size
  if arg.dataset == 'mini_kinetics':  # the paper reports top-1 on Mini-Kinetics
    train.best_metric = 'top1'
  return config
