"""The one interface every memory system implements (paper section 3, Fig. 2).

A memory is a recurrent core in the dm-haiku sense: `initial_state()` and
`__call__(inputs, state) -> (context, new_state)`. At step t it receives the controller input
(z_{t-1}, the previous frame's embedding, the task context c_t), updates its controller and its
store, and returns the memory context Psi_{t-1}: a function of what was in memory before step t
only. The generative model (prior, posterior, observation map) sees the memory only through Psi.
"""

from __future__ import annotations

import abc
import math
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
    content_addressed = False  # reads by content similarity (takes `top_k`)

    @classmethod
    def default_slots(cls, sequence_length: int) -> int:
        """Memory slots when the configuration names none: T (paper section 4.1)."""
        return sequence_length

    @classmethod
    def default_word_size(cls, latent_size: int) -> int | None:
        """Width of a memory word when the configuration names none: the latent size."""
        return latent_size

    @classmethod
    def check_settings(cls, *, slots: int, read_heads: int, word_size: int | None, latent_size: int) -> None:
        """Raise a one-line `GtmmError` for settings this memory cannot run with (before any compile)."""

    @abc.abstractmethod
    def initial_state(self) -> PyTree:
        """The state before the first step: empty store, zero controller."""

    @abc.abstractmethod
    def __call__(self, inputs: ControllerInput, state: PyTree) -> tuple[Float[Array, " psi"], PyTree]:
        """One step: returns (Psi_{t-1}, new state)."""


def split_interface(vector: Float[Array, " n"], shapes: dict[str, tuple[int, ...]]) -> dict[str, Float[Array, "..."]]:
    """Cut a controller's interface vector into named pieces of the given shapes, in order."""
    out, start = {}, 0
    for name, shape in shapes.items():
        out[name] = vector[start:start + math.prod(shape)].reshape(shape)
        start += math.prod(shape)
    return out


def interface_size(shapes: dict[str, tuple[int, ...]]) -> int:
    """How many entries `split_interface` needs for `shapes`."""
    return sum(math.prod(shape) for shape in shapes.values())
