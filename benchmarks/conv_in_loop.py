"""Why `--remat-chunk` was slow on CPU, and what fixed it: convolutions inside a loop body.

`gtmm.model.chunked_vmap` runs the encoder and decoder over blocks of frames in a `lax.map`
(a loop), so that the backward pass keeps one block's activations instead of all T frames'.
Unrolling the blocks instead keeps the speed but not the memory (XLA then schedules every
block's activations at once). This prints, for two of the encoder's convolutions on 480 frames,
the time of the forward pass, the weight gradient (dW) and the input gradient (dx) when the
frames are vmapped at the top level and when the same frames run as 3 blocks of 160 in a
`lax.map`, each computed by XLA's convolution and by the im2col matrix product that the
networks use inside the blocks (`in_loop=True`).

With `--layouts` it instead times one 3x3 stride-2 convolution (480 frames, 32 -> 32 channels,
32x32) written with each input and kernel layout: none escapes the slow loop.

Usage: PYTHONPATH=src python benchmarks/conv_in_loop.py [--layouts]
"""

import sys
import time

import jax
import jax.numpy as jnp

from gtmm.networks import Encoder, conv_input_side, conv_xla


def seconds(f, *args, repeats: int = 3) -> float:
    g = jax.jit(f)
    jax.block_until_ready(g(*args))
    t = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(g(*args))
    return (time.perf_counter() - t) / repeats


def layouts() -> None:
    n, h, c, k = 480, 32, 32, 3
    print(f"jax {jax.__version__}; seconds per gradient over {n} frames, 3x3 stride 2, {c}->{c} channels")
    print("| input | kernel | dW vmap | dW lax.map | dx vmap | dx lax.map |")
    print("| --- | --- | --- | --- | --- | --- |")
    for lhs, rhs in [("NHWC", "OIHW"), ("NHWC", "HWIO"), ("NHWC", "OHWI"), ("NCHW", "OIHW"), ("NCHW", "HWIO")]:
        x = jnp.ones((n, h, h, c) if lhs == "NHWC" else (n, c, h, h))
        w = 0.01 * jnp.ones({"OIHW": (c, c, k, k), "HWIO": (k, k, c, c), "OHWI": (c, k, k, c)}[rhs])

        def conv(w, x, lhs=lhs, rhs=rhs):
            return jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=(lhs, rhs, lhs))

        def top(w, x, conv=conv):
            return jnp.sum(jnp.square(conv(w, x)))

        def looped(w, x, conv=conv):
            return jnp.sum(jnp.square(jax.lax.map(lambda b: conv(w, b), x.reshape(3, n // 3, *x.shape[1:]))))

        cells = [seconds(jax.grad(f, argnums=a), w, x) for a in (0, 1) for f in (top, looped)]
        print(f"| {lhs} | {rhs} | " + " | ".join(f"{v:.3f}" for v in cells) + " |", flush=True)


def main() -> None:
    encoder = Encoder(1, 64, key=jax.random.PRNGKey(0))
    cases = [("down1 3x3 stride 2, 32->32 on 32x32", encoder.down1, (32, 32, 32)),
             ("block2 7x7, 32->8 on 16x16", encoder.block2.convs[3], (16, 16, 32))]
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; seconds over 480 frames")
    print("| convolution | computed by | pass | vmap | lax.map of 3 blocks | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, conv, shape in cases:
        x = jnp.ones((480,) + shape)
        for method, layer in (("XLA convolution", conv_xla), ("im2col product (in_loop)", conv_input_side)):
            def top(c, x, layer=layer):
                return jnp.sum(jnp.square(jax.vmap(lambda f: layer(c, f))(x)))

            def looped(c, x, layer=layer):
                blocks = x.reshape(3, 160, *shape)
                return jnp.sum(jnp.square(jax.lax.map(jax.vmap(lambda f: layer(c, f)), blocks)))

            for label, make in (("forward", lambda f: f), ("dW", lambda f: jax.grad(f, argnums=0)),
                                ("dx", lambda f: jax.grad(f, argnums=1))):
                a, b = seconds(make(top), conv, x), seconds(make(looped), conv, x)
                print(f"| {name} | {method} | {label} | {a:.3f} | {b:.3f} | {b / a:.1f}x |", flush=True)


if __name__ == "__main__":
    layouts() if "--layouts" in sys.argv[1:] else main()
