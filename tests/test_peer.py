"""nst_jax.apps.benchmark.peer: the side-by-side benchmark against neural-style-pt.

neural-style-pt itself is not here (it is not vendored, and CI cannot fetch it): the
tests check what we hand it (the weights in its layout, the objective matched to ours,
the torchvision stand-in), the arithmetic and the order of the runs with stand-in
tools, and the bench's flags.
"""
import importlib.util
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from nst_jax import images, stylize
from nst_jax.apps.benchmark import peer, worker
from nst_jax.apps.benchmark.cases import peer as peer_case
from nst_jax.apps.benchmark.cases import profile
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import STYLE_LAYERS, example_path
from nst_jax.losses import LossWeights, Targets, total_loss
from nst_jax.vgg import LAYER_NAMES, VGG19, VGG19_BLOCKS
from tests.test_cli import assert_one_line_error

CHANNELS = dict(zip(LAYER_NAMES, (c for block in VGG19_BLOCKS for c in block)))


@pytest.fixture(scope="module")
def vgg19_random_params():
    """VGG19-shaped weights (He-scaled random values): the layout is the point, not the values."""
    shapes = jax.eval_shape(lambda: VGG19().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                 LAYER_NAMES))
    rng = np.random.default_rng(0)
    out = {}
    for name, layer in shapes["params"].items():
        fan_in = np.prod(layer["kernel"].shape[:3])
        out[name] = {"kernel": rng.normal(0, np.sqrt(2 / fan_in), layer["kernel"].shape).astype(np.float32),
                     "bias": rng.uniform(0, 0.1, layer["bias"].shape).astype(np.float32)}
    return {"params": out}


def test_state_dict_is_what_caffeloader_builds(vgg19_random_params):
    torch = pytest.importorskip("torch")
    state = peer.state_dict(vgg19_random_params)
    # CaffeLoader.buildSequential for VGG-19: conv, ReLU per layer, a pooling after each block.
    layers, in_channels = [], 3
    for block in VGG19_BLOCKS:
        for c in block:
            layers += [torch.nn.Conv2d(in_channels, c, 3, padding=1), torch.nn.ReLU()]
            in_channels = c
        layers.append(torch.nn.AvgPool2d(2, 2))
    features = torch.nn.Sequential(*layers)
    model = torch.nn.Module()  # CaffeLoader's VGG: the features under .features
    model.features = features
    # strict: every key ours has is one it expects, and none is missing (the classifier's
    # keys aside, which neural-style-pt skips with -disable_check and never uses).
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    x = np.random.default_rng(1).normal(0, 50, (48, 64, 3)).astype(np.float32)
    wanted = ("conv1_1", "conv2_1", "conv4_2", "conv5_1")
    ours = VGG19().apply(vgg19_random_params, jnp.asarray(x), wanted)
    relu_index = {}
    i = 0
    for name in LAYER_NAMES:
        i += 1  # the conv
        relu_index[i] = name
        i += 1  # the ReLU
        if name.endswith(f"_{len(VGG19_BLOCKS[int(name[4]) - 1])}"):
            i += 1  # the pooling
    out, theirs = torch.from_numpy(x).permute(2, 0, 1)[None], {}
    with torch.no_grad():
        for index, layer in enumerate(features):
            out = layer(out)
            if isinstance(layer, torch.nn.ReLU) and relu_index.get(index) in wanted:
                theirs[relu_index[index]] = out[0].permute(1, 2, 0).numpy()
    assert set(theirs) == set(wanted)
    for name in wanted:
        np.testing.assert_allclose(theirs[name], ours[name], rtol=2e-4,
                                   atol=2e-4 * float(np.abs(ours[name]).max()))


def _peer_objective(features, content, style_grams_per_position, cw, sw):
    """neural-style-pt's ContentLoss + StyleLoss (NumPy, float64): MSE of the activations, and
    MSE of Gram matrices divided by their number of elements (C * M)."""
    f = features["conv4_2"].reshape(-1, CHANNELS["conv4_2"]).astype(np.float64)
    p = content.reshape(f.shape).astype(np.float64)
    total = cw * np.mean((f - p) ** 2)
    for layer in STYLE_LAYERS:
        n = CHANNELS[layer]
        x = features[layer].reshape(-1, n).astype(np.float64)
        gram = x.T @ x / (n * x.shape[0])
        target = style_grams_per_position[layer].astype(np.float64) / n  # A / (C * M_style)
        total += sw * np.mean((gram - target) ** 2)
    return total


def test_matched_flags_make_eq7_equal_to_the_peers_objective():
    shape = (72, 100)  # conv4_2 at 9 x 12, conv1_1 at 72 x 100
    rng = np.random.default_rng(2)
    from nst_jax.tiling import layer_size

    features = {l: rng.random((*layer_size(shape, l), CHANNELS[l])).astype(np.float32)
                for l in ("conv4_2", *STYLE_LAYERS)}
    content = rng.random(features["conv4_2"].shape).astype(np.float32)
    grams = {}
    for l in STYLE_LAYERS:  # a style image's Gram matrix per position, Â = A / M_style
        y = rng.random((50, CHANNELS[l])).astype(np.float32)
        grams[l] = y.T @ y / 50
    fields = peer._matched_fields(shape)
    flags = peer.matched_flags(shape, 5.0, 100.0)
    assert flags[:4] == ["--alpha", flags[1], "--beta", "1"] and len(flags[5].split(",")) == 5
    config = stylize.Config(**fields)
    weights = stylize.loss_weights(config)
    targets = Targets({"conv4_2": content}, {l: g[None] for l, g in grams.items()})
    ours, _ = total_loss(features, jnp.zeros((*shape, 3)), targets, weights)
    expected = _peer_objective(features, content, grams, 5.0, 100.0)
    assert float(ours) == pytest.approx(expected, rel=1e-4)
    assert isinstance(weights, LossWeights)


def test_torchvision_stand_in_matches_what_neural_style_pt_asks_of_it(tmp_path):
    torch = pytest.importorskip("torch")
    folder = peer.torchvision_shim(tmp_path / "shim")
    spec = importlib.util.spec_from_file_location("shim_transforms",
                                                  folder / "torchvision" / "transforms.py")
    transforms = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transforms)
    rgb = (np.random.default_rng(3).random((30, 40, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    # neural_style.preprocess, as written there.
    loader = transforms.Compose([transforms.Resize((30, 40)), transforms.ToTensor()])
    rgb2bgr = transforms.Compose([transforms.Lambda(lambda x: x[torch.LongTensor([2, 1, 0])])])
    normalize = transforms.Compose([transforms.Normalize(mean=[103.939, 116.779, 123.68],
                                                         std=[1, 1, 1])])
    tensor = normalize(rgb2bgr(loader(image) * 255)).unsqueeze(0)
    expected = rgb[..., ::-1].astype(np.float32) - np.array([103.939, 116.779, 123.68], np.float32)
    np.testing.assert_allclose(tensor[0].permute(1, 2, 0).numpy(), expected, atol=1e-3)
    # and deprocess: back to the same 8-bit image
    back = transforms.ToPILImage()(torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0))
    np.testing.assert_array_equal(np.asarray(back), rgb)
    assert loader(Image.fromarray(rgb)).shape == (3, 30, 40)
    assert transforms.Resize((15, 20))(image).size == (20, 15)


def test_timed_counts_wall_and_cpu_seconds_and_fails_in_one_line():
    seconds, cpu = peer.timed([sys.executable, "-c", "x = sum(i * i for i in range(3_000_000))"])
    assert seconds > 0 and 0 < cpu <= seconds * 2 + 0.5
    with pytest.raises(peer.NSTError, match="failed: .*boom"):
        peer.timed([sys.executable, "-c", "import sys; sys.exit('boom')"])


def test_per_iteration_takes_the_difference_of_medians():
    out = peer.per_iteration(5, 45, [10.0, 11.0, 30.0], [30.0, 31.0, 32.0])
    assert out["s_per_iteration"] == pytest.approx((31.0 - 11.0) / 40)
    assert out["startup_s"] == pytest.approx(11.0 - 5 * 0.5)
    with pytest.raises(ValueError):
        peer.per_iteration(25, 5, [1.0], [2.0])


class FakeTools(peer.Tools):
    """Each run 'takes' start-up + iterations x cost (+ a compile on nst_jax's cold run)."""

    def __init__(self, startup, cost, cold_extra=3.0):
        self.startup, self.cost, self.cold_extra, self.calls = startup, cost, cold_extra, []

    def run(self, tool, content, style, size, iterations, output, extra=(), timeout=None):
        self.calls.append((tool, iterations, tuple(extra)))
        cold = tool == "nst_jax" and (tool, iterations) not in [c[:2] for c in self.calls[:-1]]
        info = PngImagePlugin.PngInfo()  # as stylize.py records them: 1.2 per iteration
        info.add_text("nst_jax:evaluations", str(round(1.2 * iterations)))
        Image.fromarray(np.full((8, 8, 3), min(255, iterations), np.uint8)).save(output,
                                                                               pnginfo=info)
        seconds = self.startup[tool] + iterations * self.cost[tool] + (self.cold_extra if cold else 0)
        return seconds, seconds * (1.5 if tool == "nst_jax" else 1.9)  # CPU seconds


def test_compare_alternates_and_separates_first_runs(tmp_path):
    tools = FakeTools({"nst_jax": 4.5, "peer": 4.0}, {"nst_jax": 0.2, "peer": 0.3})
    case = peer.compare(tools, tmp_path, 64, "c.png", "s.png", short=5, long=25, rounds=2,
                        log=lambda m: None)
    # One cold round, then two rounds: short for both tools, then long for both.
    assert [c[:2] for c in tools.calls] == [("nst_jax", 5), ("peer", 5), ("nst_jax", 25),
                                            ("peer", 25)] * 3
    assert case["nst_jax"]["s_per_iteration"] == pytest.approx(0.2)
    assert case["peer"]["s_per_iteration"] == pytest.approx(0.3)
    assert case["ratio"] == pytest.approx(1.5)
    assert case["nst_jax"]["startup_s"] == pytest.approx(4.5)
    assert case["nst_jax"]["first_startup_s"] == pytest.approx(7.5)
    assert case["startup_gap_s"] == pytest.approx(0.5)
    assert case["nst_jax"]["evaluations_per_iteration"] == pytest.approx(1.2)
    assert peer.evaluations_of(tmp_path / "nst_jax_64_25.png") == 30
    assert peer.evaluations_of(tmp_path / "missing.png") is None
    md = "\n".join(peer_case.peer_markdown([case]))
    assert case["nst_jax"]["cores_busy"] == pytest.approx(1.5)
    assert case["peer"]["cores_busy"] == pytest.approx(1.9)
    assert "| 64 | 0.200 | 1.20 | 1.50 | 0.300 | 1.90 | 1.50x | 4.5 s (7.5 s) | 4.0 s | +0.5 s |" in md


def test_race_scores_every_output_with_one_function(tmp_path, monkeypatch):
    tools = FakeTools({"nst_jax": 4.0, "peer": 4.0}, {"nst_jax": 0.1, "peer": 0.1}, cold_extra=3.0)
    scored = []

    def fake_losses(params, preprocessing, content, style, outputs):
        scored.append(list(outputs))
        # the 'loss' of each file: its pixel value stands for its iterations
        return [1000.0 / float(np.asarray(Image.open(o))[0, 0, 0]) for o in outputs]

    monkeypatch.setattr(peer, "matched_losses", fake_losses)
    result = peer.race(tools, tmp_path, None, None, 64, example_path("chelsea.jpg"),
                       example_path("starry_night.jpg"), peer_iterations=200,
                       fractions=(0.5, 0.75), repeats=2, log=lambda m: None)
    assert [c[:2] for c in tools.calls] == [("peer", 200), ("nst_jax", 100), ("nst_jax", 100),
                                            ("nst_jax", 150), ("nst_jax", 150)]
    flags = tools.calls[1][2]
    assert flags[0] == "--alpha" and "--style-layer-weights" in flags
    assert result["flags"] == list(flags)
    assert len(scored) == 1 and len(scored[0]) == 3
    # 255 stands for the peer's 200 iterations (clipped), 100 and 150 for nst_jax's.
    assert result["peer"]["loss"] == pytest.approx(1000 / 200)
    assert [r["iterations"] for r in result["runs"]] == [100, 150]
    assert result["best"] is None  # neither reached the peer's loss here
    content = images.load_image(tmp_path / "content_64.png")
    assert max(content.shape[:2]) == 64 and result["shape"] == list(content.shape[:2])
    md = "\n".join(peer_case.peer_markdown([{"size": 64, "nst_jax": {"s_per_iteration": 1,
                                                                "startup_s": 1,
                                                                "first_startup_s": 1},
                                         "peer": {"s_per_iteration": 1, "startup_s": 1},
                                         "ratio": 1, "startup_gap_s": 0, "race": result}]))
    # The repeated run's time, the first run's (compiling) in brackets.
    assert result["runs"][0]["first_seconds"] == pytest.approx(17.0)
    assert "| 64 | 200 | 24.0 s | 5 | 100 | 14.0 s (17.0 s) | 0.58x (0.71x) | 2.000 |" in md


def test_matched_losses_agree_with_what_stylize_py_reports(real_weights, tmp_path):
    params, preprocessing = real_weights
    content, style, shape = peer.prepared_pair(tmp_path, example_path("chelsea.jpg"),
                                               example_path("starry_night.jpg"), 48)
    out = tmp_path / "ours.png"
    command = peer.nst_jax_command(content, style, 48, 3, str(out), peer.matched_flags(shape))
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr
    reported = float(Image.open(out).text["nst_jax:loss_total"])
    (scored,) = peer.matched_losses(params, preprocessing, content, style, [str(out)])
    assert scored == pytest.approx(reported, rel=1e-4)


@pytest.mark.parametrize("flags,needle", [
    (["--neural-style-pt", "/no/such/checkout"], "neural-style-pt checkout"),
    (["--neural-style-pt", "CHECKOUT", "--peer-iterations", "25,5"], "--peer-iterations"),
    (["--neural-style-pt", "CHECKOUT", "--race-fractions", "0"], "--race-fractions"),
    (["--neural-style-pt", "CHECKOUT", "--peer-rounds", "0"], "--peer-rounds"),
    (["--neural-style-pt", "CHECKOUT", "--race-repeats", "0"], "--race-repeats"),
])
def test_bad_peer_flags_are_one_line_errors(capsys, tmp_path, flags, needle):
    pytest.importorskip("torch")
    (tmp_path / "neural_style.py").write_text("")
    (tmp_path / "CaffeLoader.py").write_text("")
    flags = [str(tmp_path) if f == "CHECKOUT" else f for f in flags]
    code = runner.launch("nst_jax.apps.benchmark.bench", ["--sizes", "", *flags])
    assert code == ExitCode.ERROR
    assert_one_line_error(code, capsys.readouterr().err, needle)


def test_commands_name_the_paper_choices(tmp_path):
    command = peer.peer_command(pathlib.Path("/x"), pathlib.Path("/m/nst_jax-vgg19.pth"), "c", "s",
                                256, 25, "o.png")
    pairs = dict(zip(command[2::2], command[3::2]))
    assert pairs["-pooling"] == "avg" and pairs["-optimizer"] == "lbfgs"
    assert pairs["-tv_weight"] == "0" and pairs["-gpu"] == "c" and pairs["-image_size"] == "256"
    assert "vgg19" in pathlib.Path(pairs["-model_file"]).name  # CaffeLoader picks by name
    ours = peer.nst_jax_command("c", "s", 256, 25, "o.png", ["--alpha", "1"])
    assert ours[0] == sys.executable and ours[1].endswith("stylize.py")
    assert ours[-2:] == ["--alpha", "1"]


def test_hlo_kinds_tell_convolutions_from_products():
    def f(x, k, m):
        y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        flat = y.reshape(-1, y.shape[-1])
        return jnp.sum(jnp.tanh(flat.T @ flat @ m))

    args = (jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), jnp.ones((4, 4)))
    kinds = profile._hlo_kinds(jax.jit(jax.grad(f)).lower(*args).compile().as_text())
    assert "convolution" in kinds.values() and "dot" in kinds.values()
    assert set(kinds.values()) <= {"convolution", "dot", "other"}


def test_profile_splits_an_evaluation_for_both(real_weights):
    result = worker.run_in_subprocess("profile", timeout=600, size=32, repeats=1)
    assert "error" not in result, result
    ours = result["nst_jax"]
    assert ours["seconds"]["convolution"] > 0 and ours["wall_s"] > 0
    if importlib.util.find_spec("torch") is not None:
        assert result["torch"]["seconds"]["convolution"] > 0
    assert result["flops"]["convolutions"] + result["flops"]["grams"] == result["flops"]["total"]
    table = "\n".join(profile.profile_markdown([result]))
    assert "| 32 | nst_jax |" in table
