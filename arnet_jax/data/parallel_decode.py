"""Decoding all sources into the frame cache, in parallel over CPU cores, with a progress bar.

Sources already in the cache (from an interrupted earlier run) are counted
and not decoded again. Workers are separate processes started by the
'forkserver' method where available: the parent has TensorFlow loaded, and
forking such a process directly can deadlock.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from typing import Sequence

import tqdm

from arnet_jax.data import decode
from arnet_jax.data import frame_cache
from arnet_jax.data.sources import Source


def default_num_workers() -> int:
  """CPU cores this process may use."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
  method = 'forkserver' if 'forkserver' in multiprocessing.get_all_start_methods() else 'spawn'
  return multiprocessing.get_context(method)


def decode_all(sources: Sequence[Source], options: decode.FrameOptions,
               cache: frame_cache.FrameCache, num_workers: int | None = None,
               progress: bool = True) -> dict[str, frame_cache.Outcome]:
  """Makes sure every source has a cached outcome.

  Args:
    sources: what to decode.
    options: frame rate, size, quality.
    cache: where results go (and come from on a resumed run).
    num_workers: worker processes; None = all cores; 1 = in this process.
    progress: show a tqdm bar on stderr.

  Returns:
    {cache key: Outcome} for every source.
  """
  keys = {s: cache.key(s.path, options) for s in sources}
  outcomes: dict[str, frame_cache.Outcome] = {}
  todo: list[Source] = []
  for source in sources:
    cached = cache.lookup(keys[source])
    if cached is None:
      todo.append(source)
    else:
      outcomes[cached.key] = cached
  bar = tqdm.tqdm(total=len(sources), initial=len(outcomes), unit='video',
                  desc='decoding', disable=not progress, file=sys.stderr,
                  dynamic_ncols=True)
  args = [(cache.root, keys[s], s.path, s.kind, s.listed_frames, options) for s in todo]
  workers = num_workers or default_num_workers()
  try:
    if workers == 1 or len(args) <= 1:
      for a in args:
        _record(outcomes, frame_cache.process_source(*a), bar)
    else:
      _run_pool(args, workers, cache, outcomes, bar)
  finally:
    bar.close()
  return outcomes


def _record(outcomes: dict, outcome: frame_cache.Outcome, bar: tqdm.tqdm) -> None:
  outcomes[outcome.key] = outcome
  bar.update(1)
  if not outcome.ok:
    bar.set_postfix_str(f'skipped {sum(not o.ok for o in outcomes.values())}', refresh=False)


def _run_pool(args: list[tuple], workers: int, cache: frame_cache.FrameCache,
              outcomes: dict, bar: tqdm.tqdm) -> None:
  """Runs `args` on a process pool; restarts the pool if a worker dies."""
  pending = list(args)
  while pending:
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(pending)),
                                                mp_context=_context()) as pool:
      futures = {pool.submit(frame_cache.process_source, *a): a for a in pending}
      try:
        for future in concurrent.futures.as_completed(futures):
          _record(outcomes, future.result(), bar)
        pending = []
      except concurrent.futures.process.BrokenProcessPool:
        # A worker died (e.g. the decoder crashed on a file). Finished results
        # are in the cache; the sources in flight have an attempt marked, and
        # lookup() turns a source that crashed MAX_ATTEMPTS times into a skip.
        pending = []
        for a in futures.values():
          key = a[1]
          if key in outcomes:
            continue
          cached = cache.lookup(key)
          if cached is None:
            pending.append(a)
          else:
            _record(outcomes, cached, bar)
