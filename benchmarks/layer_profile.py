"""Where the digits training step goes: forward and forward + backward of each image-network
layer over the 200 frames of one batch (B = 10, T = 20), then the encoder, the decoder and the
whole loss with its gradient, medians of 7 jitted calls in ms.

    PYTHONPATH=src python benchmarks/layer_profile.py --model vrnn
"""

from __future__ import annotations

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

from gtmm import networks as N
from gtmm.model import ModelConfig, init_model, loss_fn


def median_ms(f, *args, n: int = 7) -> int:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(n):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="vrnn")
    args = parser.parse_args()
    model = init_model(ModelConfig(args.model, 20), 0)
    enc, dec = model.encoder, model.decoder
    key = jax.random.PRNGKey(0)

    def x(*shape):
        return jax.random.normal(key, (200,) + shape)

    decoder_width = dec.linear.in_features
    pieces = [
        ("encoder block 1 (1 -> 32, 32x32)", lambda p, v: p(v), enc.block1, x(32, 32, 1)),
        ("group norm (32 channels, 32x32)", N.group_norm, enc.norm1, x(32, 32, 32)),
        ("encoder down 1 (3x3 s2, 32 -> 32)", N.conv_xla, enc.down1, x(32, 32, 32)),
        ("encoder block 2 (32 -> 32, 16x16)", lambda p, v: p(v), enc.block2, x(16, 16, 32)),
        ("encoder down 2 (3x3 s2, 32 -> 64)", N.conv_xla, enc.down2, x(16, 16, 32)),
        ("decoder up 2 (64 -> 32, 8 -> 16)", lambda p, v: p(v), dec.up2, x(8, 8, 64)),
        ("decoder block 2 (32 -> 32, 16x16)", lambda p, v: p(v), dec.block2, x(16, 16, 32)),
        ("decoder up 1 (32 -> 32, 16 -> 32)", lambda p, v: p(v), dec.up1, x(16, 16, 32)),
        ("decoder output 7x7 (32 -> 1, 32x32)", N.conv_output_side, dec.out, x(32, 32, 32)),
        ("encoder", lambda p, v: p(v), enc, jax.random.uniform(key, (200, 1, 32, 32))),
        ("decoder", lambda p, v: p(v), dec, x(decoder_width)),
    ]
    print(f"{'piece':40s} {'fwd ms':>7s} {'fwd+bwd ms':>11s}")
    for name, layer, params, inputs in pieces:
        def loss(p, v, layer=layer):
            return jnp.sum(jnp.tanh(jax.vmap(lambda one: layer(p, one))(v)))

        forward = median_ms(eqx.filter_jit(loss), params, inputs)
        both = median_ms(eqx.filter_jit(eqx.filter_value_and_grad(loss)), params, inputs)
        print(f"{name:40s} {forward:7d} {both:11d}", flush=True)
    frames = (jax.random.uniform(key, (10, 20, 1, 32, 32)) > 0.7).astype(jnp.float32)
    whole = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))
    print(f"{'whole loss and gradient':40s} {'':7s} {median_ms(whole, model, frames, jnp.zeros((10, 20, 0)), key):11d}")


if __name__ == "__main__":
    main()
