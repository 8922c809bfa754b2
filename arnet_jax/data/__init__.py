"""Video data: TFDS builders (registered on import) and the tf.data input pipeline.

Builders: arnet_activitynet, arnet_fcvid, arnet_mini_kinetics, arnet_custom
(videos or AR-Net frame folders from manual_dir) and arnet_demo (generated).
Prepare one with `python -m arnet_jax.data.prepare --dataset=... --data_dir=...`,
read it with `create_split(config.data, ...)`.
"""

from arnet_jax.data.builders import ArnetActivitynet
from arnet_jax.data.builders import ArnetCustom
from arnet_jax.data.builders import ArnetFcvid
from arnet_jax.data.builders import ArnetMiniKinetics
from arnet_jax.data.demo import ArnetDemo
from arnet_jax.data.demo import ensure_demo_dataset
from arnet_jax.data.demo import ensure_demo_dataset_on_all_processes
from arnet_jax.data.pipeline import create_split
from arnet_jax.data.pipeline import eval_steps
from arnet_jax.data.pipeline import get_builder
from arnet_jax.data.pipeline import split_video_ids
from arnet_jax.data.pipeline import steps_per_epoch
from arnet_jax.data.pipeline import with_dataset_classes
from arnet_jax.data.sampling import eval_indices_np
from arnet_jax.data.sampling import train_indices_np
from arnet_jax.data.transforms import IMAGENET_MEAN
from arnet_jax.data.transforms import IMAGENET_STD
from arnet_jax.data.transforms import denormalize
