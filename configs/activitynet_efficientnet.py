"""AR-Net (EfficientNet) on ActivityNet-v1.3 (paper Table 1, lower half).

EfficientNet-B3/B1/B0 at 224/168/112 replace ResNet-50/34/18; the policy is still MobileNetV2 at 84.
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.model.backbones = ('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0')
  return config
