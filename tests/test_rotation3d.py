"""The rotation-3d task (paper section 5.7): rendered episodes, their cache, networks and metric."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gtmm.errors import GtmmError
from tests._fakes import fake_episode_dataset

HAS_3D = all(importlib.util.find_spec(p) for p in ("mujoco", "dm_control", "labmaze"))
needs_3d = pytest.mark.skipif(not HAS_3D, reason="the 3d extra is not installed (pip install -e '.[test,3d]')")


# --- the renderer (needs the 3d extra and an EGL or OSMesa library) -----------------------------

@pytest.fixture(scope="module")
def episode():
    from gtmm.data.maze3d import render_episode

    os.environ.setdefault("MUJOCO_GL", "egl")
    return render_episode((0, 3))


@needs_3d
def test_frames_are_rgb_uint8_of_the_right_shape_and_not_blank(episode):
    frames, world = episode
    assert frames.shape == (30, 3, 32, 32) and frames.dtype == np.uint8
    assert frames.std() > 20  # a textured scene, not a cleared buffer
    assert len({frames[t].tobytes() for t in range(30)}) > 20  # the camera turns
    assert "maze" in world.description and world.angles.shape == (30,)


@needs_3d
def test_the_same_seed_gives_the_same_frames_and_another_seed_other_frames(episode):
    from gtmm.data.maze3d import render_episode

    again, _ = render_episode((0, 3))
    np.testing.assert_array_equal(again, episode[0])
    other, _ = render_episode((0, 4))
    assert np.abs(other.astype(int) - episode[0]).mean() > 10


@needs_3d
def test_the_view_returns_after_one_period(episode):
    """One period apart the headings differ by 15 a (t - 7.5) rad (at most 0.1 rad): frames 7 and
    22 are nearly the same view, much closer than frames a few steps apart."""
    frames = episode[0].astype(np.float32) / 255
    same = np.abs(frames[7] - frames[22]).mean()
    apart = min(np.abs(frames[7] - frames[t]).mean() for t in (10, 11, 12))
    assert same < 0.03 and same < apart / 3


def test_camera_angles_make_two_turns_with_acceleration():
    from gtmm.data.maze3d import MAX_ANGULAR_ACCELERATION, PERIOD, camera_angles

    a = MAX_ANGULAR_ACCELERATION
    theta = camera_angles(31, PERIOD, a, 0.5)
    assert theta[30] == pytest.approx(0.5 + 4 * np.pi)
    mismatch = theta[15:30] - theta[:15] - 2 * np.pi
    np.testing.assert_allclose(mismatch, PERIOD * a * (np.arange(15) - 7.5))
    assert np.abs(mismatch).max() <= 0.1 + 1e-9
    assert np.ptp(np.diff(theta)) > 0  # the angular velocity changes


@needs_3d
def test_no_opengl_library_gives_a_one_line_error_saying_what_to_install(tmp_path):
    env = {**os.environ, "MUJOCO_GL": "egl", "__EGL_VENDOR_LIBRARY_DIRS": str(tmp_path / "none")}
    out = subprocess.run([sys.executable, "-m", "gtmm.cli", "data", "generate-3d", "--episodes", "1", "--out",
                          str(tmp_path / "data"), "--no-progress"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install" in lines[0] and "MUJOCO_GL=osmesa" in lines[0], out.stderr


# --- the cache (rendering replaced by a stand-in: no 3d extra needed) -----------------------------

class _FakeWorld:
    def __init__(self, seed):
        self.angles = np.full(30, float(seed[1]), np.float32)
        self.acceleration = 0.0


def _fake_render(calls, stop_after=None):
    def render(seed, size=32):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(seed)
        frames = np.random.default_rng(list(seed)).integers(0, 256, (30, 3, size, size), dtype=np.uint8)
        return frames, _FakeWorld(seed)
    return render


def test_generation_continues_after_an_interruption_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    from gtmm.data import maze3d
    from gtmm.data.rotation3d import generate, load_rotation3d

    calls = []
    monkeypatch.setattr(maze3d, "render_episode", _fake_render(calls, stop_after=13))
    with pytest.raises(KeyboardInterrupt):
        generate(20, root=tmp_path / "a", shard_episodes=5, progress=False)
    assert len(calls) == 13  # shards 0 and 1 were written; shard 2 was under way
    calls.clear()
    monkeypatch.setattr(maze3d, "render_episode", _fake_render(calls))
    summary = generate(20, root=tmp_path / "a", shard_episodes=5, progress=False)
    assert [s[1] for s in calls] == list(range(10, 20)) and summary["kept"] == 10
    generate(20, root=tmp_path / "b", shard_episodes=5, progress=False)
    a, b = load_rotation3d(tmp_path / "a"), load_rotation3d(tmp_path / "b")
    np.testing.assert_array_equal(a.train.frames, b.train.frames)
    assert list(a.eval.episodes) == [9, 19] and len(a.train) == 18  # every tenth episode is held out
    calls.clear()
    assert generate(20, root=tmp_path / "a", shard_episodes=5, progress=False)["rendered"] == 0 and not calls


@pytest.mark.parametrize("action", ["generate-3d", "make-3d"])
def test_the_command_renders_under_either_name(tmp_path, monkeypatch, capsys, action):
    from gtmm.cli import main
    from gtmm.data import maze3d
    from gtmm.data.rotation3d import load_rotation3d

    calls = []
    monkeypatch.setattr(maze3d, "render_episode", _fake_render(calls))
    assert main(["data", action, "--episodes", "10", "--seed", "3", "--out", str(tmp_path), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["rendered"] == 10
    assert sorted(s[1] for s in calls) == list(range(10)) and {s[0] for s in calls} == {3}
    assert len(load_rotation3d(tmp_path).train) == 9


def test_a_damaged_shard_gives_a_one_line_error_saying_to_regenerate(tmp_path, monkeypatch):
    from gtmm.data import maze3d
    from gtmm.data.rotation3d import generate, load_rotation3d

    monkeypatch.setattr(maze3d, "render_episode", _fake_render([]))
    generate(12, root=tmp_path, shard_episodes=5, progress=False)
    shard = tmp_path / "shard-00001.npz"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(GtmmError, match="damaged.*regenerate it: gtmm data generate-3d") as e:
        load_rotation3d(tmp_path)
    assert "\n" not in str(e.value)
    calls = []
    monkeypatch.setattr(maze3d, "render_episode", _fake_render(calls))
    generate(12, root=tmp_path, shard_episodes=5, progress=False)  # rewrites only the damaged shard
    assert [s[1] for s in calls] == list(range(5, 10))
    load_rotation3d(tmp_path)


def test_missing_cache_says_how_to_generate(tmp_path):
    from gtmm.data.rotation3d import load_rotation3d

    with pytest.raises(GtmmError, match="gtmm data generate-3d"):
        load_rotation3d(tmp_path)


# --- task, networks, metric, figures -----------------------------------------------------------------

def test_task_batches_observe_the_first_turn(episode_dataset):
    from gtmm.tasks import make_task

    task = make_task("rotation-3d", dataset=episode_dataset)
    b = task.batch("train", 2, 0, 0)
    assert b.frames.shape == (2, 30, 3, 32, 32) and b.frames.dtype == np.float32
    assert 0 <= b.frames.min() and b.frames.max() <= 1 and b.recall_start == task.recall_start == 15
    assert list(b.source_index[0, 14:17]) == [-1, 0, 1]
    assert not set(b.labels[:, 0]) & set(task.batch("eval", 5, 0, 0).labels[:, 0])


def test_a_batch_holds_distinct_episodes_when_the_split_has_enough(episode_dataset):
    from gtmm.tasks import make_task

    task = make_task("rotation-3d", dataset=episode_dataset)  # 18 training episodes, 2 held out
    for step in range(5):
        assert len(set(task.batch("train", 10, 0, step).labels[:, 0])) == 10
    held = task.batch("eval", 5, 0, 0).labels[:, 0]  # more than the 2 held out: each once, then repeats
    assert len(held) == 5 and len(set(held[:2])) == 2


def test_the_3d_networks_follow_from_the_task_and_match_table_1(episode_dataset):
    import equinox as eqx
    import jax

    from gtmm.memories import MEMORIES
    from gtmm.model import GTMM, count_parameters
    from gtmm.tasks import make_task
    from gtmm.train import TrainConfig

    task = make_task("rotation-3d", dataset=episode_dataset)
    counts = {}
    for name in MEMORIES:
        cfg = TrainConfig(model=name, task="rotation-3d").validate().model_config(task)
        assert (cfg.network, cfg.frame_channels, cfg.latent_size) == ("two-pathway", 3, 256)
        counts[name] = count_parameters(eqx.filter_eval_shape(GTMM, cfg, key=jax.random.PRNGKey(0)))
    cfg = TrainConfig(model="introspective", task="rotation-3d", model_overrides={"context_with_controller": True})
    counts["introspective with h_t"] = count_parameters(eqx.filter_eval_shape(
        GTMM, cfg.validate().model_config(task), key=jax.random.PRNGKey(0)))
    assert abs(counts["introspective with h_t"] / counts["introspective"] - 1) < 0.01, counts
    assert max(counts.values()) / min(counts.values()) < 1.05
    assert all(5.85e6 < n < 6.05e6 for n in counts.values()), counts  # Table 1: 5.91-5.99 M


def test_the_3d_networks_map_frames_to_768_features_and_back():
    import equinox as eqx

    from gtmm.init import host_init
    from gtmm.networks import TwoPathwayDecoder, TwoPathwayEncoder

    enc = host_init(lambda key: TwoPathwayEncoder(3, 768, key=key), 0)
    dec = host_init(lambda key: TwoPathwayDecoder(10, 3, key=key), 1)
    assert eqx.filter_jit(enc)(np.zeros((3, 32, 32), np.float32)).shape == (768,)
    assert eqx.filter_jit(dec)(np.zeros(10, np.float32)).shape == (3, 32, 32)
    with pytest.raises(GtmmError, match="take frames of 3x32x32.*got 3x64x64"):
        enc(np.zeros((3, 64, 64), np.float32))


def test_a_frame_size_the_networks_do_not_take_is_a_clear_error():
    from gtmm.model import ModelConfig
    from gtmm.tasks import make_task
    from gtmm.train import TrainConfig

    with pytest.raises(GtmmError, match="two-pathway networks take frames of 3x32x32.*got 3x64x64"):
        ModelConfig("vrnn", 30, network="two-pathway", frame_channels=3, frame_size=64).resolved()
    task = make_task("rotation-3d", dataset=fake_episode_dataset(episodes=10, length=30, size=64))
    with pytest.raises(GtmmError, match="got 3x64x64"):
        TrainConfig(model="dnc", task="rotation-3d").model_config(task)


def test_pixel_error_scores_the_second_turn(episode_dataset):
    from gtmm.metrics import GenerationScorer, combine
    from gtmm.tasks import make_task

    task = make_task("rotation-3d", dataset=episode_dataset)
    batch = task.batch("eval", 2, 0, 0)
    scorer = GenerationScorer(task)
    perfect = combine([scorer(batch, batch.frames)]).summary()
    assert perfect["generation_mse"] == 0 and perfect["generation_frames"] == 30
    copied = batch.frames.copy()
    copied[:, 15:] = batch.frames[:, :15]
    summary = combine([scorer(batch, copied), scorer(batch, copied)]).summary()
    assert summary["generation_mse"] == pytest.approx(summary["generation_mse_copy"]) and summary["generation_mse"] > 0
    assert summary["generation_mse_mean_frame"] > 0


def test_sample_grid_shows_colour(tmp_path, episode_dataset):
    from gtmm.plots import save_sample_grid

    frames = episode_dataset.train.frames[:1, :4].astype(np.float32) / 255
    path = save_sample_grid(tmp_path / "s.png", frames, frames, frames, 2)
    assert path.stat().st_size > 1000
