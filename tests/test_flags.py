"""The command-line flags come from Config; argparse's errors are one line; negative numbers parse.

These drive the tools through nst_jax.apps.common.runner.launch with input that is refused
before any image, weight or JAX work, so they are fast.
"""
import re

import pytest

from nst_jax.apps.common import flags as flags_module
from nst_jax.apps.figures import paper_figures
from nst_jax.apps.common import runner
from nst_jax.apps.cli import stylize as stylize_app
from nst_jax.apps.cli import sweep as sweep_app
from nst_jax.apps.common.flags import ArgumentParser, ConfigFlags, UsageError, join_negative_values
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import ALIASES, FIELDS, STATIC_FIELDS, SWEEPABLE, Config


def launch(module, argv, capsys):
    code = runner.launch(module, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err and "usage:" not in err
    return lines[0]


def option_strings(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_stylize_has_a_flag_for_every_config_field_and_alias():
    parser, flags = stylize_app.build_parser()
    names = option_strings(parser)
    for name in list(FIELDS) + list(ALIASES):
        assert "--" + name.replace("_", "-") in names, name


def test_sweep_has_an_axis_for_every_sweepable_field_and_a_flag_for_the_rest():
    parser, flags = sweep_app.build_parser()
    names = option_strings(parser)
    for name in SWEEPABLE:
        kind = FIELDS[name].metadata["kind"] if name in FIELDS else ALIASES[name].kind
        assert flags_module.axis_flag(name, kind) in names, name
    for name in STATIC_FIELDS:
        assert "--" + name.replace("_", "-") in names, name
    assert {"--ratios", "--seeds", "--inits", "--content-layers", "--style-layer-weights"} <= names


def test_paper_figures_takes_the_fields_that_fix_the_program():
    parser, _ = paper_figures.build_parser()
    names = option_strings(parser)
    assert all("--" + n.replace("_", "-") in names for n in STATIC_FIELDS)
    assert "--seeds" not in names and "--alpha" not in names


def test_help_shows_configs_defaults_and_the_tools_own(capsys):
    for module, default in (("nst_jax.apps.cli.stylize", "(default: 256)"),
                            ("nst_jax.apps.cli.sweep", "(default: 128)"),
                            ("nst_jax.apps.figures.paper_figures", "(default: 96)")):
        with pytest.raises(SystemExit) as done:
            runner.launch(module, ["--help"])
        assert done.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "--size N long side of the output in px (16-4096) " + default in text, module
        assert "(default: lbfgs-stepwise)" in text and "(default: box)" in text


def test_flags_override_config_defaults_and_unset_flags_keep_them():
    parser, flags = stylize_app.build_parser()
    config = flags.config(parser.parse_args(["--size", "64", "--style-layers", "conv5_1,conv1_1",
                                             "--style-layer-weights", "0.9,0.1", "--remat"]))
    assert config == Config(size=64, style_layers=("conv5_1", "conv1_1"),
                            style_layer_weights=(0.9, 0.1), remat=True)
    assert flags.config(parser.parse_args([])) == Config()


@pytest.mark.parametrize("module, argv, needle", [
    # argparse's own errors used to print a 12-13 line usage block
    ("nst_jax.apps.cli.stylize", ["--size", "32.5"], "argument --size: expected a whole number, got '32.5'"),
    ("nst_jax.apps.cli.stylize", ["--style-layer-weights", "a,b"], "expected comma-separated numbers"),
    ("nst_jax.apps.cli.stylize", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ("nst_jax.apps.cli.stylize", ["--pooling", "median"], "invalid choice: 'median'"),
    ("nst_jax.apps.cli.stylize", ["--size"], "expected one argument"),
    ("nst_jax.apps.cli.sweep", ["--ratios", "abc"], "argument --ratios: expected a number, got 'abc'"),
    ("nst_jax.apps.cli.sweep", ["--seeds", "1,x"], "expected a whole number, got 'x'"),
    ("nst_jax.apps.cli.fetch_weights", ["--from"], "expected one argument"),
    # values refused by Config, named by the flag the user typed
    ("nst_jax.apps.cli.stylize", ["--seed", "99999999999999999999"],
     "--seed must be a whole number from 0 to 4294967295"),
    ("nst_jax.apps.cli.stylize", ["--ratio", "1e-3", "--alpha", "2"], "--ratio sets --alpha and --beta"),
    ("nst_jax.apps.cli.sweep", ["--seeds", "0,5000000000"],
     "--seeds must be a whole number from 0 to 4294967295, got 5000000000"),
    ("nst_jax.apps.cli.sweep", ["--inits", "noise,photo.png"], "--inits of a sweep must be one of"),
    ("nst_jax.apps.cli.sweep", ["--ratios", "1e-3", "--alphas", "2"], "--ratios sets --alphas and --betas"),
    ("nst_jax.apps.cli.sweep", ["--batch-size", "-1"], "--batch-size must be >= 0"),
    ("nst_jax.apps.figures.paper_figures", ["--figures", "fig9"], "unknown figure(s) fig9"),
])
def test_bad_flags_are_one_error_line_and_exit_2(module, argv, needle, capsys, tmp_path,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = launch(module, argv, capsys)
    assert code == ExitCode.ERROR
    assert needle in one_line_error(err)
    assert list(tmp_path.iterdir()) == []  # nothing written, no empty sweep folder


def test_negative_numbers_are_values_not_flags(capsys, tmp_path, monkeypatch):
    """``--ratios -1e-3`` used to read as an unknown flag; now it is a value (and refused
    as a value, with the flag named)."""
    assert join_negative_values(["--ratios", "-1e-3,-2", "--seed", "3"]) == [
        "--ratios=-1e-3,-2", "--seed", "3"]
    assert join_negative_values(["--remat", "--size", "64"]) == ["--remat", "--size", "64"]
    monkeypatch.chdir(tmp_path)
    for module, argv, needle in (
            ("nst_jax.apps.cli.sweep", ["--ratios", "-1e-3"], "--ratios must be a finite number >= 0, got -0.001"),
            ("nst_jax.apps.cli.stylize", ["--ratio", "-1e-3"], "--ratio must be a finite number >= 0"),
            ("nst_jax.apps.cli.stylize", ["--tv-weight", "-.5"], "--tv-weight must be a finite number >= 0")):
        code, _, err = launch(module, argv, capsys)
        assert code == ExitCode.ERROR and needle in one_line_error(err)
    parser = ArgumentParser(prog="t")
    parser.add_argument("--shift", type=float)
    assert parser.parse_args(["--shift", "-1e-3"]).shift == -1e-3


def test_ratio_zero_means_the_same_in_stylize_and_sweep():
    """Defect: sweep.py --ratios=0 was accepted while stylize.py --ratio 0 was refused."""
    s_parser, s_flags = stylize_app.build_parser()
    w_parser, w_flags = sweep_app.build_parser()
    assert s_flags.config(s_parser.parse_args(["--ratio", "0"])).alpha == 0.0
    grid = sweep_app.make_grid(w_parser.parse_args(["--ratios=0"]), w_flags)
    assert grid.configs[0].alpha == 0.0


def test_a_parser_error_is_a_usage_error():
    parser = ArgumentParser(prog="t")
    parser.add_argument("--n", type=int)
    with pytest.raises(UsageError, match=r"argument --n: invalid int value: 'x' \(see --help\)"):
        parser.parse_args(["--n", "x"])


def test_config_flags_name_the_flag_of_an_aliased_field():
    parser = ArgumentParser(prog="t")
    flags = ConfigFlags(parser, fields=("alpha", "beta", "ratio"))
    with pytest.raises(UsageError, match="^--ratio must be a finite number"):
        flags.config(parser.parse_args(["--ratio", "-1"]))


def test_figure_list_keeps_the_known_order_and_refuses_unknown_names():
    from nst_jax.apps.common.flags import figure_list

    assert figure_list(" fig6,fig2 ,", ("fig2", "fig4", "fig6")) == ["fig2", "fig6"]
    for text, needle in (("fig3,fig2", "unknown figure(s) fig3; choose from fig2, fig6"),
                         (" , ", "(none given)")):
        with pytest.raises(UsageError, match=re.escape(needle)):
            figure_list(text, ("fig2", "fig6"))
