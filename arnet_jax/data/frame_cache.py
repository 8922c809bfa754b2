"""Per-video cache of decoded frames: what makes `prepare` resumable.

Each source's result (its JPEG frames, or the reason it was skipped) is written
to its own file as soon as it is known, atomically (temporary file + rename),
so an interrupted run loses at most the videos in flight. The file name is a
hash of the source (path, size, modification time) and of the frame options,
so a changed video or different options never reuse a stale result.

A source that kills its worker process (a crashing decoder) is retried once;
on the second crash it is recorded as skipped instead of stopping the run.

No TensorFlow here: this module runs in the worker processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile

import numpy as np

from arnet_jax.data import decode

MAX_ATTEMPTS = 2  # a source that crashed its worker this often is skipped


@dataclasses.dataclass
class Outcome:
  """What happened to one source (small: sent back from the workers)."""

  key: str
  ok: bool
  num_frames: int = 0
  reason: str = ''  # why it was skipped (ok=False)
  warnings: tuple[str, ...] = ()


class FrameCache:
  """A folder of per-source results, sharded by the first two hex digits of the key."""

  def __init__(self, root: str):
    self.root = root
    os.makedirs(root, exist_ok=True)

  def key(self, path: str, options: decode.FrameOptions) -> str:
    """A stable id of (source file or folder, its size and mtime, frame options)."""
    try:
      st = os.stat(path)
      stamp = [st.st_size, st.st_mtime_ns]
    except OSError:
      stamp = None  # missing: the worker records it; a later run with the file retries
    text = json.dumps([os.path.abspath(path), stamp, dataclasses.asdict(options)])
    return hashlib.sha1(text.encode()).hexdigest()

  def _path(self, key: str, suffix: str) -> str:
    return os.path.join(self.root, key[:2], key + suffix)

  def _write_atomic(self, key: str, suffix: str, write) -> None:
    final = self._path(key, suffix)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(final), prefix='.tmp-')
    try:
      with os.fdopen(fd, 'wb') as f:
        write(f)
      os.replace(tmp, final)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise

  def store_frames(self, key: str, frames: list[bytes], warnings: list[str]) -> Outcome:
    lengths = np.array([len(f) for f in frames], np.int64)
    data = np.frombuffer(b''.join(frames), np.uint8)
    meta = json.dumps({'warnings': list(warnings)})
    self._write_atomic(key, '.npz', lambda f: np.savez(
        f, data=data, lengths=lengths, meta=np.array(meta)))
    self._clear_attempts(key)
    return Outcome(key, True, len(frames), '', tuple(warnings))

  def store_failure(self, key: str, reason: str) -> Outcome:
    payload = json.dumps({'reason': reason}).encode()
    self._write_atomic(key, '.fail.json', lambda f: f.write(payload))
    self._clear_attempts(key)
    return Outcome(key, False, 0, reason)

  def lookup(self, key: str) -> Outcome | None:
    """The cached outcome of `key`, or None if it still has to be processed."""
    fail = self._path(key, '.fail.json')
    if os.path.exists(fail):
      with open(fail, encoding='utf-8') as f:
        return Outcome(key, False, 0, json.load(f)['reason'])
    frames = self._path(key, '.npz')
    if os.path.exists(frames):
      with np.load(frames, allow_pickle=False) as z:
        meta = json.loads(str(z['meta']))
        return Outcome(key, True, int(z['lengths'].shape[0]), '', tuple(meta['warnings']))
    if self.attempts(key) >= MAX_ATTEMPTS:
      return self.store_failure(
          key, f'decoder crashed: the worker process died on this file {MAX_ATTEMPTS} times')
    return None

  def load_frames(self, key: str) -> list[bytes]:
    """The JPEG frames stored for `key`."""
    with np.load(self._path(key, '.npz'), allow_pickle=False) as z:
      data = z['data'].tobytes()
      ends = np.cumsum(z['lengths'])
    starts = np.concatenate([[0], ends[:-1]])
    return [data[s:e] for s, e in zip(starts, ends)]

  # A marker per attempt: if the worker dies mid-file, the marker stays behind.
  def attempts(self, key: str) -> int:
    path = self._path(key, '.attempts')
    if not os.path.exists(path):
      return 0
    with open(path, encoding='utf-8') as f:
      return len(f.read().split())

  def mark_attempt(self, key: str) -> None:
    path = self._path(key, '.attempts')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'a', encoding='utf-8') as f:
      f.write('x\n')

  def _clear_attempts(self, key: str) -> None:
    path = self._path(key, '.attempts')
    if os.path.exists(path):
      os.remove(path)


def process_source(cache_root: str, key: str, path: str, kind: str, listed_frames: int,
                   options: decode.FrameOptions) -> Outcome:
  """Decodes one source into the cache (run in a worker process).

  Any failure of this one source becomes a cached skip with its reason; only
  a crash of the whole process escapes (and is retried, see MAX_ATTEMPTS).
  """
  cache = FrameCache(cache_root)
  cache.mark_attempt(key)
  try:
    if kind == 'videos':
      frames, warnings = decode.decode_video(path, options), []
    else:
      frames, warnings = decode.read_frame_folder(path, listed_frames, options)
  except decode.BadSourceError as e:
    return cache.store_failure(key, str(e))
  except Exception as e:  # pylint: disable=broad-except
    # An unexpected error in one file must not stop the other thousands.
    return cache.store_failure(key, f'unexpected error: {type(e).__name__}: {e}')
  return cache.store_frames(key, frames, warnings)
