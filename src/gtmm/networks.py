"""The visual networks of appendix B.1: the inception-style encoder and its mirrored decoder.

Each module works on one frame `[channel, height, width]`; the model vmaps them over all
`batch * time` frames at once, outside the recurrent scan (PERFORMANCE.md: that is what makes
the step fast on XLA).

Normalisation: the paper used batch normalisation. We use group normalisation (one group per
parallel stream) so that a frame's encoding depends on that frame only: no running statistics,
identical behaviour in training, evaluation and generation, and batch-of-B == B-runs-of-one.

Layout and convolutions: the layers work on channels-last frames `[height, width, channel]`, and
the convolutions that XLA's CPU backend runs badly are computed as matrix products instead: with
one input channel (the first block), one output channel (the output convolution) and the 2x2
sub-pixel convolutions, XLA's convolution and its gradients ran at a few GFLOP/s
(docs/results/speed.md). The second blocks and the strided convolutions stay XLA convolutions,
which were as fast as any matrix-product form there. The parameters stay Equinox `Conv2d`
layers in PyTorch's `[out, in, kh, kw]` layout, so the function class, the parameter count and
the initialisation are unchanged; `tests/test_networks.py` checks every layer, and the whole
encoder and decoder with their gradients, against Equinox's own `Conv2d` / `GroupNorm` calls.
The two matrix-product forms:

- input side (`im2col`): gather the k*k shifted copies of the input, `[h, w, k*k*cin]`, one
  product with the `[k*k*cin, cout]` weight. Used for the 2x2 sub-pixel convolutions and the
  first block, whose four streams share one 7x7 patch of the single input channel, their
  kernels zero-embedded in it.
- output side (`col2im`): one product of the input with every tap's weights, `[h, w, k*k*cout]`,
  then the shifted tap planes are summed. Used for the 7x7 output convolution (one channel).

`im2col` and `col2im` are each other's transposes; each is given the other as its gradient
(`jax.custom_vjp`), since autodiff of a gather or of a sum of shifted planes builds k*k
full-size padded copies.

Inside a loop body (the checkpointed blocks of `gtmm.model.chunked_vmap`, and the VRNN's continual
generation, which re-encodes each generated frame inside its scan: `in_loop=True`) every
convolution of the encoder and decoder is a matrix product: XLA's CPU convolutions and their
gradients run 4-40x slower there than at the top level, matrix products do not
(jax-ml/jax#12868; `benchmarks/conv_in_loop.py`, docs/results/long-sequences.md).

Strided convolutions: XLA computes their forward and weight gradient, but their input gradient
(a convolution of the zero-dilated output gradient, 8-10x the forward on XLA's CPU backend) is
written by hand (`conv_strided`, `strided_input_grad`). The same phase decomposition computes a
transposed convolution as matrix products (`conv_transpose`), used for the one 3D decoder layer
whose XLA gradient was slow (3.8 s of a 4.1 s step).

Upsampling in the decoder: a 3x3 convolution to 4x the channels followed by depth-to-space
(sub-pixel convolution) instead of a stride-2 transposed convolution. It has the same receptive
field and output shape; on XLA's CPU backend the transposed convolution's weight gradient was
about 10x slower than its forward pass (PERFORMANCE.md).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

KERNEL_SIZES = (1, 3, 5, 7)


# ---------------------------------------------------------------- convolution as matrix products

def _out_size(size: int, k: int, stride: int, lo: int, hi: int) -> int:
    return (size + lo + hi - k) // stride + 1


def _im2col(x: Float[Array, "h w c"], k: int, stride: int, lo: int, hi: int) -> Float[Array, "ho wo kk c"]:
    # One gather of channel vectors: XLA's CPU backend compiles and runs it several times faster
    # than a concatenation of k*k shifted slices.
    h, w, c = x.shape
    ho, wo = _out_size(h, k, stride, lo, hi), _out_size(w, k, stride, lo, hi)
    xp = jnp.pad(x, ((lo, hi), (lo, hi), (0, 0)))
    rows = stride * np.arange(ho)[:, None, None, None] + np.arange(k)[None, None, :, None]
    cols = stride * np.arange(wo)[None, :, None, None] + np.arange(k)[None, None, None, :]
    index = (rows * (w + lo + hi) + cols).reshape(-1)
    return jnp.take(xp.reshape(-1, c), index, axis=0).reshape(ho, wo, k * k, c)


def _col2im(taps: Float[Array, "ho wo kk c"], k: int, stride: int, lo: int, hi: int, h: int,
            w: int) -> Float[Array, "h w c"]:
    # A loop over the kernel's rows, each adding its k taps (shifted, one fused sum) into a band of
    # the padded output. The loop also makes XLA materialise the result: as one fused k*k-term
    # sum it was fused into a following `im2col` gather and recomputed for every tap.
    ho, wo, _, c = taps.shape
    hp, wp = h + lo + hi, w + lo + hi
    band = stride * (ho - 1) + 1

    def add_row(i, out):
        row = jax.lax.dynamic_slice_in_dim(taps, i * k, k, axis=2)
        total = 0.0
        for j in range(k):
            config = ((0, 0, stride - 1), (j, wp - j - (stride * (wo - 1) + 1), stride - 1), (0, 0, 0))
            total = total + jax.lax.pad(row[:, :, j], jnp.zeros((), taps.dtype), config)
        current = jax.lax.dynamic_slice(out, (i, 0, 0), (band, wp, c))
        return jax.lax.dynamic_update_slice(out, current + total, (i, 0, 0))

    out = jax.lax.fori_loop(0, k, add_row, jnp.zeros((max(hp, k - 1 + band), wp, c), taps.dtype))
    return out[lo: lo + h, lo: lo + w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def im2col(x: Float[Array, "h w c"], k: int, stride: int, lo: int, hi: int) -> Float[Array, "ho wo kk c"]:
    """taps[a, b, i*k + j] = x_padded[stride*a + i, stride*b + j]; padding `lo` before, `hi` after."""
    return _im2col(x, k, stride, lo, hi)


def _im2col_fwd(x, k, stride, lo, hi):
    return _im2col(x, k, stride, lo, hi), x.shape[:2]


def _im2col_bwd(k, stride, lo, hi, hw, g):
    return (_col2im(g, k, stride, lo, hi, *hw),)


im2col.defvjp(_im2col_fwd, _im2col_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5, 6))
def col2im(taps: Float[Array, "ho wo kk c"], k: int, stride: int, lo: int, hi: int, h: int,
           w: int) -> Float[Array, "h w c"]:
    """The transpose of `im2col`: every tap added back where `im2col` took it from."""
    return _col2im(taps, k, stride, lo, hi, h, w)


def _col2im_fwd(taps, k, stride, lo, hi, h, w):
    return _col2im(taps, k, stride, lo, hi, h, w), None


def _col2im_bwd(k, stride, lo, hi, h, w, _, g):
    return (_im2col(g, k, stride, lo, hi),)


col2im.defvjp(_col2im_fwd, _col2im_bwd)


def _check_square(conv: eqx.nn.Conv2d) -> int:
    k = conv.kernel_size[0]
    if conv.kernel_size != (k, k) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError("only square, undilated, ungrouped kernels")
    return k


def conv_input_side(conv: eqx.nn.Conv2d, x: Float[Array, "h w cin"]) -> Float[Array, "ho wo cout"]:
    """`conv` on a channels-last frame by im2col: one product with the `[k*k*cin, cout]` weight."""
    return _conv_input_side(conv.weight, conv.bias, x, conv.stride[0], *conv.padding[0])


def _conv_input_side(weight, bias, x, stride, lo, hi):
    cout, cin, k, _ = weight.shape
    taps = im2col(x, k, stride, lo, hi)
    ho, wo = taps.shape[:2]
    out = taps.reshape(ho * wo, k * k * cin) @ weight.transpose(2, 3, 1, 0).reshape(k * k * cin, cout)
    out = out.reshape(ho, wo, cout)
    return out if bias is None else out + bias.reshape(cout)


def _output_side_matrix(weight: Float[Array, "cout cin k k"]) -> Float[Array, "cin kkcout"]:
    """Columns [(i, j), o] of the flipped kernel, so that `col2im` of `x @ matrix` is the convolution."""
    cout, cin, k, _ = weight.shape
    return weight[:, :, ::-1, ::-1].transpose(1, 2, 3, 0).reshape(cin, k * k * cout)


def _sum_taps(y: Float[Array, "hw kkcout"], k: int, cout: int, h: int, w: int) -> Float[Array, "h w cout"]:
    r = k // 2
    return col2im(y.reshape(h, w, k * k, cout), k, 1, r, r, h, w)


def conv_output_side(conv: eqx.nn.Conv2d, x: Float[Array, "h w cin"]) -> Float[Array, "h w cout"]:
    """A stride-1, same-padded `conv` on a channels-last frame: one product of the input with every
    tap's weights, then the shifted tap planes summed (`col2im`). Cheap where `cout` is small."""
    k = _check_square(conv)
    if conv.stride != (1, 1) or conv.padding != ((k // 2, k // 2), (k // 2, k // 2)):
        raise ValueError("output-side convolution needs stride 1 and same padding")
    h, w, cin = x.shape
    cout = conv.weight.shape[0]
    y = x.reshape(h * w, cin) @ _output_side_matrix(conv.weight)
    out = _sum_taps(y, k, cout, h, w)
    return out if conv.bias is None else out + conv.bias.reshape(cout)


def conv_any(conv: eqx.nn.Conv2d, x: Float[Array, "h w cin"], in_loop: bool) -> Float[Array, "ho wo cout"]:
    """`conv` by XLA's convolution, or by im2col `in_loop`: inside a loop body (the checkpointed
    blocks of `gtmm.model.chunked_vmap`) XLA's CPU convolutions run 4-40x slower than at the top
    level while matrix products do not (jax-ml/jax#12868; `benchmarks/conv_in_loop.py`)."""
    return conv_input_side(conv, x) if in_loop else conv_xla(conv, x)


def conv_xla(conv: eqx.nn.Conv2d, x: Float[Array, "h w cin"]) -> Float[Array, "ho wo cout"]:
    """`conv` on a channels-last frame by XLA's convolution (fast enough on the CPU backend when
    there are many input and output channels: the second blocks and the strided convolutions)."""
    out = jax.lax.conv_general_dilated(x[None], conv.weight, conv.stride, conv.padding, rhs_dilation=conv.dilation,
                                       feature_group_count=conv.groups,
                                       dimension_numbers=("NHWC", "OIHW", "NHWC"))[0]
    return out if conv.bias is None else out + conv.bias.reshape(-1)


def conv_strided(conv: eqx.nn.Conv2d, x: Float[Array, "h w cin"]) -> Float[Array, "ho wo cout"]:
    """`conv` (any stride) on a channels-last frame: XLA's convolution forward and weight
    gradient, a hand-written input gradient. XLA's CPU input gradient of a strided convolution
    (a convolution of the zero-dilated output gradient) ran 8-10x slower than the forward
    (docs/results/speed.md); `strided_input_grad` is one stride-1 product into the stride^2
    phases, then depth-to-space.

    The two gradients take separate routes so that neither needs a custom VJP over the weight:
    under the model's vmap over frames such a VJP would build one weight gradient per frame and
    sum them (300 copies of 0.5 M entries at the 3D encoder's second layer), where autodiff of
    the batched convolution sums over frames inside one contraction.
    """
    _check_square(conv)
    lo, hi = conv.padding[0]
    if conv.padding[1] != (lo, hi) or conv.stride[1] != conv.stride[0]:
        raise ValueError("strided convolution needs the same stride and padding on both axes")
    out = conv_xla(conv, jax.lax.stop_gradient(x))
    return _with_input_gradient(out, jax.lax.stop_gradient(conv.weight), x, conv.stride[0], lo, x.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _with_input_gradient(out: Float[Array, "ho wo cout"], weight: Float[Array, "cout cin k k"],
                         x: Float[Array, "h w cin"], stride: int, lo: int,
                         x_shape: tuple[int, ...]) -> Float[Array, "ho wo cout"]:
    """`out` (a strided convolution of `x`, computed with x's gradient stopped), passed through
    unchanged; in the backward pass its cotangent also gives x's gradient (`conv_strided`)."""
    return out


def _with_input_gradient_fwd(out, weight, x, stride, lo, x_shape):
    return out, weight


def _with_input_gradient_bwd(stride, lo, x_shape, weight, g):
    # Shapes travel as static arguments: residuals are batched like arrays under vmap.
    return g, jnp.zeros_like(weight), strided_input_grad(weight, g, stride, lo, *x_shape[:2])


_with_input_gradient.defvjp(_with_input_gradient_fwd, _with_input_gradient_bwd)


def strided_input_grad(weight: Float[Array, "cout cin k k"], g: Float[Array, "ho wo cout"], stride: int,
                       lo: int, h: int, w: int) -> Float[Array, "h w cin"]:
    """d(loss)/dx of a strided convolution from its output gradient `g`.

    With p = s*u + r and kernel row i = s*m + r, dx_padded[s*u + r] = sum_m g[u - m] W[s*m + r]:
    for each of the s*s phases (r, t) a stride-1 full convolution of `g` with the sub-kernel
    W[s*m + r, s*n + t] (M = ceil(k / s) taps a side, zero past k). All phases come from one
    im2col product with the phases as output channels, then depth-to-space interleaves them.
    """
    cout, cin, k, _ = weight.shape
    s = stride
    M = -(-k // s)
    wp = jnp.pad(weight, ((0, 0), (0, 0), (0, s * M - k), (0, s * M - k)))
    wp = wp.reshape(cout, cin, M, s, M, s)[:, :, ::-1, :, ::-1, :]  # [o, c, m', r, n', t], m' = M-1-m
    kernel = wp.transpose(2, 4, 0, 1, 3, 5).reshape(M * M * cout, cin * s * s)
    taps = im2col(g, M, 1, M - 1, M - 1)  # [U, V, M*M, cout], U = ho + M - 1
    U, V = taps.shape[:2]
    phases = (taps.reshape(U * V, M * M * cout) @ kernel).reshape(U, V, cin * s * s)
    full = depth_to_space(phases, s)  # [s*U, s*V, cin]: the padded input's gradient
    need_h, need_w = max(0, lo + h - s * U), max(0, lo + w - s * V)
    full = jnp.pad(full, ((0, need_h), (0, need_w), (0, 0)))
    return full[lo:lo + h, lo:lo + w]


def conv_transpose(conv: eqx.nn.ConvTranspose2d, x: Float[Array, "h w cin"]) -> Float[Array, "ho wo cout"]:
    """Equinox's `ConvTranspose2d` on a channels-last frame, computed as the exact transpose of a
    strided convolution by `strided_input_grad` (matrix products; its gradients by autodiff).
    XLA's CPU gradient of the transposed convolution (an lhs-dilated convolution) ran 100x
    slower than its forward at the 3D decoder's 256 -> 128, 4 -> 10 layer (speed.md)."""
    k = conv.kernel_size[0]
    if (conv.kernel_size != (k, k) or conv.dilation != (1, 1) or conv.groups != 1 or any(conv.output_padding)
            or conv.padding_mode != "ZEROS" or conv.stride[0] != conv.stride[1] or conv.padding[0] != conv.padding[1]):
        raise ValueError("conv_transpose needs a square, undilated, ungrouped kernel, zero padding and no output padding")
    lo, hi = conv.padding[0]
    s = conv.stride[0]
    h, w = ((n - 1) * s - lo - hi + k for n in x.shape[:2])
    # The forward convolution this layer transposes (Equinox's ConvTranspose docstring).
    forward_weight = jnp.flip(conv.weight, axis=(2, 3)).swapaxes(0, 1)
    out = strided_input_grad(forward_weight, x, s, lo, h, w)
    return out if conv.bias is None else out + conv.bias.reshape(-1)


class InceptionBlock(eqx.Module):
    """Four parallel same-padded convolutions (1x1, 3x3, 5x5, 7x7), concatenated (Fig. 18).

    Works on a channels-last frame `[h, w, cin]`. With few input channels the streams' kernels
    are zero-embedded in one 7x7 kernel over a shared input patch (one matrix product); otherwise
    each stream is an XLA convolution (module docstring).
    """

    convs: tuple[eqx.nn.Conv2d, ...]

    def __init__(self, in_channels: int, per_stream: int, *, key: PRNGKeyArray):
        keys = jax.random.split(key, len(KERNEL_SIZES))
        self.convs = tuple(
            eqx.nn.Conv2d(in_channels, per_stream, k, padding=k // 2, key=kk) for k, kk in zip(KERNEL_SIZES, keys)
        )

    def __call__(self, x: Float[Array, "h w cin"], *, in_loop: bool = False) -> Float[Array, "h w cout"]:
        kmax = max(KERNEL_SIZES)
        if in_loop or x.shape[-1] * kmax * kmax <= sum(c.out_channels * c.kernel_size[0] ** 2 for c in self.convs):
            return self._shared_patch(x)
        return jnp.concatenate([conv_xla(c, x) for c in self.convs], axis=-1)

    def _shared_patch(self, x: Float[Array, "h w cin"]) -> Float[Array, "h w cout"]:
        kmax = max(KERNEL_SIZES)
        weight = jnp.concatenate([jnp.pad(c.weight, ((0, 0), (0, 0), ((kmax - k) // 2,) * 2, ((kmax - k) // 2,) * 2))
                                  for c, k in zip(self.convs, KERNEL_SIZES)], axis=0)
        bias = jnp.concatenate([c.bias for c in self.convs])
        return _conv_input_side(weight, bias, x, 1, kmax // 2, kmax // 2)


def depth_to_space(x: Float[Array, "h w c4"], factor: int = 2) -> Float[Array, "h2 w2 c"]:
    """Channel `c * factor**2 + f1 * factor + f2` goes to pixel (factor*y + f1, factor*x + f2) of
    channel `c` (the channels-first layout's order, PyTorch's `pixel_shuffle`)."""
    h, w, c4 = x.shape
    c = c4 // (factor * factor)
    x = x.reshape(h, w, c, factor, factor)
    return x.transpose(0, 3, 1, 4, 2).reshape(h * factor, w * factor, c)


class SubPixelUp(eqx.Module):
    """Doubles height and width: 2x2 convolution to 4x channels, then depth-to-space.

    Each output pixel sees a 2x2 input neighbourhood, as in a 3x3 stride-2 transposed
    convolution (the mirror of the encoder's 3x3 stride-2 convolution), at a quarter of the
    cost of a 3x3 sub-pixel convolution. Channels-last in and out.
    """

    conv: eqx.nn.Conv2d

    def __init__(self, in_channels: int, out_channels: int, *, key: PRNGKeyArray):
        self.conv = eqx.nn.Conv2d(in_channels, 4 * out_channels, 2, padding=((0, 1), (0, 1)), key=key)

    def __call__(self, x: Float[Array, "h w cin"]) -> Float[Array, "h2 w2 cout"]:
        return depth_to_space(conv_input_side(self.conv, x))


def group_norm(norm: eqx.nn.GroupNorm, x: Float[Array, "h w c"]) -> Float[Array, "h w c"]:
    """`norm(x)` (Equinox's GroupNorm, channels first) on a channels-last frame."""
    h, w, c = x.shape
    y = x.reshape(h * w, norm.groups, c // norm.groups)
    mean = jnp.mean(y, axis=(0, 2), keepdims=True)
    variance = jnp.maximum(0.0, jnp.mean(jnp.square(y - mean), axis=(0, 2), keepdims=True))
    out = ((y - mean) * jax.lax.rsqrt(variance + norm.eps)).reshape(h, w, c)
    if norm.channelwise_affine:
        out = out * norm.weight + norm.bias
    return out


def _to_hwc(x: Float[Array, "c h w"]) -> Float[Array, "h w c"]:
    return x.transpose(1, 2, 0)


def _to_chw(x: Float[Array, "h w c"]) -> Float[Array, "c h w"]:
    return x.transpose(2, 0, 1)


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

    def __call__(self, frame: Float[Array, "c 32 32"], *, in_loop: bool = False) -> Float[Array, " embed"]:
        """`in_loop`: matrix-product convolutions throughout, for a loop body (`conv_any`)."""
        x = _to_hwc(2.0 * frame - 1.0)
        x = jax.nn.relu(group_norm(self.norm1, self.block1(x)))
        # down1's backward was the encoder's slowest XLA gradient: `conv_strided` (speed.md)
        down1 = conv_input_side(self.down1, x) if in_loop else conv_strided(self.down1, x)
        x = jax.nn.relu(group_norm(self.norm1b, down1))
        x = jax.nn.relu(group_norm(self.norm2, self.block2(x, in_loop=in_loop)))
        x = conv_any(self.down2, x, in_loop)  # no normalisation or ReLU after the last convolution (appendix B.1)
        return self.linear(_to_chw(x).reshape(-1))


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

    def __call__(self, inputs: Float[Array, " inputs"], *, in_loop: bool = False) -> Float[Array, "c 32 32"]:
        """`in_loop`: matrix-product convolutions throughout, for a loop body (`conv_any`)."""
        x = _to_hwc(self.linear(inputs).reshape(64, 8, 8))
        x = jax.nn.relu(group_norm(self.norm2, self.up2(x)))
        x = jax.nn.relu(group_norm(self.norm2b, self.block2(x, in_loop=in_loop)))
        x = jax.nn.relu(group_norm(self.norm1, self.up1(x)))
        return _to_chw(conv_output_side(self.out, x))

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

    def __call__(self, frame: Float[Array, "c 32 32"], *, in_loop: bool = False) -> Float[Array, " embed"]:
        """`in_loop`: im2col convolutions (`conv_input_side`, as `conv_any` in a loop body): the
        VRNN's continual generation re-encodes each generated frame inside its scan, where XLA's
        convolutions made a batch of 10 3D sequences take 2.2-2.4 s against 1.4-1.6 s (67-74 s
        against 2.6-4.3 s at the test suite's compile level; `benchmarks/loop_networks_3d.py`)."""
        check_frame_shape("two-pathway", frame.shape, self.in_channels)
        x0 = 2.0 * frame - 1.0
        features = []
        for convs in (self.global_convs, self.local_convs):
            x = x0
            for i, conv in enumerate(convs):
                x = _to_chw(conv_input_side(conv, _to_hwc(x))) if in_loop else conv(x)
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

    def __call__(self, inputs: Float[Array, " inputs"], *, in_loop: bool = False) -> Float[Array, "c 32 32"]:
        """`in_loop`: every layer by `conv_transpose` (matrix products), for a loop body
        (`TwoPathwayEncoder`)."""
        features = jax.nn.relu(self.linear(inputs))
        out = 0.0
        for convs, x in ((self.global_convs, features[:GLOBAL_FEATURES].reshape(GLOBAL_FEATURES, 1, 1)),
                         (self.local_convs, features[GLOBAL_FEATURES:].reshape(8, 8, 8))):
            for i, conv in enumerate(convs):
                x = _to_chw(conv_transpose(conv, _to_hwc(x))) if in_loop or _slow_in_xla(conv) else conv(x)
                if i + 1 < len(convs):
                    x = jax.nn.relu(x)
            out = out + x
        return out


def _slow_in_xla(conv: eqx.nn.ConvTranspose2d) -> bool:
    """Whether XLA's CPU gradient of this transposed convolution is the slow one: strided, with
    many channels in and out. Over the 300 frames of a 3D batch the 256 -> 128, 4x4 stride-2
    layer's gradient took 3.8 s in XLA against 0.14 s by `conv_transpose`; the decoder's other
    layers were faster in XLA (benchmarks/layer_profile_3d.py, docs/results/speed.md)."""
    return conv.stride[0] > 1 and min(conv.in_channels, conv.out_channels) >= 64


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
