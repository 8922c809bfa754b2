"""ResNet AR-Net on FCVID, 239 classes (paper Table 2: 81.3 mAP, 35.12 GFLOPs/V).

The same as `--config=configs/arnet.py:dataset=fcvid`;
runs the whole recipe by default.
"""
import os

from arnet_jax import defaults


def get_config():
  path = os.path.join(os.path.dirname(__file__), 'arnet.py')
  return defaults.load_config(f'{path}:dataset=fcvid')
