"""AR-Net (ResNet) on FCVID (paper Table 1/2: 81.3 mAP, 35.12 GFLOPs/V), 239 classes.

FCVID frames are prepared at 1 fps, as the original did (`prepare --dataset=fcvid`). Paper
hyper-parameters as configs/activitynet.py (section 4.1).

python -m arnet_jax.main --config=configs/fcvid.py --config.mode=recipe --workdir=DIR
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.data = defaults.data_config('fcvid')
  config.model.num_classes = 239
  return config
