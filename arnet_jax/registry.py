"""Methods as data: one registry entry per method or variant, read by everything else.

`config.model.variant` names an entry. Training, evaluation, the recipe, GFLOPs counting, the
PyTorch importer and the report ask the entry; nothing outside it tests a method's name. A new
method is one `register(Method(...))` call: its model, its stages, its inference, its GFLOPs and
(optionally) its PyTorch layout and recipe table.

The model contract: `model.apply(variables, video [B, T, H, W, 3], train=..., **stage kwargs)`
returns a dict with at least `logits [B, C]` (video logits), `actions [B, T, A]` (the actions in
effect per frame, one-hot or several set; A = len(cost_table.action_names)) and `decided [B, T]`.
Stage losses may read more (AR-Net's warm-up reads `resolution_logits [B, T, R, C]`).

Shape letters: B videos, T frames, A actions, C classes.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Sequence

import jax
import ml_collections

# (loss, parts) of a training forward: out (the model's dict), labels [B], context.
LossFn = Callable[[dict, jax.Array, 'LossContext'], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class LossContext:
  """What a stage loss may need besides the forward pass: the GFLOPs of each action `[A]` and
  the `config.train` group (loss weights)."""
  action_gflops: jax.Array
  train: ml_collections.ConfigDict


def _nothing_frozen(config: ml_collections.ConfigDict, path: tuple[str, ...]) -> bool:
  del config, path
  return False


@dataclasses.dataclass(frozen=True)
class ParamGroup:
  """An optimiser group: a learning-rate multiplier and whether weight decay applies."""
  lr_mult: float = 1.0
  weight_decay: bool = True

  @property
  def label(self) -> str:
    return f'lr_x{self.lr_mult:g}' + ('' if self.weight_decay else '_no_decay')


@dataclasses.dataclass(frozen=True)
class Stage:
  """One training stage of a method.

  name: `config.stage`; its settings (lr, num_epochs, lr_steps) are `config[name]`.
  loss: the stage's loss (see `LossFn`).
  frozen: (config, parameter path (tuple of names)) -> whether the stage leaves it untouched.
  module: (the method's model, config) -> the module the stage trains (e.g. AR-Net's warm-up
    trains every resolution action on every frame).
  apply_kwargs: (config, epoch) -> extra keyword arguments of the training forward (AR-Net: the
    Gumbel temperature, whether the policy's BatchNorm statistics update).
  eval_module: (the method's model, config) -> the module the stage's evaluations run (None:
    `module`; AdaFocus V1's PPO stages train a sampling policy and evaluate its most probable
    choices).
  starts_from: the stage whose best checkpoint the recipe starts this one from (None: the
    config's `init`).
  param_group: (config, parameter path) -> its `ParamGroup` (AdaFocus: a learning-rate
    multiplier per part); None: the library's groups (`train.param_labels`: Linear heads at
    `train.head_lr_mult` / `head_bias_lr_mult`, no decay on biases and BatchNorm).
  """
  name: str
  loss: LossFn
  frozen: Callable[[ml_collections.ConfigDict, tuple[str, ...]], bool] = _nothing_frozen
  module: Callable[[Any, ml_collections.ConfigDict], Any] = lambda model, config: model
  apply_kwargs: Callable[[ml_collections.ConfigDict, Any], dict] = lambda config, epoch: {}
  eval_module: Callable[[Any, ml_collections.ConfigDict], Any] | None = None
  starts_from: str | None = None
  param_group: Callable[[ml_collections.ConfigDict, tuple[str, ...]], ParamGroup] | None = None


@dataclasses.dataclass(frozen=True)
class Exit:
  """A method's conditional exit (`arnet_jax.early_exit`).

  running: (a full forward's output, model config) -> (`[B, T, C]` the running prediction
    after each step, in the method's processing order; `[B, T]` bool, whether there is one).
  inference: (model, config) -> the exit program `fn(variables, video, thresholds [K], *,
    rng=None, valid=None) -> dict` (logits, exit_step `[B]`, actions and decided zero at the
    steps not run, rows per CNN), which computes nothing more for a video once it exits.
  """
  running: Callable[[dict, ml_collections.ConfigDict], tuple[jax.Array, jax.Array]]
  inference: Callable[[Any, ml_collections.ConfigDict], Callable[..., dict]]


@dataclasses.dataclass(frozen=True)
class Method:
  """A method (or a variant of one) and everything the library needs to know about it.

  name: the `config.model.variant` value. summary: one line for tables and help.
  create_model: model config -> Flax module (see the model contract above).
  input_resolution: model config -> the side of the frames the model reads.
  action_names: model config -> the names of its A actions (what `actions` counts).
  cost_table: (model config, convention) -> `flops.CostTable` of its actions.
  stages: its training stages, in recipe order.
  inference: (model, config) -> `fn(variables, video, *, rng=None, valid=None) -> dict`, the
    evaluation forward (returns what the model returns at evaluation); `fn.stats`, if present,
    is a `routing.RouterStats`.
  validate: model config -> None; raises ValueError naming a bad model setting.
  torch_layout: (model config, checkpoint keys) -> `import_torch.Plan` for its original PyTorch
    checkpoints (None: not importable).
  recipe_rows: the comparison the recipe evaluates after training the stages: (row name,
    variant, stage whose best weights it evaluates); empty: the method after its last stage.
  learns_actions: whether its actions are a learned policy's choices, which training and
    evaluation check for a collapse (`arnet_jax.health`).
  exit: its conditional exit (`Exit`; None: it has none).
  """
  name: str
  summary: str
  create_model: Callable[[ml_collections.ConfigDict], Any]
  input_resolution: Callable[[ml_collections.ConfigDict], int]
  action_names: Callable[[ml_collections.ConfigDict], tuple[str, ...]]
  cost_table: Callable[[ml_collections.ConfigDict, str], Any]
  stages: tuple[Stage, ...]
  inference: Callable[[Any, ml_collections.ConfigDict], Callable[..., dict]]
  validate: Callable[[ml_collections.ConfigDict], None] = lambda model_config: None
  torch_layout: Callable[[ml_collections.ConfigDict, Sequence[str]], Any] | None = None
  recipe_rows: tuple[tuple[str, str, str], ...] = ()
  learns_actions: bool = False
  exit: Exit | None = None

  @property
  def stage_names(self) -> tuple[str, ...]:
    return tuple(s.name for s in self.stages)

  def stage(self, name: str) -> Stage:
    for s in self.stages:
      if s.name == name:
        return s
    raise ValueError(f'model.variant={self.name!r} has no stage {name!r}; its stages: '
                     f'{", ".join(self.stage_names)}.')


def masked_inference(model, config: ml_collections.ConfigDict) -> Callable[..., dict]:
  """The evaluation forward of a model with nothing to route: its own `apply`, jitted."""
  del config
  from arnet_jax.models import routing  # pylint: disable=g-import-not-at-top
  return routing.inference_fn(model, routing='masked')


def with_variant(model_config: ml_collections.ConfigDict,
                 variant: str) -> ml_collections.ConfigDict:
  """A copy of `model_config` for another registered variant (same networks and sizes)."""
  get(variant)
  config = model_config.copy_and_resolve_references()
  with config.unlocked():
    config.variant = variant
  return config


_METHODS: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
  """Adds `method` under `method.name` (an error if taken, unless `replace`), after the
  library's own methods."""
  _builtin()
  if method.name in _METHODS and not replace:
    raise ValueError(f'A method named {method.name!r} is already registered.')
  _METHODS[method.name] = method
  return method


def unregister(name: str) -> None:
  _METHODS.pop(name, None)


_builtin_loaded = False
BUILTIN_MODULES = ('arnet_jax.methods.arnet', 'arnet_jax.methods.adafocus_v2',
                   'arnet_jax.methods.adafocus_v1')


def _builtin() -> None:
  """Registers the library's own methods (imported on first use, not at import time)."""
  global _builtin_loaded
  if not _builtin_loaded:
    _builtin_loaded = True
    for module in BUILTIN_MODULES:  # each registers itself
      importlib.import_module(module)


def names() -> tuple[str, ...]:
  """The registered names: the library's own in `BUILTIN_MODULES` order (whichever module was
  imported first), then the others in registration order."""
  _builtin()
  rank = lambda name: (BUILTIN_MODULES.index(m) if (m := _METHODS[name].create_model.__module__)
                       in BUILTIN_MODULES else len(BUILTIN_MODULES))
  return tuple(sorted(_METHODS, key=rank))


def get(name: str) -> Method:
  """The method registered as `name`; an error listing the registered ones otherwise."""
  _builtin()
  if name not in _METHODS:
    raise ValueError(f'Unknown model.variant {name!r}; choose one of {", ".join(names())}.')
  return _METHODS[name]


def of(config: ml_collections.ConfigDict) -> Method:
  """The method of a full config (its `model.variant`)."""
  return get(config.model.variant)
