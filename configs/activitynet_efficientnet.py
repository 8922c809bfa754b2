"""AR-Net (EfficientNet) on ActivityNet-v1.3 (paper Table 1, lower half: 79.7 mAP, 15.29 GFLOPs/V).

EfficientNet-B3/B1/B0 at 224/168/112 replace ResNet-50/34/18 (paper 4.1); the policy is still
MobileNetV2 at 84. Everything else as configs/activitynet.py.
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.data = defaults.data_config('activitynet')
  config.model.num_classes = 200
  config.model.backbones = ('efficientnet_b3', 'efficientnet_b1', 'efficientnet_b0')
  return config
