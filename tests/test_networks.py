"""The visual networks compute their convolutions as matrix products (networks.py); each layer must
be the same function as the Equinox layer whose parameters it holds, values and gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gtmm.networks import (
    _im2col,
    Decoder,
    Encoder,
    InceptionBlock,
    SubPixelUp,
    TwoPathwayDecoder,
    TwoPathwayEncoder,
    col2im,
    conv_input_side,
    conv_output_side,
    conv_strided,
    conv_transpose,
    group_norm,
    im2col,
)

KEY = jax.random.PRNGKey(0)


def _hwc(x):
    return x.transpose(1, 2, 0)


def _close(a, b, atol=2e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=1e-4)


def _close_grads(ours, reference, layer, x):
    """Gradients with respect to the layer's parameters and its input agree."""
    loss = lambda f: lambda mz: jnp.sum(jnp.sin(f(*mz)))  # noqa: E731
    grads = eqx.filter_jit(lambda m, z: (eqx.filter_grad(loss(ours))((m, z)), eqx.filter_grad(loss(reference))((m, z))))
    a, b = grads(layer, x)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        _close(u, v, atol=1e-4)


def _reference_inception(block, x):
    return jnp.concatenate([conv(x) for conv in block.convs], axis=0)


def _reference_subpixel(up, x):
    y = up.conv(x)
    c4, h, w = y.shape
    return y.reshape(c4 // 4, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(c4 // 4, 2 * h, 2 * w)


def _reference_encoder(enc, frame):
    """The encoder as Equinox's own layers compute it, channels first."""
    x = 2.0 * frame - 1.0
    x = jax.nn.relu(enc.norm1(_reference_inception(enc.block1, x)))
    x = jax.nn.relu(enc.norm1b(enc.down1(x)))
    x = jax.nn.relu(enc.norm2(_reference_inception(enc.block2, x)))
    return enc.linear(enc.down2(x).reshape(-1))


def _reference_decoder(dec, inputs):
    x = dec.linear(inputs).reshape(64, 8, 8)
    x = jax.nn.relu(dec.norm2(_reference_subpixel(dec.up2, x)))
    x = jax.nn.relu(dec.norm2b(_reference_inception(dec.block2, x)))
    x = jax.nn.relu(dec.norm1(_reference_subpixel(dec.up1, x)))
    return dec.out(x)


@pytest.mark.parametrize("k,stride,lo,hi", [(3, 2, 1, 1), (2, 1, 0, 1), (5, 1, 2, 2)])
def test_im2col_and_col2im_are_transposes(k, stride, lo, hi):
    @jax.jit
    def check(x, taps):
        # <im2col(x), taps> == <x, col2im(taps)>, and each one's gradient is the other
        lhs = jnp.vdot(im2col(x, k, stride, lo, hi), taps)
        rhs = jnp.vdot(x, col2im(taps, k, stride, lo, hi, 7, 6))
        g_x = jax.grad(lambda z: jnp.vdot(im2col(z, k, stride, lo, hi), taps))(x)
        g_t = jax.grad(lambda t: jnp.vdot(col2im(t, k, stride, lo, hi, 7, 6), x))(taps)
        return lhs, rhs, g_x, jax.linear_transpose(lambda z: _im2col(z, k, stride, lo, hi), x)(taps)[0], g_t, \
            im2col(x, k, stride, lo, hi)

    x = jax.random.normal(KEY, (7, 6, 3))
    taps = jax.random.normal(jax.random.PRNGKey(1), jax.eval_shape(lambda z: im2col(z, k, stride, lo, hi), x).shape)
    lhs, rhs, g_x, g_x_ref, g_t, g_t_ref = check(x, taps)
    _close(lhs, rhs, atol=1e-4)
    _close(g_x, g_x_ref)
    _close(g_t, g_t_ref)


@pytest.mark.parametrize("cin,cout,k,stride,pad", [(5, 4, 3, 2, 1), (6, 20, 2, 1, ((0, 1), (0, 1))), (3, 2, 1, 1, 0)])
def test_input_side_convolution_equals_xla_convolution(cin, cout, k, stride, pad):
    conv = eqx.nn.Conv2d(cin, cout, k, stride=stride, padding=pad, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (cin, 9, 8))
    _close(*eqx.filter_jit(lambda c, z: (conv_input_side(c, _hwc(z)), _hwc(c(z))))(conv, x))
    _close_grads(lambda c, z: conv_input_side(c, _hwc(z)), lambda c, z: _hwc(c(z)), conv, x)


@pytest.mark.parametrize("cin,cout,k,stride,pad,size", [
    (32, 32, 3, 2, 1, 32), (32, 64, 3, 2, 1, 16),  # the encoder's down1 and down2
    (3, 128, 5, 3, 0, 32), (3, 16, 4, 2, 1, 32), (128, 256, 4, 2, 0, 10),  # the 3D encoder's
    (5, 4, 3, 2, 1, 9), (4, 3, 3, 3, 2, 11), (2, 3, 3, 1, 1, 7),  # odd sizes, stride 3, stride 1
])
def test_strided_convolution_equals_xla_in_value_and_gradient(cin, cout, k, stride, pad, size):
    """`conv_strided`'s hand-written backward (phases for the input, im2col for the weight) is
    autodiff's of XLA's convolution."""
    conv = eqx.nn.Conv2d(cin, cout, k, stride=stride, padding=pad, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (cin, size, size + 1))
    _close(*eqx.filter_jit(lambda c, z: (conv_strided(c, _hwc(z)), _hwc(c(z))))(conv, x))
    _close_grads(lambda c, z: conv_strided(c, _hwc(z)), lambda c, z: _hwc(c(z)), conv, x)


@pytest.mark.parametrize("cin,cout,k,stride,pad,size", [
    (256, 256, 4, 1, 0, 1), (256, 128, 4, 2, 0, 4), (128, 3, 5, 3, 0, 10),  # the 3D decoder's global pathway
    (8, 16, 4, 2, 1, 8), (16, 3, 4, 2, 1, 16),  # and its local pathway
    (5, 4, 3, 2, 1, 5), (3, 2, 3, 3, 2, 6),
])
def test_transposed_convolution_equals_equinox_in_value_and_gradient(cin, cout, k, stride, pad, size):
    conv = eqx.nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=pad, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (cin, size, size + 1))
    _close(*eqx.filter_jit(lambda c, z: (conv_transpose(c, _hwc(z)), _hwc(c(z))))(conv, x), atol=1e-4)
    _close_grads(lambda c, z: conv_transpose(c, _hwc(z)), lambda c, z: _hwc(c(z)), conv, x)


def _reference_two_pathway_encoder(enc, frame):
    """appendix B.2's encoder as Equinox's own layers compute it, channels first."""
    features = []
    for convs in (enc.global_convs, enc.local_convs):
        x = 2.0 * frame - 1.0
        for i, conv in enumerate(convs):
            x = conv(x) if i + 1 == len(convs) else jax.nn.relu(conv(x))
        features.append(x.reshape(-1))
    out = jnp.concatenate(features)
    return out if enc.linear is None else enc.linear(out)


def _reference_two_pathway_decoder(dec, inputs):
    features = jax.nn.relu(dec.linear(inputs))
    out = 0.0
    for convs, x in ((dec.global_convs, features[:256].reshape(256, 1, 1)), (dec.local_convs, features[256:].reshape(8, 8, 8))):
        for i, conv in enumerate(convs):
            x = conv(x) if i + 1 == len(convs) else jax.nn.relu(conv(x))
        out = out + x
    return out


@pytest.mark.parametrize("k", [1, 3, 7])
def test_output_side_convolution_equals_xla_convolution(k):
    conv = eqx.nn.Conv2d(6, 2, k, padding=k // 2, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 9, 8))
    _close(*eqx.filter_jit(lambda c, z: (conv_output_side(c, _hwc(z)), _hwc(c(z))))(conv, x))
    _close_grads(lambda c, z: conv_output_side(c, _hwc(z)), lambda c, z: _hwc(c(z)), conv, x)


@pytest.mark.parametrize("cin", [1])  # the shared 7x7 patch (32 inputs: XLA convolutions, covered by the encoder test)
def test_inception_block_equals_its_four_convolutions(cin):
    block = InceptionBlock(cin, 8, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (cin, 10, 10))
    _close(*eqx.filter_jit(lambda b, z: (b(_hwc(z)), _hwc(_reference_inception(b, z))))(block, x))


def test_subpixel_and_group_norm_equal_equinox():
    up = SubPixelUp(6, 5, key=KEY)
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 7, 9))
    _close(*eqx.filter_jit(lambda u, z: (u(_hwc(z)), _hwc(_reference_subpixel(u, z))))(up, x))
    norm = eqx.nn.GroupNorm(4, 8)
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), norm, (jnp.arange(8.0), jnp.ones(8)))
    x = 3 * jax.random.normal(KEY, (8, 5, 5)) + 1
    _close(*eqx.filter_jit(lambda n, z: (group_norm(n, _hwc(z)), _hwc(n(z))))(norm, x))


def _family_networks(family: str):
    """A family's encoder (of 32x32 frames to 64 or 40 features) and decoder (of 40 inputs), with
    two frames and two decoder inputs."""
    inputs = jax.random.normal(KEY, (2, 40))
    if family == "inception":
        return (Encoder(1, 64, key=KEY), Decoder(40, 1, key=jax.random.PRNGKey(1)),
                jax.random.uniform(KEY, (2, 1, 32, 32)), inputs)
    return (TwoPathwayEncoder(3, 40, key=KEY), TwoPathwayDecoder(40, 3, key=jax.random.PRNGKey(1)),
            jax.random.uniform(KEY, (2, 3, 32, 32)), inputs)


@pytest.mark.parametrize("family", ["inception", "two-pathway"])
def test_encoder_and_decoder_equal_equinox_layers(family):
    """Each family's networks (channels-last, matrix-product and hand-written-backward layers)
    compute the function of Equinox's own layers, and its parameter and input gradients, under
    the vmap over frames the model applies."""
    enc, dec, frames, inputs = _family_networks(family)
    refs = ((_reference_encoder, _reference_decoder) if family == "inception"
            else (_reference_two_pathway_encoder, _reference_two_pathway_decoder))
    for net, ref, x in [(enc, refs[0], frames), (dec, refs[1], inputs)]:
        ours, theirs = eqx.filter_jit(lambda m, x, ref=ref: (jax.vmap(m)(x), jax.vmap(lambda z: ref(m, z))(x)))(net, x)
        _close(ours, theirs, atol=1e-4)
        _close_grads(lambda m, z: jax.vmap(m)(z), lambda m, z, ref=ref: jax.vmap(lambda u: ref(m, u))(z), net, x)


@pytest.mark.parametrize("family", ["inception", "two-pathway"])
def test_in_loop_networks_equal_the_default_in_value_and_gradient(family):
    """`in_loop=True` (matrix-product convolutions for loop bodies: the checkpointed blocks, the
    VRNN's generation) computes the same encoder and decoder, values and parameter gradients, as
    XLA's convolutions."""
    enc, dec, frames, inputs = _family_networks(family)
    for net, x in [(enc, frames), (dec, inputs)]:
        assert "conv_general_dilated" not in str(jax.make_jaxpr(lambda z, net=net: net(z, in_loop=True))(x[0]))
        both = eqx.filter_jit(lambda m, x: (jax.vmap(m)(x), jax.vmap(lambda z: m(z, in_loop=True))(x)))(net, x)
        _close(*both, atol=1e-4)
        _close_grads(lambda m, z: jax.vmap(lambda f: m(f, in_loop=True))(z), lambda m, z: jax.vmap(m)(z), net, x)
