"""Counting XLA compilations: `CompileCounter` listens to JAX's backend-compile events."""
from __future__ import annotations

import jax

COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'


class CompileCounter:
  """Compilations made by this process since `mark()` (or since the counter was created)."""
  _count = 0
  _listening = False

  def __init__(self):
    if not CompileCounter._listening:
      jax.monitoring.register_event_duration_secs_listener(CompileCounter._note)
      CompileCounter._listening = True
    self._marked = CompileCounter._count

  @staticmethod
  def _note(event: str, duration: float, **unused) -> None:
    del duration, unused
    if event == COMPILE_EVENT:
      CompileCounter._count += 1

  def mark(self) -> None:
    self._marked = CompileCounter._count

  def since_mark(self) -> int:
    return CompileCounter._count - self._marked
