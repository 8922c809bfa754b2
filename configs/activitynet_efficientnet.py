"""EfficientNet AR-Net on ActivityNet-v1.3 (paper Table 1: 79.7 mAP, 15.29 GFLOPs/V).

The same as `--config=configs/arnet.py:dataset=activitynet,backbones=efficientnet`;
runs the whole recipe by default.
"""
import os

from arnet_jax import defaults


def get_config():
  path = os.path.join(os.path.dirname(__file__), 'arnet.py')
  return defaults.load_config(f'{path}:dataset=activitynet,backbones=efficientnet')
