"""EfficientNet AR-Net on Mini-Kinetics, top-1.

The same as `--config=configs/arnet.py:dataset=mini_kinetics,backbones=efficientnet`;
runs the whole recipe by default.
"""
import os

from arnet_jax import defaults


def get_config():
  path = os.path.join(os.path.dirname(__file__), 'arnet.py')
  return defaults.load_config(f'{path}:dataset=mini_kinetics,backbones=efficientnet')
