"""AR-Net (EfficientNet) on Mini-Kinetics (paper Table 3), 200 classes, chosen by top-1."""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.data = defaults.data_config('mini_kinetics')
  config.model.num_classes = 200
  config.model.backbones = ('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0')
  config.train.best_metric = 'top1'
  return config
