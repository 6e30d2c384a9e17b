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
import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from gtmm.errors import GtmmError


class ControllerInput(NamedTuple):
    """What a memory receives at step t (one sequence, no batch axis)."""

    latent: Float[Array, " latent"]  # z_{t-1} (zeros at t = 1)
    observation: Float[Array, " embed"]  # e(x_{t-1}) (zeros at t = 1); only the VRNN reads it
    context: Float[Array, " context"]  # c_t, e.g. the maze action; zero-width when absent


class AbstractMemory(eqx.Module):
    """A memory system: controller plus store, stepped inside the model's `lax.scan`."""

    context_size: eqx.AbstractVar[int]  # |Psi|
    content_addressed = False  # reads by content similarity (takes `top_k`)
    has_temporal_links = False  # keeps a temporal link between slots (takes `link_k`)
    content_indexes = ()  # content indexes it can read through (takes `content_index`)

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

    def read_weights_after(self, state: PyTree) -> Float[Array, "heads slots"] | None:
        """The read weights the step that returned `state` used, one row per read head over the
        slots (what `gtmm reads` plots); None for a memory without slots (the VRNN)."""
        return None


class InterfaceMemory(AbstractMemory):
    """An LSTM controller that writes words and reads R of them back by content (NTM, LRU, DNC).

    h_t = LSTM(h_{t-1}, [z_{t-1}, c_t, phi_{t-1}]) (eq. 13); one linear map of h_t gives every
    head's instructions (`_interface_shapes`); Psi = [phi^1, ..., phi^R, h_t] (eq. 16).
    """

    lstm: eqx.nn.LSTMCell
    interface: eqx.nn.Linear  # h_t -> every head's instructions, unsquashed
    hidden_size: int = eqx.field(static=True)
    slots: int = eqx.field(static=True)
    read_heads: int = eqx.field(static=True)
    word_size: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    top_k: int | None = eqx.field(static=True)
    content_addressed = True

    def _build_controller(self, *, latent_size: int, task_context_size: int, hidden_size: int, slots: int,
                          read_heads: int, word_size: int | None, top_k: int | None, key: PRNGKeyArray) -> None:
        """Set the shared fields; a subclass sets its own head settings first (`_interface_shapes` reads them)."""
        k1, k2 = jax.random.split(key)
        self.top_k, self.word_size = top_k, word_size or latent_size
        self.hidden_size, self.slots, self.read_heads = hidden_size, slots, read_heads
        self.lstm = eqx.nn.LSTMCell(latent_size + task_context_size + read_heads * self.word_size, hidden_size, key=k1)
        self.interface = eqx.nn.Linear(hidden_size, interface_size(self._interface_shapes()), key=k2)
        self.context_size = read_heads * self.word_size + hidden_size

    @abc.abstractmethod
    def _interface_shapes(self) -> dict[str, tuple[int, ...]]:
        """The named pieces of the controller's interface vector and their shapes, in order."""

    def _interface(self, h: Float[Array, " hidden"]) -> dict[str, Float[Array, "..."]]:
        return split_interface(self.interface(h), self._interface_shapes())


def check_stores_latents(name: str, *, word_size: int | None, latent_size: int) -> None:
    """For memories that store z_t itself: the word size can only be the latent size."""
    if word_size != latent_size:
        raise GtmmError(f"{name} stores the latents themselves, so its word size is the latent size "
                        f"({latent_size}), not {word_size}")


def split_interface(vector: Float[Array, " n"], shapes: dict[str, tuple[int, ...]]) -> dict[str, Float[Array, "..."]]:
    """Cut a controller's interface vector into named pieces of the given shapes, in order."""
    return {name: vector[start:start + math.prod(shape)].reshape(shape)
            for name, (start, shape) in interface_offsets(shapes).items()}


def interface_offsets(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Where each named piece starts in the interface vector, with its shape (`split_interface`'s layout)."""
    out, start = {}, 0
    for name, shape in shapes.items():
        out[name] = (start, shape)
        start += math.prod(shape)
    return out


def interface_size(shapes: dict[str, tuple[int, ...]]) -> int:
    """How many entries `split_interface` needs for `shapes`."""
    return sum(math.prod(shape) for shape in shapes.values())
