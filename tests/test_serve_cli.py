"""``scripts/serve.py``: its flags, its errors, and a real server on the real weights."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from nst_jax.apps.common import runner
from nst_jax.apps.web import serve
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error


def _serve(argv, capsys):
    code = runner.launch("nst_jax.apps.web.serve", argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, needles", [
    (["--port", "70000"], ["--port must be from 1 to 65535"]),
    (["--max-size", "8"], ["--max-size must be a whole number from 16 to 4096"]),
    (["--max-iterations", "0"], ["--max-iterations"]),
    (["--max-upload-mb", "-1"], ["--max-upload-mb must be a number > 0"]),
    (["--concurrency", "0"], ["--concurrency must be at least 1"]),
    (["--queue-size", "0"], ["--queue-size must be at least 1"]),
    (["--host", "no such host!"], ["--host", "is not an address of this machine"]),
    (["--port", "x"], ["--port", "invalid int value"]),
])
def test_bad_flags_are_one_line(argv, needles, capsys):
    code, err = _serve(argv, capsys)
    assert_one_line_error(code, err, *needles)


def test_a_busy_port_is_one_line(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not serve.port_is_free("127.0.0.1", port)
        code, err = _serve(["--port", str(port)], capsys)
    assert_one_line_error(code, err, f"port {port} is in use on 127.0.0.1")


def test_the_default_port_is_the_first_free_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert serve.free_port("127.0.0.1", [port, port + 1, port + 2]) in (port + 1, port + 2)
        with pytest.raises(Exception, match=f"no free port from {port} to {port}"):
            serve.free_port("127.0.0.1", [port])


def test_without_gradio_it_says_which_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    code, err = _serve([], capsys)
    assert_one_line_error(code, err, "pip install 'nst_jax[web]'")


def _folders():
    return set(pathlib.Path(tempfile.gettempdir()).glob("nst_jax-serve-*"))


def test_serves_the_real_network_and_stops_on_ctrl_c(real_weights, image_files):
    from gradio_client import Client, handle_file

    from nst_jax.images import read_png_metadata

    content, style = image_files
    port = serve.free_port("127.0.0.1")
    before = _folders()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, str(REPO / "scripts" / "serve.py"), "--port",
                               str(port), "--max-size", "64", "--max-iterations", "10"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline()
        assert line.strip() == f"serving on http://127.0.0.1:{port} (Ctrl-C stops)", (
            line + server.stderr.read() if server.poll() is not None else line)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        path = client.predict(content=handle_file(str(content)), style=handle_file(str(style)),
                              size=32, iterations=2, api_name="/stylize")
        meta = read_png_metadata(path)
        assert meta["nst_jax:status"] == "completed" and "vgg19" in meta["nst_jax:weights"]
        (folder,) = _folders() - before  # the server's own folder
        # The uploads and the copy of the result gradio served are in it, not in gradio's
        # shared temporary folder, where they outlived the server.
        served = list((folder / "uploads").glob("*/stylized.png"))
        assert len(served) == 1 and {p.name for p in (folder / "uploads").glob("*/*")} >= {
            content.name, style.name, "stylized.png"}
        assert list((folder / "jobs").glob("*/stylized.png"))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            out, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0, err
    assert "stopped serving" in err and "Traceback" not in err
    assert _folders() - before == set()  # removed on the way out, with the results
    assert not served[0].exists()
