"""docs/notebook.ipynb runs top to bottom, at a tiny size, on a kernel of this environment.

nbclient executes it on an ipykernel whose kernelspec is written here and runs this test's
own Python (``sys.executable``), so the notebook sees the nst_jax under test and not whatever
a ``python3`` kernelspec elsewhere on the machine would start. The environment variables
shrink its parameters (the notebook reads them in its first code cell) and the real VGG19
weights are the checkout's ``weights/vgg19.h5``.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the test extra (nbclient)")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the test extra (nbclient)")
pytest.importorskip("ipykernel", reason="the notebook test needs the test extra (ipykernel)")
pytest.importorskip("matplotlib", reason="the notebook draws with matplotlib (extra plots)")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebook.ipynb"
RATIOS, SEEDS = (1e-3, 1e-2), (0, 1)
TINY = {"NST_JAX_NOTEBOOK_SIZE": "32", "NST_JAX_NOTEBOOK_ITERATIONS": "3",
        "NST_JAX_NOTEBOOK_RATIOS": ",".join(map(str, RATIOS)),
        "NST_JAX_NOTEBOOK_SEEDS": ",".join(map(str, SEEDS))}
# Appended to the copy that runs (never to the file): which Python the kernel is.
PROBE = "import sys; print('kernel prefix:', sys.prefix)"


def this_python_kernel(folder: Path, name: str = "python3") -> AsyncKernelManager:
    """A kernel manager whose only kernelspec, ``name``, starts ipykernel on this Python."""
    spec = folder / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (nst_jax tests)", "language": "python"}))
    return AsyncKernelManager(kernel_name=name,
                              kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder)]))


def by_tag(nb) -> dict:
    return {tag: cell for cell in nb.cells for tag in cell.metadata.get("tags", [])}


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def images_of(cell) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.outputs
               if o.output_type in ("display_data", "execute_result"))


def test_the_notebook_is_stored_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs"
    assert code[0].metadata.get("tags") == ["parameters"]
    for name in ("SIZE", "ITERATIONS", "RATIOS", "SEEDS"):
        assert re.search(rf"^{name} = ", code[0].source, re.M), name


def test_the_notebook_runs_at_a_tiny_size(real_weights, tmp_path, monkeypatch):
    for name, value in TINY.items():
        monkeypatch.setenv(name, value)
    # The kernel's connection file and IPython's profile: here, not in the home folder.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE, id="probe"))
    workdir = tmp_path / "run"
    workdir.mkdir()
    client = nbclient.NotebookClient(nb, km=this_python_kernel(tmp_path / "kernels"), timeout=300,
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "error"]
    assert f"kernel prefix: {sys.prefix}\n" in text_of(nb.cells[-1])
    cells = by_tag(nb)
    assert "not on Colab" in text_of(cells["install"])
    assert images_of(cells["stylize"]) == 1
    assert re.search(r"^iteration +3/3: loss ", text_of(cells["stylize"]), re.M)
    assert "completed after 3 iterations; saved stylized.png" in text_of(cells["stylize"])
    assert (workdir / "stylized.png").is_file()

    # The whole grid in one compiled call, its optimisation loop compiled once.
    sweep = text_of(cells["sweep"])
    points = len(RATIOS) * len(SEEDS)
    assert f"{points} points (2 ratio x 2 seed) in 1 compiled call(s) of {points} points" in sweep
    assert "the grid's optimisation loop compiled 1 time(s)" in sweep
    assert len(re.findall(r"^  alpha/beta .*: content .*, 3 iterations, completed$", sweep,
                          re.M)) == points
    assert images_of(cells["sheet"]) == 1 and images_of(cells["curves"]) == 1
    written = json.loads((workdir / "sweep" / "results.json").read_text())
    assert written["points_done"] == points
    assert (workdir / "sweep" / "contact_sheet.png").is_file()
