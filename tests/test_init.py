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


def test_model_adam_state_and_checkpoint_are_made_without_a_program_per_shape(tmp_path):
    """Arrays are transferred, not computed: jnp.asarray, Adam's eager zeros_like and jnp.load each
    compile a program per distinct array shape (73 for a DNC before: about 3 s a process at XLA's
    defaults). A model, its Adam state and a checkpoint of both, written and read back, now take
    at most four: the key and its seed, Adam's zeros in one program, and the scalar Equinox's
    reader makes once a process."""
    import jax.monitoring

    from gtmm.train import TrainConfig, make_optimizer, read_checkpoint, save_checkpoint

    compiled = []

    def listen(event, seconds, fun_name=None, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        # widths no other test uses, so this process has compiled nothing for these shapes yet
        cfg = ModelConfig("dnc", 4, hidden_size=11, map_hidden=13, latent_size=7, slots=9).resolved()
        model = init_model(cfg, 0)
        state = make_optimizer(TrainConfig(model="dnc", learning_rate=3.7e-4)).init(eqx.filter(model, eqx.is_array))
        path = save_checkpoint(tmp_path, 1, model, state, keep=1)
        _, loaded, loaded_state = read_checkpoint(path, model, state)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert len(compiled) <= 4, compiled
    for a, b in zip(jax.tree_util.tree_leaves((model, state)), jax.tree_util.tree_leaves((loaded, loaded_state))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
