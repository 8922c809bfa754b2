"""The demo's videos written as a custom-layout folder: what `prepare --dataset=custom` reads."""
import io
import os

import av
import numpy as np
from PIL import Image

from arnet_jax.data import annotations, decode, demo_video, demo_videos


def test_the_folder_lists_every_video_and_the_broken_files_under_their_class_names(tmp_path):
  out = str(tmp_path / 'videos')
  assert demo_videos.main([f'--out={out}', '--classes=3', '--train=3', '--val=2']) == 0
  assert annotations.read_class_names(os.path.join(out, 'classInd.txt')) == [
      'glyph_00', 'glyph_01', 'glyph_02']
  with open(os.path.join(out, 'train.csv')) as f:
    train = f.read().split()
  assert train[:3] == ['train/0000.mp4,glyph_00', 'train/0001.mp4,glyph_01',
                       'train/0002.mp4,glyph_02']
  assert [line.split(',')[0] for line in train[3:]] == [
      'broken/00_empty.mp4', 'broken/01_text.mp4', 'broken/02_truncated.mp4',
      'broken/03_missing.mp4']
  assert not os.path.exists(os.path.join(out, 'broken/03_missing.mp4'))
  sides = [av.open(os.path.join(out, f'train/000{i}.mp4')).streams.video[0].height
           for i in range(3)]
  assert sides == [146, 220, 292]  # 73 x 73 enlarged 2, 3 and 4 times (odd sides made even)


def test_a_written_video_decodes_to_the_rendered_frames(tmp_path):
  out = str(tmp_path / 'videos')
  demo_videos.write_dataset(out, num_classes=2, num_train=1, num_val=0, broken=0)
  rng = np.random.default_rng([0, 0, 0])
  frames, _, _ = demo_video.render_video(rng, 0, *demo_video.glyph_bank(2))
  jpegs = decode.decode_video(os.path.join(out, 'train/0000.mp4'),
                              decode.FrameOptions(fps=None, short_side=None, jpeg_quality=95))
  assert len(jpegs) == len(frames) == 16
  got = np.stack([np.asarray(Image.open(io.BytesIO(j))) for j in jpegs]).astype(np.float32)
  want = demo_videos.enlarge(frames, 2).astype(np.float32)
  assert got.shape == want.shape
  assert np.abs(got - want).mean() < 6  # the bit rate keeps the glyphs' 1-pixel textures
