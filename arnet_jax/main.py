"""Entry point: `python -m arnet_jax.main --config=configs/fcvid.py [--workdir=DIR] [--config.x=y]`.

`config.mode`: train (one `config.stage`), eval (`config.checkpoint`), recipe (warm-up, joint,
fine-tune, then the baselines; see arnet_jax/recipe.py), or exit (conditional-exit thresholds
for `config.checkpoint`; see arnet_jax/early_exit.py). Any config field can be overridden on
the command line as `--config.train.batch_size=16`.

A user error (a mistyped field, a bad value, a missing or damaged checkpoint, a workdir of
another model) ends the program with one message, `error: <message>`, and exit status 2.
"""
import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from arnet_jax import defaults, errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config (a configs/*.py file).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and TensorBoard logs go '
                    '(default: workdir/<config file name>).')
flags.DEFINE_string('compilation_cache', '~/.cache/arnet_jax/xla',
                    "JAX's persistent compilation cache ('' turns it off): a second run, or "
                    'a later stage compiling the same step, skips XLA compilation.')
flags.mark_flags_as_required(['config'])


def quiet_library_logs() -> None:
  """Orbax logs every checkpoint step at INFO; keep its warnings, drop the rest."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or 'orbax' not in record.pathname)


@errors.exit_on_user_error  # bad paths, checkpoints, configs: `error: <message>`, exit status 2
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  config = FLAGS.config
  try:
    defaults.validate(config)
  except (KeyError, ValueError) as e:  # a config mistake
    raise errors.UserError(e.args[0] if e.args else str(e)) from None
  quiet_library_logs()
  if FLAGS.compilation_cache:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(FLAGS.compilation_cache))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  workdir = FLAGS.workdir or os.path.join(
      'workdir', os.path.splitext(os.path.basename(config_flags.get_config_filename(
          FLAGS['config'])))[0])
  if config.distributed:
    from arnet_jax import parallel  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(config)
  logging.info('Config:\n%s', config)
  if config.mode == 'train':
    from arnet_jax import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(config, workdir)
  elif config.mode == 'eval':
    from arnet_jax import evaluate  # pylint: disable=g-import-not-at-top
    evaluate.evaluate_checkpoint(config, workdir)
  elif config.mode == 'exit':
    from arnet_jax import early_exit  # pylint: disable=g-import-not-at-top
    early_exit.fit_and_evaluate(config, workdir)
  else:  # 'recipe' (validated)
    from arnet_jax import recipe  # pylint: disable=g-import-not-at-top
    recipe.run(config, workdir)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with a mistyped `--config.a.b` answered by the valid fields of `a`."""
  try:
    return FLAGS(argv)
  except (KeyError, AttributeError, flags.IllegalFlagValueError) as e:
    override = next((a for a in argv if a.startswith('--config.')), None)
    message = config_error(argv, override) if override else None
    sys.exit(errors.show(message or e))


def config_error(argv: list[str], override: str) -> str | None:
  """Names the first unknown field among the `--config.*` overrides and lists the valid ones."""
  config = defaults.get_config()
  for arg in (a for a in argv if a.startswith('--config.')):
    path = arg[len('--config.'):].split('=')[0].split('.')
    node, walked = config, 'config'
    for key in path:
      if not hasattr(node, 'keys') or key not in node:
        valid = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(none: a value)'
        return (f'Unknown config field --{walked}.{key} (in {arg}). Valid fields of {walked}: '
                f'{valid}.')
      node, walked = node[key], f'{walked}.{key}'
  return None


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
