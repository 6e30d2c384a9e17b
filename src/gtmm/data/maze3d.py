"""First-person views of random 3D mazes while the camera turns in place (paper section 5.7, Fig. 16).

Every episode is a new world, all of it drawn from the episode's seed:
- layout: a DeepMind-Lab-style maze of rooms and corridors from `labmaze.RandomMaze`, covered by
  wall boxes with `dm_control.locomotion.arenas.covering` (as dm-control's maze arenas do);
- textures: one of labmaze's five DeepMind Lab styles gives the wall and floor textures, one of
  its three skyboxes the skyline (DeepMind Lab's own textures, shipped in the labmaze wheel);
- paintings: 3-8 procedural pictures (stripes, discs, blocks in random colours, framed) hung on
  wall faces, and 2-6 coloured objects (spheres, boxes, cylinders, capsules) on the floor;
- lighting: a headlight and a directional light from a random direction.

The camera stands at the centre of a random floor cell at eye height and turns in place for two
full turns in `EPISODE_LENGTH = 30` frames with a constant angular acceleration (`camera_angles`).

Rendering is MuJoCo's offscreen OpenGL renderer, headless: `MUJOCO_GL=egl` (Mesa's software EGL
on a CPU machine) by default, `MUJOCO_GL=osmesa` as the fallback. One GL context serves a whole
process; each episode only uploads its model's (downsampled) textures. A frame is rendered at
twice the requested size and averaged down 2x2 (anti-aliasing), then stored as uint8 RGB.

Needs the `3d` extra: `pip install -e '.[3d]'` (dm-control, mujoco, labmaze).
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass

import numpy as np

from gtmm.errors import GtmmError

EPISODE_LENGTH = 30  # frames per episode (section 5.7)
PERIOD = 15  # frames per full turn on average: "the period until repetition was approximately 15 steps"
# Largest angular acceleration, radians per step^2. The heading at step t + PERIOD differs from
# the heading at step t by 2 pi + 15 a (t - 7.5) (see `camera_angles`), so views one period apart
# agree within 15 * a * 7.5 rad: at most 0.1 rad (6 degrees, a quarter of a step's mean turn)
# and exactly near the middle of the first turn.
MAX_ANGULAR_ACCELERATION = 0.1 / (PERIOD * 7.5)
FRAME_SIZE = 32
FIELD_OF_VIEW = 75.0  # vertical = horizontal (square frames), degrees
CELL_SIZE = 2.0  # metres per maze cell
EYE_HEIGHT = 0.8  # metres
_SUPERSAMPLE = 2
_TEXTURE_SIZE = 64  # labmaze's 1024x1024 textures, downsampled once per process
_SKY_SIZE = 128
_SKYLINE_RAISE = 0.4  # skyline moved up by 0.4 of a skybox face (about 20 degrees above the horizon)


def camera_angles(length: int, period: int, acceleration: float, start: float) -> np.ndarray:
    """Heading (radians) of the camera at steps 0..length-1:

        theta(t) = start + 2 pi t / period + a (t^2 - 2 period t) / 2,

    an angular velocity `2 pi / period + a (t - period)` that changes at the constant rate `a`,
    with theta(2 period) = start + 4 pi: two full turns in `2 period` steps whatever `a`. One
    period apart, theta(t + period) - theta(t) - 2 pi = period a (t - period / 2).
    """
    t = np.arange(length, dtype=np.float64)
    return start + 2 * np.pi * t / period + acceleration * (t * t - 2 * period * t) / 2


@dataclass(frozen=True)
class World:
    """One random world: MJCF text, its in-memory texture files, and the camera's motion."""

    xml: str
    assets: dict[str, bytes]
    eye: tuple[float, float, float]
    angles: np.ndarray  # [EPISODE_LENGTH] heading per frame, radians
    acceleration: float
    description: str


# --- textures --------------------------------------------------------------------------------

def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@functools.cache
def _texture(path: str, size: int, raise_by: float = 0.0) -> bytes:
    """A labmaze texture file, decoded, downsampled to `size` and re-encoded (once per process).

    `raise_by` moves a skybox side face's picture up by that fraction of its height (the rows
    left at the bottom repeat its lowest row): DeepMind Lab's skylines stand on the horizon,
    where the maze's walls would hide them from a camera at eye height.
    """
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGBA").convert("RGB").resize((size, size), Image.BILINEAR))
    shift = int(round(raise_by * size))
    if shift:
        pixels = np.concatenate([pixels[shift:], np.repeat(pixels[-1:], shift, axis=0)], axis=0)
    return _png(pixels)


def _painting(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A procedural picture: a background and a few stripes, discs or blocks, in a dark frame."""
    def colour():
        return (rng.uniform(0.15, 1.0, 3) * 255).astype(np.uint8)

    image = np.empty((size, size, 3), np.uint8)
    image[:] = colour()
    yy, xx = np.mgrid[0:size, 0:size]
    kind = rng.integers(3)
    for _ in range(rng.integers(2, 5)):
        c = colour()
        if kind == 0:  # stripes
            width, offset = rng.integers(3, 8), rng.integers(0, size)
            mask = ((xx + offset) // width) % 2 == 0 if rng.random() < 0.5 else ((yy + offset) // width) % 2 == 0
            mask &= rng.random() < 0.7
        elif kind == 1:  # discs
            cy, cx, r = rng.uniform(4, size - 4, 2).tolist() + [rng.uniform(3, size / 3)]
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        else:  # blocks
            y0, x0 = rng.integers(0, size - 6, 2)
            h, w = rng.integers(4, size // 2, 2)
            mask = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
        image[mask] = c
    border = max(1, size // 12)
    image[:border], image[-border:], image[:, :border], image[:, -border:] = 40, 40, 40, 40
    return image


# --- the world -------------------------------------------------------------------------------

def _fmt(values) -> str:
    return " ".join(f"{float(v):.4g}" for v in values)


def random_world(seed: int | tuple[int, ...], size: int = FRAME_SIZE) -> World:
    """The world of episode `seed`: layout, textures, paintings, objects, light and camera motion.

    A pure function of `seed` (NumPy's generator; labmaze is seeded from it).
    """
    labmaze, labmaze_assets, covering = _world_packages()

    rng = np.random.default_rng(seed)
    side = int(rng.choice([9, 11, 13]))
    maze = labmaze.RandomMaze(height=side, width=side, max_rooms=int(rng.integers(2, 6)), room_min_size=3,
                              room_max_size=5, spawns_per_room=0, objects_per_room=0, max_variations=1,
                              simplify=True, random_seed=int(rng.integers(2**31 - 1)))
    layer = maze.entity_layer
    style = str(rng.choice(labmaze_assets.MAZE_STYLES))
    sky = str(rng.choice(labmaze_assets.SKY_STYLES))
    wall_name = str(rng.choice(labmaze_assets.WALL_TEXTURES[style]))
    floor_name = str(rng.choice(labmaze_assets.FLOOR_TEXTURES[style]))
    wall_height = float(rng.uniform(1.4, 2.4))
    s = CELL_SIZE
    x_off, y_off = (layer.shape[1] - 1) / 2, (layer.shape[0] - 1) / 2

    def cell_centre(r: int, c: int) -> np.ndarray:
        return np.array([(c - x_off) * s, -(r - y_off) * s])

    assets = {
        "wall.png": _texture(labmaze_assets.get_wall_texture_paths(style)[wall_name], _TEXTURE_SIZE),
        "floor.png": _texture(labmaze_assets.get_floor_texture_paths(style)[floor_name], _TEXTURE_SIZE),
    }
    faces = labmaze_assets.get_sky_texture_paths(sky)
    for face in ("left", "right", "up", "down", "front", "back"):
        raise_by = _SKYLINE_RAISE if face not in ("up", "down") else 0.0
        assets[f"sky_{face}.png"] = _texture(getattr(faces, face), _SKY_SIZE, raise_by)

    geoms: list[str] = []
    materials: list[str] = []
    # Walls: rectangles covering the '*' cells; only their faces are drawn, each vertical face
    # and the top a textured plane (as dm_control.locomotion.arenas.mazes textures its wall
    # boxes, so textures repeat once per cell). No boxes behind them: nothing to z-fight with.
    axes = {"x": {-1: [0, -1, 0, 0, 0, 1], 1: [0, 1, 0, 0, 0, 1]},
            "y": {-1: [1, 0, 0, 0, 0, 1], 1: [-1, 0, 0, 0, 0, 1]},
            "z": {1: [1, 0, 0, 0, 1, 0]}}
    for i, wall in enumerate(covering.make_walls(layer, wall_char="*", make_odd_sized_walls=True)):
        mid_y, mid_x = (wall.start.y + wall.end.y - 1) / 2, (wall.start.x + wall.end.x - 1) / 2
        pos = np.array([(mid_x - x_off) * s, -(mid_y - y_off) * s, wall_height / 2])
        half = np.array([(wall.end.x - mid_x - 0.5) * s, (wall.end.y - mid_y - 0.5) * s, wall_height / 2])
        for d, name in enumerate("xyz"):
            other = [j for j in range(3) if j != d]
            materials.append(f'<material name="wall{i}{name}" texture="wall" '
                             f'texrepeat="{_fmt(2 * half[other][:2] / s)}"/>')
            for sign in axes[name]:
                delta = np.eye(3)[d] * sign * half
                geoms.append(f'<geom type="plane" pos="{_fmt(pos + delta)}" size="{_fmt([*half[other], s])}" '
                             f'xyaxes="{_fmt(axes[name][sign])}" material="wall{i}{name}"/>')

    floor_cells = [(r, c) for r in range(layer.shape[0]) for c in range(layer.shape[1]) if layer[r, c] != "*"]
    if not floor_cells:
        raise GtmmError(f"maze of episode {seed} has no floor; this is a bug in gtmm")
    # The camera stands in a room rather than a corridor where possible: a cell with at least
    # 6 of its 8 neighbours open, so that a turn shows the maze rather than one wall.
    def open_neighbours(r: int, c: int) -> int:
        return sum(layer[r + i, c + j] != "*" for i in (-1, 0, 1) for j in (-1, 0, 1)
                   if (i or j) and 0 <= r + i < layer.shape[0] and 0 <= c + j < layer.shape[1])

    roomy = [cell for cell in floor_cells if open_neighbours(*cell) >= 6] or floor_cells
    eye_cell = roomy[rng.integers(len(roomy))]
    eye = (*cell_centre(*eye_cell), EYE_HEIGHT)

    # Paintings on wall faces next to floor cells, facing into the cell.
    steps = {(0, 1): np.array([1.0, 0.0]), (0, -1): np.array([-1.0, 0.0]),
             (-1, 0): np.array([0.0, 1.0]), (1, 0): np.array([0.0, -1.0])}
    spots = [(r, c, step) for r, c in floor_cells for step in steps
             if 0 <= r + step[0] < layer.shape[0] and 0 <= c + step[1] < layer.shape[1]
             and layer[r + step[0], c + step[1]] == "*"]
    n_paintings = min(len(spots), int(rng.integers(3, 9)))
    for j, k in enumerate(rng.choice(len(spots), size=n_paintings, replace=False)):
        r, c, step = spots[k]
        direction = steps[step]
        normal = np.array([-direction[0], -direction[1], 0.0])
        x_axis = np.cross([0.0, 0.0, 1.0], normal)
        centre = np.array([*(cell_centre(r, c) + direction * (s / 2 - 0.01)), rng.uniform(0.8, 1.3)])
        width, height = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.5)
        assets[f"painting{j}.png"] = _png(_painting(rng))
        materials.append(f'<texture name="painting{j}" type="2d" file="painting{j}.png"/>'
                         f'<material name="painting{j}" texture="painting{j}" emission="0.2"/>')
        geoms.append(f'<geom type="plane" pos="{_fmt(centre)}" size="{width:.3f} {height:.3f} 0.1" '
                     f'xyaxes="{_fmt([*x_axis, 0, 0, 1])}" material="painting{j}"/>')

    # Objects on the floor, away from the camera's cell.
    others = [cell for cell in floor_cells if cell != eye_cell]
    for k in rng.choice(len(others), size=min(len(others), int(rng.integers(2, 7))), replace=False):
        xy = cell_centre(*others[k]) + rng.uniform(-0.4, 0.4, 2) * s / 2
        kind = str(rng.choice(["sphere", "box", "cylinder", "capsule", "ellipsoid"]))
        radius = rng.uniform(0.2, 0.45)
        height = {"sphere": radius, "capsule": 2 * radius, "ellipsoid": radius}.get(kind, rng.uniform(0.2, 0.6))
        extent = {"sphere": [radius], "capsule": [radius * 0.6, radius], "cylinder": [radius, height],
                  "box": [radius, radius * 0.8, height], "ellipsoid": [radius, radius * 0.7, radius]}[kind]
        rgba = [*_saturated_colour(rng), 1.0]
        geoms.append(f'<geom type="{kind}" pos="{_fmt([*xy, height])}" size="{_fmt(extent)}" '
                     f'euler="0 0 {rng.uniform(0, 180):.1f}" rgba="{_fmt(rgba)}"/>')

    ground = np.array(layer.shape[::-1]) * s / 2
    light_dir = np.array([*rng.uniform(-1, 1, 2), -1.0])
    super_size = size * _SUPERSAMPLE
    xml = f"""<mujoco model="gtmm-maze">
  <visual>
    <global fovy="{FIELD_OF_VIEW}" offwidth="{super_size}" offheight="{super_size}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.4 0.4 0.4" specular="0 0 0"/>
    <quality shadowsize="0" offsamples="0"/>
    <map znear="0.01" zfar="30"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" fileleft="sky_left.png" fileright="sky_right.png" fileup="sky_up.png"
             filedown="sky_down.png" filefront="sky_front.png" fileback="sky_back.png"/>
    <texture name="wall" type="2d" file="wall.png"/>
    <texture name="floor" type="2d" file="floor.png"/>
    <material name="floor" texture="floor" texrepeat="{_fmt(ground / s)}"/>
    {"".join(materials)}
  </asset>
  <worldbody>
    <light directional="true" castshadow="false" dir="{_fmt(light_dir)}" diffuse="0.5 0.5 0.5"/>
    <geom type="plane" size="{_fmt([*ground, 1])}" material="floor"/>
    {chr(10).join(geoms)}
  </worldbody>
</mujoco>"""
    acceleration = float(rng.uniform(-MAX_ANGULAR_ACCELERATION, MAX_ANGULAR_ACCELERATION))
    angles = camera_angles(EPISODE_LENGTH, PERIOD, acceleration, float(rng.uniform(0, 2 * np.pi)))
    description = (f"{side}x{side} maze, {style} walls {wall_name}, floor {floor_name}, {sky},"
                   f" {n_paintings} paintings, acceleration {acceleration:+.5f} rad/step^2")
    return World(xml, assets, eye, angles, acceleration, description)


def _world_packages():
    """labmaze, its assets, and dm-control's wall covering. Importing dm-control opens its own
    OpenGL display (MUJOCO_GL), so a missing EGL/OSMesa shows here too: one line on what to install."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import labmaze
        from labmaze import assets as labmaze_assets
    except ImportError as e:
        raise GtmmError(f"the 3D mazes need the 3d extra ({e}); pip install -e '.[3d]'") from None
    try:
        from dm_control.locomotion.arenas import covering
    except ImportError as e:
        if "dm_control" in str(e) or "No module" in str(e):
            raise GtmmError(f"the 3D mazes need the 3d extra ({e}); pip install -e '.[3d]'") from None
        raise _no_gl_error(e) from None
    except Exception as e:  # PyOpenGL without a library fails with AttributeError and the like
        raise _no_gl_error(e) from None
    return labmaze, labmaze_assets, covering


def _no_gl_error(e: BaseException) -> GtmmError:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return GtmmError(f"cannot open an offscreen OpenGL context with MUJOCO_GL={os.environ.get('MUJOCO_GL')}"
                     f" ({reason}); {_INSTALL_HINT}")


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)))


# --- rendering -------------------------------------------------------------------------------

_INSTALL_HINT = ("install Mesa's EGL (Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri), or"
                 " OSMesa (apt-get install libosmesa6) and set MUJOCO_GL=osmesa")


_OPEN: list["MazeRenderer"] = []  # renderers whose GL context is alive (release_renderers frees them)


class MazeRenderer:
    """Renders worlds through one offscreen GL context, reused for every episode of a process."""

    def __init__(self, size: int = FRAME_SIZE):
        self.size = size
        os.environ.setdefault("MUJOCO_GL", "egl")
        backend = os.environ["MUJOCO_GL"]
        try:
            import mujoco
        except ModuleNotFoundError as e:
            raise GtmmError(f"the 3D renderer needs the 3d extra ({e}); pip install -e '.[3d]'") from None
        except Exception as e:  # mujoco opens MUJOCO_GL's library on import (osmesa: PyOpenGL fails)
            raise _no_gl_error(e) from None
        self._mujoco = mujoco
        try:
            from mujoco.rendering.classic.gl_context import GLContext

            if GLContext is None:
                raise RuntimeError(f"MUJOCO_GL={backend} gives no offscreen context")
            self._context = GLContext(size * _SUPERSAMPLE, size * _SUPERSAMPLE)
            self._context.make_current()
        except Exception as e:  # ImportError, OSError, RuntimeError, PyOpenGL's errors: all mean the same
            raise _no_gl_error(e) from None
        _OPEN.append(self)

    def render(self, world: World) -> np.ndarray:
        """The frames of `world`'s episode: uint8 `[time, 3, size, size]`."""
        mj = self._mujoco
        try:
            model = mj.MjModel.from_xml_string(world.xml, world.assets)
        except ValueError as e:
            raise GtmmError(f"MuJoCo rejected a generated maze ({e}); this is a bug in gtmm") from None
        data = mj.MjData(model)
        mj.mj_forward(model, data)
        big = self.size * _SUPERSAMPLE
        scene = mj.MjvScene(model, maxgeom=4000)
        context = mj.MjrContext(model, mj.mjtFontScale.mjFONTSCALE_50)
        try:
            mj.mjr_setBuffer(mj.mjtFramebuffer.mjFB_OFFSCREEN, context)
            viewport = mj.MjrRect(0, 0, big, big)
            camera = mj.MjvCamera()
            camera.type = mj.mjtCamera.mjCAMERA_FREE
            camera.distance, camera.elevation = 1.0, 0.0
            option = mj.MjvOption()
            pixels = np.empty((big, big, 3), np.uint8)
            frames = np.empty((len(world.angles), 3, self.size, self.size), np.uint8)
            for t, angle in enumerate(world.angles):
                camera.azimuth = float(np.degrees(angle))
                camera.lookat[:] = np.array(world.eye) + np.array([np.cos(angle), np.sin(angle), 0.0])
                mj.mjv_updateScene(model, data, option, None, camera, mj.mjtCatBit.mjCAT_ALL, scene)
                mj.mjr_render(viewport, scene, context)
                mj.mjr_readPixels(pixels, None, viewport, context)
                image = pixels[::-1].astype(np.float32)  # OpenGL's rows run bottom-up
                image = image.reshape(self.size, _SUPERSAMPLE, self.size, _SUPERSAMPLE, 3).mean((1, 3))
                frames[t] = np.round(image).astype(np.uint8).transpose(2, 0, 1)
        finally:
            context.free()
        return frames

    def close(self) -> None:
        if getattr(self, "_context", None) is not None:
            self._context.free()
            self._context = None


@functools.cache
def shared_renderer(size: int = FRAME_SIZE) -> MazeRenderer:
    """The process's renderer for frames of `size` (one GL context per process)."""
    return MazeRenderer(size)


def release_renderers() -> None:
    """Free the process's GL contexts. Call it when rendering is done: a context still alive at
    interpreter exit cannot be freed there (EGL refuses, EGL_NOT_INITIALIZED, even from an atexit
    hook) and mujoco's `GLContext.__del__` then prints a TypeError during teardown."""
    while _OPEN:
        renderer = _OPEN.pop()
        try:
            renderer.close()
        except Exception:  # noqa: BLE001 - cleanup (often in a `finally`): must not mask the error being raised
            pass
    shared_renderer.cache_clear()


def render_episode(seed: int | tuple[int, ...], size: int = FRAME_SIZE) -> tuple[np.ndarray, World]:
    """Frames uint8 `[EPISODE_LENGTH, 3, size, size]` of episode `seed`, and its world."""
    renderer = shared_renderer(size)  # first: a missing OpenGL stack is reported by the renderer
    world = random_world(seed, size)
    return renderer.render(world), world
