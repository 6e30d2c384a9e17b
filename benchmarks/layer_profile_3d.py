"""Where the 3D step's image networks go (appendix B.2, B = 10, T = 30: 300 frames): each layer
of the two-pathway encoder and decoder timed as Equinox computes it ("xla") and by gtmm's
matrix-product forms (`conv_strided`, `conv_transpose`), forward, gradient with respect to the
weights, and with respect to weights and input; medians of 5 jitted calls in ms.

    PYTHONPATH=src python benchmarks/layer_profile_3d.py

This is what chose `networks._slow_in_xla`: only the decoder's 256 -> 128 stride-2 layer is
slower in XLA (its weight gradient), so only it runs as `conv_transpose`.
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
from layer_profile import median_ms

from gtmm import networks as N

FRAMES = 300


def profile(layer, shape, ours) -> dict:
    x = jax.random.normal(jax.random.PRNGKey(0), (FRAMES,) + shape)
    out = {}
    for name, fn in (("xla", lambda m, z: m(z)), ("gtmm", lambda m, z: N._to_chw(ours(m, N._to_hwc(z))))):
        def loss(m, x, fn=fn):
            return jnp.sum(jnp.sin(jax.vmap(lambda z: fn(m, z))(x)))

        out[name] = {"forward": median_ms(eqx.filter_jit(lambda m, x, fn=fn: jax.vmap(lambda z: fn(m, z))(x)), layer, x, n=5),
                     "grad_weights": median_ms(eqx.filter_jit(eqx.filter_grad(loss)), layer, x, n=5),
                     "grad_weights_input": median_ms(eqx.filter_jit(eqx.filter_grad(lambda mx, loss=loss: loss(*mx))),
                                                     (layer, x), n=5)}
    return out


def main() -> None:
    key = jax.random.PRNGKey(0)
    enc, dec = N.TwoPathwayEncoder(3, 768, key=key), N.TwoPathwayDecoder(556, 3, key=key)
    rows = {}
    for i, (conv, shape) in enumerate(zip(enc.global_convs + enc.local_convs,
                                          [(3, 32, 32), (128, 10, 10), (256, 4, 4), (3, 32, 32), (16, 16, 16)])):
        rows[f"encoder {i}: {conv.in_channels}->{conv.out_channels} k{conv.kernel_size[0]} s{conv.stride[0]}"] = \
            profile(conv, shape, N.conv_strided)
    for i, (conv, shape) in enumerate(zip(dec.global_convs + dec.local_convs,
                                          [(256, 1, 1), (256, 4, 4), (128, 10, 10), (8, 8, 8), (16, 16, 16)])):
        rows[f"decoder {i}: {conv.in_channels}->{conv.out_channels} k{conv.kernel_size[0]} s{conv.stride[0]}"
             f"{' (gtmm uses conv_transpose)' if N._slow_in_xla(conv) else ''}"] = profile(conv, shape, N.conv_transpose)
    for name, row in rows.items():
        print(json.dumps({"layer": name, **row}))


if __name__ == "__main__":
    main()
