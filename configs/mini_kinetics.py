"""AR-Net (ResNet) on Mini-Kinetics (paper Table 3: 71.7 top-1, 32.0 GFLOPs/V), 200 classes.

Mini-Kinetics reports top-1 accuracy, so the best checkpoint is chosen by it. Paper
hyper-parameters as configs/activitynet.py (section 4.1).
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.data = defaults.data_config('mini_kinetics')
  config.model.num_classes = 200
  config.train.best_metric = 'top1'
  return config
