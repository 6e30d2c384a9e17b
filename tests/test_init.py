"""Host-side initialisation gives the model Equinox would build, drawn from the same distributions."""

import math

import equinox as eqx
import jax
import numpy as np
import pytest

from gtmm.init import host_init
from gtmm.memories import MEMORIES
from gtmm.model import GTMM, ModelConfig, init_model


def _arrays(model):
    return jax.tree_util.tree_leaves_with_path(eqx.filter(model, eqx.is_array))


@pytest.mark.parametrize("name", list(MEMORIES))
def test_same_structure_shapes_and_bounds_as_equinox(name):
    cfg = ModelConfig(name, 6).resolved()
    ours = init_model(cfg, 3)
    reference = eqx.filter_eval_shape(GTMM, cfg, key=jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(eqx.filter(ours, eqx.is_array)) == jax.tree_util.tree_structure(
        eqx.filter(reference, lambda x: isinstance(x, jax.ShapeDtypeStruct)))
    # every weight lies inside its layer's Equinox bound, and the large ones fill it (uniform)
    for layer in jax.tree_util.tree_leaves(ours, is_leaf=lambda x: isinstance(x, (eqx.nn.Linear, eqx.nn.Conv))):
        if isinstance(layer, eqx.nn.Linear):
            lim = 1 / math.sqrt(layer.in_features)
        elif isinstance(layer, eqx.nn.Conv):
            lim = 1 / math.sqrt(layer.in_channels * math.prod(layer.kernel_size))
        else:
            continue
        w = np.asarray(layer.weight)
        assert np.abs(w).max() <= lim
        if w.size >= 1000:
            assert np.isclose(w.std(), lim / math.sqrt(3), rtol=0.05)  # std of U(-lim, lim)


def test_seeded_and_distinct_across_seeds():
    cfg = ModelConfig("introspective", 4)
    a, b, c = init_model(cfg, 0), init_model(cfg, 0), init_model(cfg, 1)
    for (_, x), (_, y), (_, z) in zip(_arrays(a), _arrays(b), _arrays(c)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        if x.size > 1 and np.asarray(x).std() > 0:
            assert not np.array_equal(np.asarray(x), np.asarray(z))


def test_unknown_parameter_is_an_error_not_left_uninitialised():
    class Odd(eqx.Module):
        linear: eqx.nn.Linear
        table: jax.Array

        def __init__(self, key):
            self.linear = eqx.nn.Linear(2, 2, key=key)
            self.table = jax.numpy.zeros(3)

    with pytest.raises(TypeError, match="table"):
        host_init(Odd, 0)
