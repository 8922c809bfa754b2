"""AdaFocus V1 (and AdaFocus+) on the paper's datasets, one file for every stage and patch.

  python -m arnet_jax.main --config=configs/adafocus_v1.py:dataset=fcvid,patch=128,stage=random

Arguments (`get_config('key=value,...')`):
  dataset  activitynet (default) | fcvid | mini_kinetics
  patch    96 | 128 (default) | 160 | 192: the patch side P
  stage    warmup | random | policy | finetune (default: the whole recipe, mode=recipe) | skip
  plus     false (default) | true: AdaFocus+ (model.variant=adafocus_v1_plus, stage skip)

The authors' values (their README's commands and conf/default.yaml; DESIGN.md section 2):
  data   T = 16 TSN frames, 224 crops (multi-scale crop + flip), read in temporal order; the
         glance sees the same 224 frame
  model  MobileNetV2 glance (1280 x 7 x 7) -> 1x1 conv 32 -> Dense 1024 -> GRU 1024 -> actor
         over a 7 x 7 grid of corners + critic; ResNet-50 on the P x P patch; GRU classifier
         (1280 + 2048 -> 1024), dropout 0.8, one head on every step
  warmup (stage 0)  lr 0.01, 15 epochs, batch 64 (the authors: each CNN on its own)
  random (stage 1)  local CNN lr 5e-4, classifier 0.05, 50 epochs, batch 64
  policy (stage 2)  PPO, Adam 3e-4 constant, gamma 0.7, clip 0.2, value 0.5, entropy 0.01,
                    50 epochs
  finetune (stage 3)  the classifier at lr 5e-3, 10 epochs
  SGD momentum 0.9, weight decay 1e-4, cosine per epoch (the last epoch at lr 0), gradient
  clipping 20 (their clip_grad)
The classifier's rate is the local CNN's times `train.classifier_lr_mult` = 100 (0.05 / 5e-4),
so stage 3's `lr` is 5e-5 (the classifier at 5e-3; the local CNN at 5e-5 with
model.finetune_local=True).
ImageNet initialisation: `--config.init.backbones=(<MobileNetV2>,<ResNet-50>)` (checkpoints
written by `python -m arnet_jax.tools.import_torch --kind=mobilenet_v2|resnet50`).
Published: ActivityNet mAP 71.9 / 75.0 / 76.0 at P = 96 / 128 / 160 (about 17 / 27 / 39
GFLOPs per video).
"""
from arnet_jax import defaults

NUM_CLASSES = {'activitynet': 200, 'fcvid': 239, 'mini_kinetics': 200}
PATCH_SIZES = (96, 128, 160, 192)
STAGES = ('', 'warmup', 'random', 'policy', 'finetune', 'skip')


def get_config(arg: str | None = None):
  arg = defaults.parse_arg(arg, dataset='activitynet', patch=128, stage='', plus=False)
  if (arg.dataset not in NUM_CLASSES or arg.patch not in PATCH_SIZES or arg.stage not in STAGES
      or (arg.stage == 'skip' and not arg.plus)):
    raise ValueError(f'configs/adafocus_v1.py: dataset must be one of {", ".join(NUM_CLASSES)}, '
                     f'patch one of {PATCH_SIZES}, stage one of {", ".join(STAGES[1:])} (or '
                     f'none: the recipe; skip needs plus=true); got {arg.dataset!r}, '
                     f'{arg.patch!r}, {arg.stage!r}, plus={arg.plus}.')
  config = defaults.get_config()
  config.mode = 'train' if arg.stage else 'recipe'
  config.stage = arg.stage or 'warmup'
  config.data.name = arg.dataset
  model = config.model
  model.variant = 'adafocus_v1_plus' if arg.plus else 'adafocus_v1'
  model.num_classes = NUM_CLASSES[arg.dataset]
  model.frame_resolution = 224
  model.global_backbone = 'mobilenet_v2'
  model.global_resolution = 224
  model.local_backbone = 'resnet50'
  model.patch_sizes = (arg.patch,)
  model.policy_channels = 32
  model.policy_hidden = 1024
  model.classifier_hidden = 1024
  model.grid = 7
  model.dropout = 0.8
  train = config.train
  train.batch_size = 64
  train.lr_schedule = 'cosine_epoch'
  train.grad_clip = 20.0
  train.weight_decay = 1e-4
  train.momentum = 0.9
  train.global_lr_mult = train.local_lr_mult = train.policy_lr_mult = 1.0
  train.classifier_lr_mult = 100.0
  config.warmup = defaults.stage_settings(lr=0.01, num_epochs=16)
  config.random = defaults.stage_settings(lr=5e-4, num_epochs=51)
  config.policy = defaults.stage_settings(lr=3e-4, num_epochs=50, optimizer='adam',
                                          lr_schedule='constant')
  config.finetune = defaults.stage_settings(lr=5e-5, num_epochs=11)
  config.skip = defaults.stage_settings(lr=3e-4, num_epochs=50, optimizer='adam',
                                        lr_schedule='constant')
  config.eval.batch_size = train.batch_size
  if arg.dataset == 'mini_kinetics':  # the paper reports top-1 on Mini-Kinetics
    train.best_metric = 'top1'
  return config
