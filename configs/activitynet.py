"""AR-Net (ResNet) on ActivityNet-v1.3: the paper's main setting (Table 1: 73.8 mAP, 33.47 GFLOPs/V).

Every default in arnet_jax/defaults.py is this experiment's paper value:
  data   T = 16 TSN frames, 224 crops, multi-scale crop + flip (paper 4.1, "Implementation details")
  model  ResNet-50/34/18 at 224/168/112, MobileNetV2 policy at 84 + LSTM(512), skips 1/2/4 (4.1)
  train  SGD momentum 0.9, weight decay 1e-4, batch 48, clip 20; alpha 0.1, beta 0.3 (3.3, 4.1);
         tau 5 * exp(-0.045 epoch); warm-up lr 0.02 x 10 epochs, joint 0.001 x 50, fine-tune
         0.0005 x 50 (4.1)

python -m arnet_jax.main --config=configs/activitynet.py --config.mode=recipe --workdir=DIR
"""
from arnet_jax import defaults


def get_config():
  config = defaults.get_config()
  config.data = defaults.data_config('activitynet')
  config.model.num_classes = 200
  return config
