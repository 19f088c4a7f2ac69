"""Bad input to planar layers raises ValueError naming the problem."""

import numpy as np
import pytest

from eqntk import stax


def imgs(shape=(2, 6, 6, 2), seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def p4_net(padding="SAME", q=3):
    return stax.serial(stax.Z2ConvP4(2, q, padding), stax.Relu(), stax.P4ConvP4(2, q, padding), stax.GroupPool(),
                       stax.Dense(1))


@pytest.mark.parametrize("layer", [stax.Z2ConvP4, stax.P4ConvP4, stax.Z2ConvP4M, stax.P4MConvP4M, stax.Z2ConvP2,
                                   stax.P2ConvP2, stax.Conv])
@pytest.mark.parametrize("filter_shape,match", [((3, 5), "square"), (4, "odd"), ((2, 2), "odd"), (0, "filter_shape"),
                                                ((3, 3, 3), "filter_shape"), (2.5, "filter_shape")])
def test_bad_filters(layer, filter_shape, match):
    with pytest.raises(ValueError, match=match):
        layer(4, filter_shape)


@pytest.mark.parametrize("kwargs,match", [(dict(out_channels=0), "out_channels"), (dict(out_channels=2.5), "out_channels"),
                                          (dict(padding="REFLECT"), "padding"), (dict(W_std=float("nan")), "W_std"),
                                          (dict(b_std=float("inf")), "b_std")])
def test_bad_arguments(kwargs, match):
    args = dict(out_channels=4, filter_shape=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        stax.Z2ConvP4(**args)


def test_images_smaller_than_valid_filter():
    with pytest.raises(ValueError, match="smaller than the 5×5 VALID filter"):
        p4_net("VALID", 5).kernel_fn(imgs((2, 4, 4, 1)))
    # the second layer sees 3×3 maps: too small for another 5×5 VALID filter
    with pytest.raises(ValueError, match="P4ConvP4: feature maps of size 3×3"):
        p4_net("VALID", 5).kernel_fn(imgs((2, 7, 7, 1)))
    with pytest.raises(ValueError, match="VALID"):
        p4_net("VALID", 5).apply_fn(p4_net("VALID", 5).init_fn(__import__("jax").random.PRNGKey(0), (2, 9, 9, 1))[1],
                                    imgs((2, 4, 4, 1)))


@pytest.mark.parametrize("shape", [(2, 6, 6), (2, 6, 6, 1, 1), (6, 6)])
def test_wrong_rank(shape):
    with pytest.raises(ValueError):
        p4_net().kernel_fn(imgs(shape) if len(shape) > 2 else np.ones(shape))


def test_wrong_rank_finite_width():
    net = p4_net()
    _, params = net.init_fn(__import__("jax").random.PRNGKey(0), (2, 6, 6, 2))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        net.apply_fn(params, imgs((2, 6, 6)))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W, C\)"):
        stax.P4ConvP4(2, 3).apply_fn(params[2], imgs((2, 6, 6, 2)))


def test_non_square_images_for_90_degree_groups():
    with pytest.raises(ValueError, match="square"):
        p4_net().kernel_fn(imgs((2, 6, 5, 1)))
    with pytest.raises(ValueError, match="square"):
        stax.serial(stax.Z2ConvP4M(2, 3), stax.GroupPool()).kernel_fn(imgs((2, 5, 7, 1)))
    # p2 and the plain CNN accept rectangles
    stax.serial(stax.Z2ConvP2(2, 3), stax.GroupPool()).kernel_fn(imgs((2, 6, 5, 1)))
    stax.serial(stax.Conv(2, 3), stax.GlobalAvgPool()).kernel_fn(imgs((2, 6, 5, 1)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf(bad):
    x = imgs()
    x[1, 2, 3, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        p4_net().kernel_fn(x)
    with pytest.raises(ValueError, match="NaN or inf"):
        p4_net().kernel_fn(imgs(), x)


def test_mismatched_layers():
    x = imgs()
    with pytest.raises(ValueError, match="first layer"):
        stax.serial(stax.Z2ConvP4(2, 3), stax.Z2ConvP4(2, 3)).kernel_fn(x)
    with pytest.raises(ValueError, match="p4m"):
        stax.serial(stax.Z2ConvP4(2, 3), stax.P4MConvP4M(2, 3)).kernel_fn(x)
    with pytest.raises(ValueError, match="lifting layer"):
        stax.serial(stax.Conv(2, 3), stax.P4ConvP4(2, 3)).kernel_fn(x)
    with pytest.raises(ValueError, match="GroupPool"):
        stax.serial(stax.Z2ConvP4(2, 3), stax.GlobalAvgPool()).kernel_fn(x)
    with pytest.raises(ValueError, match="group's convolution"):
        stax.serial(stax.Z2ConvP4(2, 3), stax.Conv(2, 3)).kernel_fn(x)
    with pytest.raises(ValueError, match="spatial feature maps"):
        stax.serial(stax.Dense(2), stax.GroupPool()).kernel_fn(x.reshape(2, -1))
    with pytest.raises(ValueError, match="x1 and x2"):
        p4_net().kernel_fn(x, imgs((2, 5, 5, 2)))
