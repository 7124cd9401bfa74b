"""nst_jax.config: one Config, the single source of defaults, help and checks."""
import dataclasses
import math

import pytest

from nst_jax import config as cfg
from nst_jax import optimize
from nst_jax.config import ALIASES, FIELDS, STATIC_FIELDS, SWEEPABLE, Config, ConfigError


def test_every_field_has_help_a_group_and_a_check():
    for name, field in FIELDS.items():
        meta = field.metadata
        assert meta["help"] and meta["group"] in cfg.GROUPS, name
        assert callable(meta["check"]), name
        assert meta["kind"] in ("path", "paths", "int", "float", "choice", "bool", "layers",
                                "floats", "tile", "mix"), name
        if meta["kind"] == "choice":
            assert getattr(Config(), name) in meta["choices"], name


def test_sweepable_and_static_split_the_fields():
    assert set(SWEEPABLE) == {"alpha", "beta", "content_layers", "content_layer_weights",
                              "style_layers", "style_layer_weights", "tv_weight", "init", "seed",
                              "noise_amplitude", "ratio", "style_blend_weights", "region_weights",
                              "style_loss"}
    assert set(STATIC_FIELDS) | (set(SWEEPABLE) - set(ALIASES)) == set(FIELDS)
    assert not set(STATIC_FIELDS) & set(SWEEPABLE)


def test_optimizer_names_are_optimizes():
    assert cfg.OPTIMIZERS == optimize.OPTIMIZERS
    assert Config().optimizer == optimize.DEFAULT_OPTIMIZER


@pytest.mark.parametrize("changes, field, problem", [
    (dict(size=8), "size", "must be a whole number from 16 to 4096, got 8"),
    (dict(size=32.5), "size", "must be a whole number"),
    (dict(size=True), "size", "must be a whole number"),
    (dict(style_size=5000), "style_size", "from 16 to 4096"),
    (dict(alpha=-1.0), "alpha", ">= 0"),
    (dict(beta=math.nan), "beta", "finite"),
    (dict(beta="1"), "beta", "must be a number"),
    (dict(tolerance=1.0), "tolerance", "in [0, 1)"),
    (dict(learning_rate=0.0), "learning_rate", "> 0"),
    (dict(noise_amplitude=1.5), "noise_amplitude", "in [0, 1]"),
    (dict(iterations=0), "iterations", "from 1 to 100000"),
    (dict(seed=-1), "seed", "from 0 to 4294967295"),
    (dict(seed=2**32), "seed", "from 0 to 4294967295"),
    (dict(seed=99999999999999999999), "seed", "from 0 to 4294967295"),
    (dict(pooling="median"), "pooling", "must be one of avg, max"),
    (dict(optimizer="sgd"), "optimizer", "must be one of lbfgs"),
    (dict(bounds="soft"), "bounds", "must be one of box, none"),
    (dict(remat="yes"), "remat", "True or False"),
    (dict(content_layers=("conv9_9",)), "content_layers", "unknown layer name(s) conv9_9"),
    (dict(style_layers=("conv1_1", "pool1")), "style_layers", "pool1"),
    (dict(style_layers=("conv1_1", "conv1_1")), "style_layers", "conv1_1 more than once"),
    (dict(style_layers=()), "style_layers", "at least one layer"),
    (dict(style_layer_weights=(1.0, 2.0)), "style_layer_weights", "2 weight(s) for 5 style layer(s)"),
    (dict(content_layer_weights=(-1.0,)), "content_layer_weights", "finite numbers >= 0"),
    (dict(content=""), "content", "must be a file path"),
])
def test_every_bad_value_is_one_config_error_naming_its_field(changes, field, problem):
    with pytest.raises(ConfigError) as error:
        Config(**changes)
    assert error.value.field == field
    assert problem in error.value.problem
    assert "\n" not in str(error.value)


def test_values_are_normalised():
    config = Config(alpha=1, content_layers="conv4_2", style_layer_weights=[1, 2, 3, 4, 5])
    assert isinstance(config.alpha, float) and config.content_layers == ("conv4_2",)
    assert config.style_layer_weights == (1.0, 2.0, 3.0, 4.0, 5.0)


def test_ratio_is_short_for_alpha_and_beta_and_is_checked_like_them():
    assert Config().replace(ratio=1e-3).alpha == 1e-3 and Config().replace(ratio=1e-3).beta == 1.0
    # 0 is a pure style reconstruction (alpha = 0), accepted as alpha=0 is (stylize and sweep alike)
    assert Config().replace(ratio=0.0).alpha == 0.0
    with pytest.raises(ConfigError, match="ratio must be a finite number >= 0"):
        Config().replace(ratio=-1e-3)
    with pytest.raises(ConfigError, match="ratio sets alpha and beta; give one or the other"):
        Config().replace(ratio=1e-3, beta=2.0)


def test_layer_weights_tie_each_weight_to_its_layer():
    config = Config(style_layers=("conv5_1", "conv1_1"), style_layer_weights=(0.9, 0.1))
    assert config.layer_weights("style") == {"conv5_1": 0.9, "conv1_1": 0.1}
    assert Config().layer_weights("style") == {l: 0.2 for l in cfg.STYLE_LAYERS}
    assert Config().layer_weights("content") == {"conv4_2": 1.0}


def test_to_dict_round_trips():
    config = Config(size=64, style_layers=("conv1_1",), seed=3_000_000_000)
    again = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.to_dict().items()})
    assert again == config
    assert dataclasses.replace(config) == config


def test_example_images_are_bundled():
    assert cfg.example_path("chelsea.jpg").is_file()
    assert Config().content == str(cfg.example_path("chelsea.jpg"))
