"""AR-Net (ResNet) on ActivityNet-v1.3: the paper's main setting (Table 1, 200 classes).

python -m arnet_jax.main --config=configs/activitynet.py --workdir=...
"""
from arnet_jax import defaults


def get_config():
  return defaults.get_config()
