"""Memory registry: one file per memory, all behind `AbstractMemory` (SPEC section 1)."""

from __future__ import annotations

from gtmm.catalog import PLUGIN_GROUP
from gtmm.errors import GtmmError
from gtmm.memories.associative import AssociativeMemory
from gtmm.memories.base import AbstractMemory, ControllerInput
from gtmm.memories.dnc import DNCMemory
from gtmm.memories.introspective import IntrospectiveMemory
from gtmm.memories.lru import LRUMemory
from gtmm.memories.ntm import NTMMemory
from gtmm.memories.vrnn import VRNNMemory

MEMORIES: dict[str, type[AbstractMemory]] = {
    "vrnn": VRNNMemory,
    "introspective": IntrospectiveMemory,
    "ntm": NTMMemory,
    "lru": LRUMemory,
    "dnc": DNCMemory,
    # Beyond the paper: the combined memory its conclusion proposes (latents read by position,
    # content and succession).
    "associative": AssociativeMemory,
}

# LSTM widths chosen so every model has about the paper's Table 1 parameter count
# (1.86-1.88 M) on the digits tasks at T = 20; `gtmm info` prints the counts. The NTM, LRU and
# DNC controllers are narrow because their Psi = [5 reads of 32, h_t] feeds the prior,
# posterior and observation maps, whose input layers grow with |Psi|; their memory
# parameters do not depend on the number of slots.
DEFAULT_HIDDEN = {"vrnn": 222, "introspective": 316, "ntm": 93, "lru": 92, "dnc": 93, "associative": 300}
# The same for the 3D networks of appendix B.2 (latent 256, 768 image features, T = 30), near
# Table 1's 5.91-5.99 M; `gtmm info --task rotation-3d` prints the counts.
DEFAULT_HIDDEN_3D = {"vrnn": 320, "introspective": 150, "ntm": 51, "lru": 49, "dnc": 51, "associative": 95}
DEFAULT_HIDDEN_BY_NETWORK = {"inception": DEFAULT_HIDDEN, "two-pathway": DEFAULT_HIDDEN_3D}
# The introspective memory with `context_with_controller`: h_t joins Psi, so the maps' input
# layers grow with the controller's width, as for the NTM, LRU and DNC; these widths give the
# paper-faithful introspective model's count within 0.1% (1,868,189 against 1,869,173 on the
# digits, 5,962,124 against 5,960,364 in 3D) instead of 3.33 M at width 316.
DEFAULT_HIDDEN_WITH_CONTROLLER = {"inception": 98, "two-pathway": 110}


def check_model(name: str) -> None:
    if name not in MEMORIES:
        raise GtmmError(f"unknown model {name!r}; choose one of: {', '.join(MEMORIES)}"
                        " (a memory of your own: install the package that registers it through a 'gtmm.memories'"
                        " entry point, or call gtmm.memories.register_memory first)")


def register_memory(name: str, memory: type[AbstractMemory], hidden_size: int | dict[str, int]) -> None:
    """Make `memory` a model that gtmm trains, evaluates, reports and reproduces under `name`.

    `memory` subclasses `AbstractMemory` (or `base.InterfaceMemory`) and takes the keyword
    arguments every memory gets (`latent_size`, `observation_size`, `task_context_size`,
    `hidden_size`, `slots`, `read_heads`, `word_size`, `key`; `**_` for those it ignores).
    `hidden_size` is its controller's default width, one for both networks or
    {"inception": H, "two-pathway": H3} (choose it with `gtmm info` to match Table 1's counts).
    A memory with slots may override `read_weights_after(state)`, which `gtmm reads` plots.

    From Python, call this before building a model. For the command line, and for runs read back
    later, put the call in a module and name the module in your package's entry points, group
    "gtmm.memories" (`load_plugins`)."""
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise GtmmError(f"a memory's name must be a non-empty word of letters, digits, - and _; got {name!r}")
    if name in MEMORIES and MEMORIES[name] is not memory:
        raise GtmmError(f"a memory named {name!r} is already registered ({MEMORIES[name].__name__}); choose another name")
    if not (isinstance(memory, type) and issubclass(memory, AbstractMemory)):
        raise GtmmError(f"memory {name!r} must be a subclass of gtmm.memories.AbstractMemory, got {memory!r}")
    sizes = hidden_size if isinstance(hidden_size, dict) else dict.fromkeys(DEFAULT_HIDDEN_BY_NETWORK, hidden_size)
    if set(sizes) != set(DEFAULT_HIDDEN_BY_NETWORK) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in sizes.values()):
        raise GtmmError(f"hidden size of memory {name!r} must be a positive integer, or one for each network"
                        f" ({', '.join(DEFAULT_HIDDEN_BY_NETWORK)}); got {hidden_size!r}")
    MEMORIES[name] = memory
    for network, h in sizes.items():
        DEFAULT_HIDDEN_BY_NETWORK[network][name] = h


def load_plugins() -> list[str]:
    """Import every module named in the installed packages' "gtmm.memories" entry points (each
    registers its memories when imported); returns the entry points' names. The command line and
    sweep workers call this; a module that fails to import is a one-line error naming it."""
    from importlib.metadata import entry_points

    loaded = []
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            point.load()
        except Exception as e:  # any error of a third party's module: name it, do not hide it
            raise GtmmError(f"the gtmm.memories plugin {point.name!r} ({point.value}) failed to load:"
                            f" {type(e).__name__}: {e}; fix or uninstall it") from None
        loaded.append(point.name)
    return loaded


__all__ = ["AbstractMemory", "ControllerInput", "MEMORIES", "PLUGIN_GROUP", "register_memory", "load_plugins",
           "DEFAULT_HIDDEN", "DEFAULT_HIDDEN_3D", "DEFAULT_HIDDEN_BY_NETWORK", "DEFAULT_HIDDEN_WITH_CONTROLLER",
           "check_model"]
