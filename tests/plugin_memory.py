"""A memory of one's own, as a researcher's package would ship it: importing this module registers
it (tests/test_plugins.py names it in a "gtmm.memories" entry point)."""

import equinox as eqx
import jax.numpy as jnp

from gtmm.memories import AbstractMemory, ControllerInput, register_memory


class PreviousLatent(AbstractMemory):
    """Psi_{t-1} = tanh(W [z_{t-1}, c_t]): remembers one step, no store."""

    proj: eqx.nn.Linear
    context_size: int = eqx.field(static=True)

    def __init__(self, *, latent_size: int, task_context_size: int, hidden_size: int, key, **_):
        self.proj = eqx.nn.Linear(latent_size + task_context_size, hidden_size, key=key)
        self.context_size = hidden_size

    @classmethod
    def default_word_size(cls, latent_size: int) -> None:
        return None

    def initial_state(self):
        return jnp.zeros(())

    def __call__(self, inputs: ControllerInput, state):
        return jnp.tanh(self.proj(jnp.concatenate([inputs.latent, inputs.context]))), state


register_memory("previous-latent", PreviousLatent, hidden_size={"inception": 16, "two-pathway": 8})
