"""The VRNN baseline (Chung et al. 2015; paper section 2, Fig. 1a): the LSTM state is the memory."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from gtmm.errors import GtmmError
from gtmm.memories.base import AbstractMemory, ControllerInput


class LSTMState(NamedTuple):
    h: Float[Array, " hidden"]
    c: Float[Array, " hidden"]


class VRNNMemory(AbstractMemory):
    """h_t = LSTM(h_{t-1}, [phi(x_t), phi(z_t), c_{t+1}]); Psi_{t-1} = h_{t-1}.

    phi(x) is the encoder embedding and phi(z) is z itself; the LSTM's input weights act as
    the feature maps. The step for time t consumes x_{t-1} and z_{t-1}, so the context it
    returns depends only on the past, as the prior f_z(h_{t-1}) requires.
    """

    lstm: eqx.nn.LSTMCell
    hidden_size: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)

    def __init__(self, *, latent_size: int, observation_size: int, task_context_size: int, hidden_size: int,
                 key: PRNGKeyArray, **_: int):
        self.lstm = eqx.nn.LSTMCell(observation_size + latent_size + task_context_size, hidden_size, key=key)
        self.hidden_size = hidden_size
        self.context_size = hidden_size

    @classmethod
    def default_word_size(cls, latent_size: int) -> None:
        return None  # no external memory, no words

    @classmethod
    def check_settings(cls, *, word_size: int | None, **_: int) -> None:
        if word_size is not None:
            raise GtmmError("vrnn has no external memory, so it takes no word size")

    def initial_state(self) -> LSTMState:
        zeros = jnp.zeros(self.hidden_size)
        return LSTMState(zeros, zeros)

    def __call__(self, inputs: ControllerInput, state: LSTMState) -> tuple[Float[Array, " psi"], LSTMState]:
        x = jnp.concatenate([inputs.observation, inputs.latent, inputs.context])
        h, c = self.lstm(x, (state.h, state.c))
        return h, LSTMState(h, c)
