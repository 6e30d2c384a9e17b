"""Fast parameter initialisation: Equinox's default distributions, drawn with NumPy on the host.

Building a model the usual way draws every weight with `jax.random.uniform`, which XLA compiles
once per distinct shape: about 40 s for one GTMM on a 2-core CPU before the first training step
(PERFORMANCE.md), paid again by every process with a cold compilation cache. Here the model is
built abstractly (`eqx.filter_eval_shape`, nothing runs), and each layer's arrays are then drawn
with NumPy from exactly the distribution Equinox's own constructor uses:

- `Linear`, `Conv`, `ConvTranspose`: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
                       fan_in = in_features, or in_channels / groups * prod(kernel_size)
- `LSTMCell`, `GRUCell`: every array ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))
- `GroupNorm`, `LayerNorm`: weight 1, bias 0

Any other array in the model is an error (so a new layer type cannot silently go uninitialised),
unless its module defines `host_init(self, rng: numpy.random.Generator) -> Self`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np

M = TypeVar("M", bound=eqx.Module)

_LAYERS = (eqx.nn.Linear, eqx.nn.Conv, eqx.nn.ConvTranspose, eqx.nn.LSTMCell, eqx.nn.GRUCell, eqx.nn.GroupNorm, eqx.nn.LayerNorm)


def _is_abstract(x: Any) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct)


def _uniform(rng: np.random.Generator, like: jax.ShapeDtypeStruct | None, lim: float):
    if like is None:
        return None
    return _put(rng.uniform(-lim, lim, like.shape).astype(like.dtype))


def _put(values: np.ndarray) -> jax.Array:
    # a transfer: jnp.asarray would compile an identity program for every distinct shape
    return jax.device_put(values)


def _fill(layer: Any, rng: np.random.Generator) -> Any:
    """One layer with its arrays drawn as Equinox's constructor draws them."""
    if hasattr(layer, "host_init"):
        return layer.host_init(rng)
    if isinstance(layer, eqx.nn.Linear):
        fan_in = 1 if layer.in_features == "scalar" else layer.in_features
        lim = 1 / math.sqrt(fan_in)
        return eqx.tree_at(lambda m: (m.weight, m.bias), layer,
                           (_uniform(rng, layer.weight, lim), _uniform(rng, layer.bias, lim)),
                           is_leaf=lambda x: x is None)
    if isinstance(layer, (eqx.nn.Conv, eqx.nn.ConvTranspose)):  # the same rule for both
        lim = 1 / math.sqrt(layer.in_channels // layer.groups * math.prod(layer.kernel_size))
        return eqx.tree_at(lambda m: (m.weight, m.bias), layer,
                           (_uniform(rng, layer.weight, lim), _uniform(rng, layer.bias, lim)),
                           is_leaf=lambda x: x is None)
    if isinstance(layer, (eqx.nn.LSTMCell, eqx.nn.GRUCell)):
        lim = math.sqrt(1 / layer.hidden_size)
        return jax.tree_util.tree_map(lambda a: _uniform(rng, a, lim), layer, is_leaf=_is_abstract)
    if isinstance(layer, (eqx.nn.GroupNorm, eqx.nn.LayerNorm)):
        return eqx.tree_at(
            lambda m: (m.weight, m.bias), layer,
            (None if layer.weight is None else _put(np.ones(layer.weight.shape, layer.weight.dtype)),
             None if layer.bias is None else _put(np.zeros(layer.bias.shape, layer.bias.dtype))),
            is_leaf=lambda x: x is None)
    raise TypeError(f"no host initialiser for {type(layer).__name__}")


def fill_layers(module: M, rng: np.random.Generator) -> M:
    """Every layer inside `module` (not `module` itself) drawn in turn, depth first: what a
    module's own `host_init` calls before it adjusts anything."""
    is_layer = lambda x: x is not module and (isinstance(x, _LAYERS) or hasattr(x, "host_init"))  # noqa: E731
    return jax.tree_util.tree_map(lambda x: _fill(x, rng) if is_layer(x) else x, module, is_leaf=is_layer)


def host_init(build: Callable[[jax.Array], M], seed: int) -> M:
    """`build(key)` with every parameter drawn on the host from NumPy's generator `seed`.

    The result has the structure, shapes and initial distributions of `build(key)`; the
    numbers differ (a different random stream), and it takes milliseconds instead of seconds.
    """
    skeleton = eqx.filter_eval_shape(build, jax.random.PRNGKey(seed))
    rng = np.random.default_rng([seed, 0x67746D6D])  # "gtmm": a stream apart from data seeds
    model = fill_layers(skeleton, rng)
    leftovers = [jax.tree_util.keystr(path) for path, x in jax.tree_util.tree_leaves_with_path(
        model, is_leaf=_is_abstract) if _is_abstract(x)]
    if leftovers:
        raise TypeError(f"host_init cannot initialise {', '.join(leftovers)}: give the module owning "
                        "them a host_init(rng) method or build it from Equinox layers")
    return model
