"""AR-Net (EfficientNet) on FCVID (paper Table 1, lower half), 239 classes."""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.data = defaults.data_config('fcvid')
  config.model.num_classes = 239
  config.model.backbones = ('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0')
  return config
