"""The visual networks of appendix B.1: the inception-style encoder and its mirrored decoder.

Each module works on one frame `[channel, height, width]`; the model vmaps them over all
`batch * time` frames at once, outside the recurrent scan (PERFORMANCE.md: that is what makes
the step fast on XLA).

Normalisation: the paper used batch normalisation. We use group normalisation (one group per
parallel stream) so that a frame's encoding depends on that frame only: no running statistics,
identical behaviour in training, evaluation and generation, and batch-of-B == B-runs-of-one.

Upsampling in the decoder: a 3x3 convolution to 4x the channels followed by depth-to-space
(sub-pixel convolution) instead of a stride-2 transposed convolution. It has the same receptive
field and output shape; on XLA's CPU backend the transposed convolution's weight gradient was
about 10x slower than its forward pass (PERFORMANCE.md).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

KERNEL_SIZES = (1, 3, 5, 7)


class InceptionBlock(eqx.Module):
    """Four parallel same-padded convolutions (1x1, 3x3, 5x5, 7x7), concatenated (Fig. 18)."""

    convs: tuple[eqx.nn.Conv2d, ...]

    def __init__(self, in_channels: int, per_stream: int, *, key: PRNGKeyArray):
        keys = jax.random.split(key, len(KERNEL_SIZES))
        self.convs = tuple(
            eqx.nn.Conv2d(in_channels, per_stream, k, padding=k // 2, key=kk) for k, kk in zip(KERNEL_SIZES, keys)
        )

    def __call__(self, x: Float[Array, "cin h w"]) -> Float[Array, "cout h w"]:
        return jnp.concatenate([conv(x) for conv in self.convs], axis=0)


def depth_to_space(x: Float[Array, "c4 h w"], factor: int = 2) -> Float[Array, "c h2 w2"]:
    c4, h, w = x.shape
    c = c4 // (factor * factor)
    x = x.reshape(c, factor, factor, h, w)
    return x.transpose(0, 3, 1, 4, 2).reshape(c, h * factor, w * factor)


class SubPixelUp(eqx.Module):
    """Doubles height and width: 2x2 convolution to 4x channels, then depth-to-space.

    Each output pixel sees a 2x2 input neighbourhood, as in a 3x3 stride-2 transposed
    convolution (the mirror of the encoder's 3x3 stride-2 convolution), at a quarter of the
    cost of a 3x3 sub-pixel convolution.
    """

    conv: eqx.nn.Conv2d

    def __init__(self, in_channels: int, out_channels: int, *, key: PRNGKeyArray):
        self.conv = eqx.nn.Conv2d(in_channels, 4 * out_channels, 2, padding=((0, 1), (0, 1)), key=key)

    def __call__(self, x: Float[Array, "cin h w"]) -> Float[Array, "cout h2 w2"]:
        return depth_to_space(conv2x2_as_matmul(self.conv, x))


def conv2x2_as_matmul(conv: eqx.nn.Conv2d, x: Float[Array, "cin h w"]) -> Float[Array, "cout h w"]:
    """`conv(x)` for a 2x2 kernel padded (0, 1) on each axis, as one matrix product over the
    four shifted copies of `x` (im2col). Same result as XLA's convolution to float rounding; on
    XLA's CPU backend the 2x2 convolution's gradients took about twice as long (PERFORMANCE.md)."""
    cin, h, w = x.shape
    xp = jnp.pad(x, ((0, 0), (0, 1), (0, 1)))
    taps = jnp.stack([xp[:, i : i + h, j : j + w] for i in range(2) for j in range(2)], axis=1)  # [cin, 4, h, w]
    out = conv.weight.reshape(conv.weight.shape[0], cin * 4) @ taps.reshape(cin * 4, h * w)
    return out.reshape(-1, h, w) + conv.bias


class Encoder(eqx.Module):
    """e(x_t): the posterior map's convolutional trunk (appendix B.1, Fig. 18), then a linear layer.

    Input: one 32x32 frame with values in [0, 1], mapped to (-1, 1). Output: an embedding vector.
    """

    block1: InceptionBlock
    norm1: eqx.nn.GroupNorm
    down1: eqx.nn.Conv2d
    norm1b: eqx.nn.GroupNorm
    block2: InceptionBlock
    norm2: eqx.nn.GroupNorm
    down2: eqx.nn.Conv2d
    linear: eqx.nn.Linear

    def __init__(self, in_channels: int, embed_size: int, *, key: PRNGKeyArray):
        k = jax.random.split(key, 5)
        self.block1 = InceptionBlock(in_channels, 8, key=k[0])
        self.norm1 = eqx.nn.GroupNorm(4, 32)
        self.down1 = eqx.nn.Conv2d(32, 32, 3, stride=2, padding=1, key=k[1])
        self.norm1b = eqx.nn.GroupNorm(4, 32)
        self.block2 = InceptionBlock(32, 8, key=k[2])
        self.norm2 = eqx.nn.GroupNorm(4, 32)
        self.down2 = eqx.nn.Conv2d(32, 64, 3, stride=2, padding=1, key=k[3])
        self.linear = eqx.nn.Linear(64 * 8 * 8, embed_size, key=k[4])

    def __call__(self, frame: Float[Array, "c 32 32"]) -> Float[Array, " embed"]:
        x = 2.0 * frame - 1.0
        x = jax.nn.relu(self.norm1(self.block1(x)))
        x = jax.nn.relu(self.norm1b(self.down1(x)))
        x = jax.nn.relu(self.norm2(self.block2(x)))
        x = self.down2(x)  # no normalisation or ReLU after the last convolution (appendix B.1)
        return self.linear(x.reshape(-1))


class Decoder(eqx.Module):
    """f_x(z_t, Psi_{t-1}): the observation map, the encoder mirrored; returns Bernoulli logits."""

    linear: eqx.nn.Linear
    up2: SubPixelUp
    norm2: eqx.nn.GroupNorm
    block2: InceptionBlock
    norm2b: eqx.nn.GroupNorm
    up1: SubPixelUp
    norm1: eqx.nn.GroupNorm
    out: eqx.nn.Conv2d

    def __init__(self, input_size: int, out_channels: int, *, key: PRNGKeyArray):
        k = jax.random.split(key, 5)
        self.linear = eqx.nn.Linear(input_size, 64 * 8 * 8, key=k[0])
        self.up2 = SubPixelUp(64, 32, key=k[1])
        self.norm2 = eqx.nn.GroupNorm(4, 32)
        self.block2 = InceptionBlock(32, 8, key=k[2])
        self.norm2b = eqx.nn.GroupNorm(4, 32)
        self.up1 = SubPixelUp(32, 32, key=k[3])
        self.norm1 = eqx.nn.GroupNorm(4, 32)
        # The mirror of the first block: four parallel streams (1x1 ... 7x7) into the output
        # channels, summed. A sum of zero-padded 1/3/5/7 kernels is exactly one 7x7 kernel, so it
        # is one 7x7 convolution: the same functions at half the cost.
        self.out = eqx.nn.Conv2d(32, out_channels, 7, padding=3, key=k[4])

    def __call__(self, inputs: Float[Array, " inputs"]) -> Float[Array, "c 32 32"]:
        x = self.linear(inputs).reshape(64, 8, 8)
        x = jax.nn.relu(self.norm2(self.up2(x)))
        x = jax.nn.relu(self.norm2b(self.block2(x)))
        x = jax.nn.relu(self.norm1(self.up1(x)))
        return self.out(x)


# --- 3D frames (appendix B.2) ----------------------------------------------------------------

GLOBAL_FEATURES = 256  # the global pathway's 256 1x1 "super-pixels"
LOCAL_FEATURES = 8 * 8 * 8  # the local pathway's 8x8x8 block, linearised
TWO_PATHWAY_FEATURES = GLOBAL_FEATURES + LOCAL_FEATURES  # 768


class TwoPathwayEncoder(eqx.Module):
    """e(x_t) for 3x32x32 colour frames (appendix B.2): a global pathway (128 5x5 stride 3,
    256 4x4 stride 2, 256 4x4 stride 1, no padding: 32 -> 10 -> 4 -> 1, 256 features) and a
    local texture pathway (16 4x4 stride 2 pad 1, 8 4x4 stride 2 pad 1: 32 -> 16 -> 8, 512
    features), concatenated into 768 features. ReLU between convolutions, none after the last
    of each pathway (as in B.1). The posterior map's linear layer reads the 768 features; with
    an `embed_size` other than 768 a linear layer maps them to that size first.
    """

    global_convs: tuple[eqx.nn.Conv2d, ...]
    local_convs: tuple[eqx.nn.Conv2d, ...]
    linear: eqx.nn.Linear | None
    in_channels: int = eqx.field(static=True)

    def __init__(self, in_channels: int, embed_size: int, *, key: PRNGKeyArray):
        k = jax.random.split(key, 6)
        self.in_channels = in_channels
        self.global_convs = (
            eqx.nn.Conv2d(in_channels, 128, 5, stride=3, key=k[0]),
            eqx.nn.Conv2d(128, 256, 4, stride=2, key=k[1]),
            eqx.nn.Conv2d(256, GLOBAL_FEATURES, 4, stride=1, key=k[2]),
        )
        self.local_convs = (
            eqx.nn.Conv2d(in_channels, 16, 4, stride=2, padding=1, key=k[3]),
            eqx.nn.Conv2d(16, 8, 4, stride=2, padding=1, key=k[4]),
        )
        self.linear = (None if embed_size == TWO_PATHWAY_FEATURES
                       else eqx.nn.Linear(TWO_PATHWAY_FEATURES, embed_size, key=k[5]))

    def __call__(self, frame: Float[Array, "c 32 32"]) -> Float[Array, " embed"]:
        check_frame_shape("two-pathway", frame.shape, self.in_channels)
        x0 = 2.0 * frame - 1.0
        features = []
        for convs in (self.global_convs, self.local_convs):
            x = x0
            for i, conv in enumerate(convs):
                x = conv(x)
                if i + 1 < len(convs):
                    x = jax.nn.relu(x)
            features.append(x.reshape(-1))
        out = jnp.concatenate(features)
        return out if self.linear is None else self.linear(out)


class TwoPathwayDecoder(eqx.Module):
    """f_x(z_t, Psi_{t-1}) for 3D frames: the transpose of `TwoPathwayEncoder` (appendix B.2).

    A linear layer gives 768 features; the first 256 (1x1) run back up the global pathway
    (transposed convolutions 256 4x4 stride 1, 128 4x4 stride 2, C 5x5 stride 3: 1 -> 4 -> 10
    -> 32), the other 512 (8x8x8) up the local pathway (16 4x4 stride 2 pad 1, C 4x4 stride 2
    pad 1: 8 -> 16 -> 32); the two outputs are summed into the likelihood's logits.
    """

    linear: eqx.nn.Linear
    global_convs: tuple[eqx.nn.ConvTranspose2d, ...]
    local_convs: tuple[eqx.nn.ConvTranspose2d, ...]

    def __init__(self, input_size: int, out_channels: int, *, key: PRNGKeyArray):
        k = jax.random.split(key, 6)
        self.linear = eqx.nn.Linear(input_size, TWO_PATHWAY_FEATURES, key=k[0])
        self.global_convs = (
            eqx.nn.ConvTranspose2d(GLOBAL_FEATURES, 256, 4, stride=1, key=k[1]),
            eqx.nn.ConvTranspose2d(256, 128, 4, stride=2, key=k[2]),
            eqx.nn.ConvTranspose2d(128, out_channels, 5, stride=3, key=k[3]),
        )
        self.local_convs = (
            eqx.nn.ConvTranspose2d(8, 16, 4, stride=2, padding=1, key=k[4]),
            eqx.nn.ConvTranspose2d(16, out_channels, 4, stride=2, padding=1, key=k[5]),
        )

    def __call__(self, inputs: Float[Array, " inputs"]) -> Float[Array, "c 32 32"]:
        features = jax.nn.relu(self.linear(inputs))
        out = 0.0
        for convs, x in ((self.global_convs, features[:GLOBAL_FEATURES].reshape(GLOBAL_FEATURES, 1, 1)),
                         (self.local_convs, features[GLOBAL_FEATURES:].reshape(8, 8, 8))):
            for i, conv in enumerate(convs):
                x = conv(x)
                if i + 1 < len(convs):
                    x = jax.nn.relu(x)
            out = out + x
        return out


# Network families by name (ModelConfig.network): encoder, decoder, and the frames they take.
NETWORKS = {
    "inception": (Encoder, Decoder),  # digits and characters, appendix B.1
    "two-pathway": (TwoPathwayEncoder, TwoPathwayDecoder),  # 3D frames, appendix B.2
}
FRAME_SIZE = 32  # both families take 32x32 frames: B.2's global pathway ends at 1x1 only for 32


def check_frame_shape(network: str, shape: tuple[int, ...], channels: int) -> None:
    """Raise GtmmError unless `shape` is `(channels, 32, 32)`, the frames `network` takes."""
    from gtmm.errors import GtmmError

    if tuple(shape) != (channels, FRAME_SIZE, FRAME_SIZE):
        raise GtmmError(f"the {network} networks take frames of {channels}x{FRAME_SIZE}x{FRAME_SIZE}"
                        f" (paper appendix B), got {'x'.join(map(str, shape))}")
