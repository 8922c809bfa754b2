"""Decoding one source (video file or frame folder) into stored JPEG frames."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from arnet_jax.data import decode
import data_helpers as h


def _values(frames):
  return [int(round(np.asarray(Image.open(io.BytesIO(f))).mean())) for f in frames]


def test_video_at_native_rate_keeps_every_frame(tmp_path):
  path = h.write_video(str(tmp_path / 'v.mp4'), 12, fps=10)
  frames = decode.decode_video(path, decode.FrameOptions(fps=None, short_side=None))
  assert len(frames) == 12
  np.testing.assert_allclose(_values(frames), [h.frame_value(i) for i in range(12)], atol=5)


def test_video_is_resampled_to_the_requested_fps(tmp_path):
  # 20 frames at 10 fps = 2 s; at 4 fps the first frame of each 0.25 s interval:
  # frames 0, 3 (0.3 s), 5, 8, 10, 13, 15, 18.
  path = h.write_video(str(tmp_path / 'v.mp4'), 20, fps=10)
  frames = decode.decode_video(path, decode.FrameOptions(fps=4, short_side=None))
  kept = (0, 3, 5, 8, 10, 13, 15, 18)
  np.testing.assert_allclose(_values(frames), [h.frame_value(i) for i in kept], atol=5)


def test_short_side_is_shrunk_never_enlarged(tmp_path):
  path = h.write_video(str(tmp_path / 'v.mp4'), 4, width=64, height=48)
  small = decode.decode_video(path, decode.FrameOptions(fps=None, short_side=24))
  assert Image.open(io.BytesIO(small[0])).size == (32, 24)
  same = decode.decode_video(path, decode.FrameOptions(fps=None, short_side=256))
  assert Image.open(io.BytesIO(same[0])).size == (64, 48)


@pytest.mark.parametrize('make, category', [
    (lambda d: h.write_bytes(f'{d}/e.mp4', b''), 'empty file'),
    (lambda d: h.write_text(f'{d}/t.mp4', 'hello\n' * 50), 'unreadable'),
    (lambda d: h.truncate(h.write_video(f'{d}/c.mp4', 20)), 'unreadable'),
    (lambda d: h.write_video(f'{d}/s.mp4', 2), 'too short'),
    (lambda d: f'{d}/nothing_here.mp4', 'missing file'),
])
def test_bad_videos_raise_with_a_category(tmp_path, make, category):
  path = make(str(tmp_path))
  with pytest.raises(decode.BadSourceError) as info:
    decode.decode_video(path, decode.FrameOptions(fps=None))
  assert info.value.category == category
  assert str(info.value).startswith(category)


def test_a_low_fps_that_leaves_fewer_than_3_frames_is_too_short(tmp_path):
  path = h.write_video(str(tmp_path / 'v.mp4'), 20, fps=10)  # 2 s at 1 fps -> 2 frames
  with pytest.raises(decode.BadSourceError, match='too short: 2 frame'):
    decode.decode_video(path, decode.FrameOptions(fps=1))


def test_frame_folder_reads_both_name_patterns(tmp_path):
  a = h.write_frames(str(tmp_path / 'a'), 5, template='image_{:05d}.jpg')
  b = h.write_frames(str(tmp_path / 'b'), 5, template='{:05d}.jpg')
  for folder in (a, b):
    frames, warnings = decode.read_frame_folder(folder, 5, decode.FrameOptions())
    assert len(frames) == 5 and not warnings
    np.testing.assert_allclose(_values(frames), [h.frame_value(i) for i in range(5)], atol=5)


def test_small_frames_are_stored_byte_for_byte(tmp_path):
  folder = h.write_frames(str(tmp_path / 'a'), 3)
  frames, _ = decode.read_frame_folder(folder, 3, decode.FrameOptions(short_side=256))
  with open(os.path.join(folder, 'image_00002.jpg'), 'rb') as f:
    assert frames[1] == f.read()


def test_frame_step_keeps_every_nth_frame(tmp_path):
  folder = h.write_frames(str(tmp_path / 'a'), 10)
  frames, _ = decode.read_frame_folder(folder, 10, decode.FrameOptions(frame_step=3))
  np.testing.assert_allclose(_values(frames), [h.frame_value(i) for i in (0, 3, 6, 9)], atol=5)


def test_missing_frames_are_a_warning_and_corrupt_ones_are_left_out(tmp_path):
  folder = h.write_frames(str(tmp_path / 'a'), 6)
  h.write_bytes(os.path.join(folder, 'image_00002.jpg'), b'not a jpeg')
  frames, warnings = decode.read_frame_folder(folder, 8, decode.FrameOptions())
  assert len(frames) == 5  # frames 1, 3, 4, 5, 6
  assert any('frame 2 unreadable' in w for w in warnings)
  assert any('list says 8 frames, frame 7 is missing' in w for w in warnings)


def test_frame_folder_problems_raise(tmp_path):
  with pytest.raises(decode.BadSourceError, match='missing frame folder'):
    decode.read_frame_folder(str(tmp_path / 'none'), 5, decode.FrameOptions())
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(decode.BadSourceError, match='no frames'):
    decode.read_frame_folder(str(tmp_path / 'empty'), 5, decode.FrameOptions())
  folder = h.write_frames(str(tmp_path / 'two'), 2)
  with pytest.raises(decode.BadSourceError, match='too short'):
    decode.read_frame_folder(folder, 2, decode.FrameOptions())
