"""The one interface every memory system implements (paper section 3, Fig. 2).

A memory is a recurrent core in the dm-haiku sense: `initial_state()` and
`__call__(inputs, state) -> (context, new_state)`. At step t it receives the controller input
(z_{t-1}, the previous frame's embedding, the task context c_t), updates its controller and its
store, and returns the memory context Psi_{t-1}: a function of what was in memory before step t
only. The generative model (prior, posterior, observation map) sees the memory only through Psi.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import equinox as eqx
from jaxtyping import Array, Float, PyTree


class ControllerInput(NamedTuple):
    """What a memory receives at step t (one sequence, no batch axis)."""

    latent: Float[Array, " latent"]  # z_{t-1} (zeros at t = 1)
    observation: Float[Array, " embed"]  # e(x_{t-1}) (zeros at t = 1); only the VRNN reads it
    context: Float[Array, " context"]  # c_t, e.g. the maze action; zero-width when absent


class AbstractMemory(eqx.Module):
    """A memory system: controller plus store, stepped inside the model's `lax.scan`."""

    context_size: eqx.AbstractVar[int]  # |Psi|

    @abc.abstractmethod
    def initial_state(self) -> PyTree:
        """The state before the first step: empty store, zero controller."""

    @abc.abstractmethod
    def __call__(self, inputs: ControllerInput, state: PyTree) -> tuple[Float[Array, " psi"], PyTree]:
        """One step: returns (Psi_{t-1}, new state)."""
