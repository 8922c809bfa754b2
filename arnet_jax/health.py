"""Is the policy still doing its job? Words for a collapsed policy, with the likely fix.

A learned policy can collapse: the efficiency loss outweighs classification and every frame is
skipped (each video then predicted from nothing), or it sends every frame to one action and the
model is a Uniform baseline at best. Training (at each log step) and evaluation (metrics.json,
the summary table) ask `warnings`, so that neither happens silently.

Inputs: action usage {action name: share of frames}, the share of videos with no processed
frame, and mean processed frames per video (None where the method processes every frame).
"""
from __future__ import annotations

import ml_collections

from arnet_jax import flops, registry

# A video with no processed frame in more than this share of videos, or one action for more than
# this share of frames, is reported.
MAX_EMPTY_VIDEOS = 0.05
MAX_ONE_ACTION = 0.95


def frame_counts(processed) -> dict:
  """`processed` `[B, T]` (resolution actions per frame; numpy or JAX) -> {'no_frame_videos':
  the share of videos with no processed frame, 'frames_per_video': the mean processed frames}."""
  frames = processed.sum(1)
  return dict(no_frame_videos=(frames == 0).mean(), frames_per_video=frames.mean())


def warnings(usage: dict[str, float], empty_videos: float | None, frames_per_video: float | None,
             config: ml_collections.ConfigDict) -> list[str]:
  """Sentences describing a collapse, each with the likely fix; [] when there is none.

  Only a method whose actions are a learned policy's (its registry entry's `learns_actions`) is
  checked: a Uniform or Multi-Scale model takes one action set by design, and a random policy
  cannot collapse. Usage summing to more than 1 (several actions per frame: AR-Net's warm-up)
  is not a choice and is not checked.
  """
  if not registry.of(config).learns_actions:
    return []
  t = config.train
  found = []
  if empty_videos is not None and empty_videos > MAX_EMPTY_VIDEOS:
    fallback = ("classified by the policy's own head (model.no_frame_fallback)"
                if config.model.no_frame_fallback == 'policy_head' else
                'predicted from nothing (zero logits: the first class)')
    found.append(
        f'{100 * empty_videos:.0f}% of videos had no processed frame ({frames_per_video:.2g} '
        f'frames per video on average) and were {fallback}. The efficiency loss outweighs '
        f'classification: lower train.alpha (now {t.alpha:g}); leave train.flops_loss_scale '
        f'unset (now {_scale(t)}) so GFLOPs weigh as in the paper at any network size; or train '
        f'the warm-up longer ({_warmup_epochs(config)}) so that processing a frame pays off.')
  name, share = max(usage.items(), key=lambda item: item[1]) if usage else ('', 0.0)
  one_per_frame = abs(sum(usage.values()) - 1) < 1e-3  # not AR-Net's warm-up (every action)
  if one_per_frame and share > MAX_ONE_ACTION:
    costs = _costs(config)
    if costs.get(name) == max(costs.values()):
      fix = f'the efficiency loss is too weak: raise train.alpha (now {t.alpha:g})'
    elif not found:  # (a skip on every frame is the collapse reported above)
      fix = f'the efficiency loss is too strong: lower train.alpha (now {t.alpha:g})'
    else:
      return found
    found.append(f'The policy sends {100 * share:.0f}% of frames to {name}: it no longer '
                 f'chooses. {fix[0].upper()}{fix[1:]}, or raise train.beta (now {t.beta:g}), the '
                 'usage-uniformity weight.')
  return found


def _costs(config: ml_collections.ConfigDict) -> dict[str, float]:
  table = flops.cost_table(config.model)
  return dict(zip(table.action_names, table.action_gflops))


def _scale(t: ml_collections.ConfigDict) -> str:
  return 'automatic' if t.flops_loss_scale is None else f'{t.flops_loss_scale:g}'


def _warmup_epochs(config: ml_collections.ConfigDict) -> str:
  return (f'warmup.num_epochs, now {config.warmup.num_epochs:g}' if 'warmup' in config else
          'the warm-up stage')
