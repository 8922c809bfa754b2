"""Parallel decoding into the frame cache survives a worker process that dies."""

import data_helpers as h
from arnet_jax.data import decode
from arnet_jax.data import frame_cache
from arnet_jax.data import parallel_decode
from arnet_jax.data.sources import Source


def test_a_file_that_kills_its_worker_is_skipped_and_the_rest_is_decoded(tmp_path):
  sources = [Source(f'v{i}', h.write_video(str(tmp_path / f'v{i}.mp4'), 5), 'videos', (0,))
             for i in range(4)]
  sources.insert(2, Source('bad', h.write_video(str(tmp_path / 'crash.mp4'), 5), 'videos', (0,)))
  cache = frame_cache.FrameCache(str(tmp_path / 'cache'))
  options = decode.FrameOptions(fps=None)
  outcomes = parallel_decode.decode_all(sources, options, cache, num_workers=2, progress=False,
                                        process_fn=h.process_or_crash)
  by_id = {s.video_id: outcomes[cache.key(s.path, options)] for s in sources}
  assert not by_id['bad'].ok and by_id['bad'].reason.startswith('decoder crashed')
  assert all(by_id[f'v{i}'].ok and by_id[f'v{i}'].num_frames == 5 for i in range(4))
  # The outcome is cached: a later run does not touch the file again.
  again = parallel_decode.decode_all(sources, options, cache, num_workers=1, progress=False,
                                     process_fn=None)
  assert again == outcomes
