"""User errors: bad input a person can fix (a path, a checkpoint, a config), not bugs.

Code that finds such input raises `UserError` (or `PathNotFoundError`) with a message saying
what is wrong and what to do. The command-line entry points (`arnet_jax.main`, the tools, the
data preparation) print it as one message, `error: <message>`, and exit with status 2, without
a traceback (`exit_on_user_error`, `show`). Any other exception is a programming error and keeps
its traceback.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

EXIT_STATUS = 2  # as argparse and absl give a command-line usage error

F = TypeVar('F', bound=Callable)


class UserError(ValueError):
  """Bad input from the user; the message says what is wrong and how to fix it."""


class PathNotFoundError(UserError, FileNotFoundError):
  """A path the user gave does not exist (also a FileNotFoundError, for code catching that)."""


def show(message: object) -> int:
  """Prints `error: <message>` on stderr; returns the exit status of a user error (2)."""
  print(f'error: {message}', file=sys.stderr)
  return EXIT_STATUS


def exit_on_user_error(main: F) -> F:
  """Wraps a command-line `main`: a UserError ends the program with `show`'s message and exit
  status 2; other exceptions pass through untouched."""
  @functools.wraps(main)
  def wrapper(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except UserError as e:
      sys.exit(show(e))
  return wrapper
