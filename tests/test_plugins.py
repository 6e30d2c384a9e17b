"""Extending gtmm with a memory of one's own: `register_memory` and the "gtmm.memories" entry points."""

import json
import sys
from importlib.metadata import EntryPoint

import pytest

from gtmm.errors import GtmmError
from gtmm.memories import DEFAULT_HIDDEN_BY_NETWORK, MEMORIES, AbstractMemory, register_memory
from tests.test_cli import main_error


@pytest.fixture
def registry(monkeypatch):
    """The registries as they were before the test, restored after it; entry points found: only
    the ones the test sets in `points`."""
    saved = dict(MEMORIES), {n: dict(h) for n, h in DEFAULT_HIDDEN_BY_NETWORK.items()}
    points = []
    monkeypatch.setattr("importlib.metadata.entry_points",
                        lambda group=None: [p for p in points if p.group == group])
    sys.modules.pop("tests.plugin_memory", None)
    yield points
    sys.modules.pop("tests.plugin_memory", None)
    MEMORIES.clear()
    MEMORIES.update(saved[0])
    for network, hidden in DEFAULT_HIDDEN_BY_NETWORK.items():
        hidden.clear()
        hidden.update(saved[1][network])


def test_a_plugin_memory_trains_evaluates_and_reports_from_the_command_line(tmp_path, capsys, registry):
    from gtmm.cli import main

    registry.append(EntryPoint(name="previous-latent", value="tests.plugin_memory", group="gtmm.memories"))
    assert "previous-latent" not in MEMORIES
    run = tmp_path / "run"
    assert main(["train", "--model", "previous-latent", "--l", "3", "--k", "2", "--batch-size", "2", "--steps", "2",
                 "--no-progress", "--out", str(run)]) == 0
    assert MEMORIES["previous-latent"].__name__ == "PreviousLatent"
    from gtmm.train import read_config

    assert read_config(run).model == "previous-latent"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--batches", "1"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["model"] == "previous-latent" and ev["step"] == 2
    assert main(["report", str(run), "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    assert "| previous-latent | 1 | 2 |" in (tmp_path / "report" / "report.md").read_text()

    from gtmm.model import ModelConfig

    assert ModelConfig("previous-latent", 5).resolved().hidden_size == 16  # the plugin's default width
    assert ModelConfig("previous-latent", 5, network="two-pathway", frame_channels=3,
                       latent_size=256).resolved().hidden_size == 8


def test_a_plugin_that_fails_to_import_is_one_line(registry, capsys):
    registry.append(EntryPoint(name="broken", value="tests.no_such_module", group="gtmm.memories"))
    line = main_error(capsys, "info")
    assert "plugin 'broken' (tests.no_such_module) failed to load" in line and "ModuleNotFoundError" in line


def test_register_memory_refuses_what_it_cannot_use(registry):
    class Mine(AbstractMemory):
        context_size: int = 1

    for args, words in ((("", Mine, 8), "non-empty word"), (("a b", Mine, 8), "non-empty word"),
                        (("vrnn", Mine, 8), "already registered (VRNNMemory)"),
                        (("mine", dict, 8), "subclass of gtmm.memories.AbstractMemory"),
                        (("mine", Mine, 0), "positive integer"), (("mine", Mine, {"inception": 8}), "each network")):
        with pytest.raises(GtmmError, match=words.replace("(", r"\(").replace(")", r"\)")):
            register_memory(*args)
    assert "mine" not in MEMORIES
    register_memory("mine", Mine, 8)
    register_memory("mine", Mine, 8)  # the same class again (a module imported twice) is fine
    assert MEMORIES["mine"] is Mine and all(h["mine"] == 8 for h in DEFAULT_HIDDEN_BY_NETWORK.values())
