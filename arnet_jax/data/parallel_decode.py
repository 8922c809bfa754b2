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
from typing import Callable, Sequence

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
  if 'forkserver' not in multiprocessing.get_all_start_methods():
    return multiprocessing.get_context('spawn')
  ctx = multiprocessing.get_context('forkserver')
  # The server imports the worker code (and with it TensorFlow, via the package)
  # once; each worker is then a cheap fork of it rather than a fresh import.
  ctx.set_forkserver_preload(['arnet_jax.data.frame_cache'])
  return ctx


def decode_all(sources: Sequence[Source], options: decode.FrameOptions,
               cache: frame_cache.FrameCache, num_workers: int | None = None,
               progress: bool = True,
               process_fn: Callable[..., frame_cache.Outcome] = frame_cache.process_source
               ) -> dict[str, frame_cache.Outcome]:
  """Makes sure every source has a cached outcome.

  Args:
    sources: what to decode.
    options: frame rate, size, quality.
    cache: where results go (and come from on a resumed run).
    num_workers: worker processes; None = all cores; 1 = in this process.
    progress: show a tqdm bar on stderr.
    process_fn: the per-source work (tests substitute a crashing one).

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
        _record(outcomes, process_fn(*a), bar)
    else:
      _run_pool(args, workers, cache, outcomes, bar, process_fn)
  finally:
    bar.close()
  return outcomes


def _record(outcomes: dict, outcome: frame_cache.Outcome, bar: tqdm.tqdm) -> None:
  outcomes[outcome.key] = outcome
  bar.update(1)
  if not outcome.ok:
    bar.set_postfix_str(f'skipped {sum(not o.ok for o in outcomes.values())}', refresh=False)


def _run_pool(args: list[tuple], workers: int, cache: frame_cache.FrameCache,
              outcomes: dict, bar: tqdm.tqdm, process_fn: Callable) -> None:
  """Runs `args` on a process pool, surviving workers that die.

  When a worker dies (e.g. the decoder crashed on a file), the results already
  finished are in the cache; the sources that had started (an attempt marker
  but no result) are the suspects. Each suspect is re-run alone, so a second
  crash names its file, which is then recorded as skipped.
  """
  pending = list(args)
  while pending:
    unfinished = _run_batch(pending, workers, cache, outcomes, bar, process_fn)
    suspects = [a for a in unfinished if cache.attempts(a[1]) > 0]
    for a in suspects:
      if _run_batch([a], 1, cache, outcomes, bar, process_fn):
        _record(outcomes, cache.store_failure(
            a[1], 'decoder crashed: the worker process died on this file'), bar)
    pending = [a for a in unfinished if a not in suspects]


def _run_batch(args: list[tuple], workers: int, cache: frame_cache.FrameCache,
               outcomes: dict, bar: tqdm.tqdm, process_fn: Callable) -> list[tuple]:
  """Runs `args` on a fresh pool; returns those left without a result if the pool broke."""
  with concurrent.futures.ProcessPoolExecutor(min(workers, len(args)),
                                              mp_context=_context()) as pool:
    futures = [pool.submit(process_fn, *a) for a in args]
    try:
      for future in concurrent.futures.as_completed(futures):
        _record(outcomes, future.result(), bar)
      return []
    except concurrent.futures.process.BrokenProcessPool:
      pass
  unfinished = []
  for a in args:
    if a[1] in outcomes:
      continue
    cached = cache.lookup(a[1])  # finished, but not yet collected when the pool broke
    if cached is None:
      unfinished.append(a)
    else:
      _record(outcomes, cached, bar)
  return unfinished
