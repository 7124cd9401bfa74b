"""The package's shape: a library that imports no application, and thin scripts."""
import ast
import json
import pathlib
import subprocess
import sys
import tomllib

from tests.conftest import REPO

PACKAGE = REPO / "nst_jax"
LIBRARY = sorted(p for p in PACKAGE.rglob("*.py") if "apps" not in p.relative_to(PACKAGE).parts)
# What an application may use and the library must not pull in: the PyTorch baseline,
# plots, the web page, progress displays (flax itself imports rich's console and tables).
APPLICATION_PACKAGES = ("torch", "matplotlib", "gradio", "tqdm", "rich.progress", "rich.live",
                        "nst_jax.apps")


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_library_module_imports_an_application():
    assert len(LIBRARY) >= 12
    for path in LIBRARY:
        bad = sorted(m for m in imported_modules(path) if m.startswith("nst_jax.apps"))
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_importing_the_library_loads_no_application_package():
    modules = [f"nst_jax.{p.relative_to(PACKAGE).with_suffix('').as_posix().replace('/', '.')}"
               for p in LIBRARY if p.name != "__init__.py"]
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules)
            + f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({APPLICATION_PACKAGES!r}))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            timeout=300, env={"JAX_PLATFORMS": "cpu", "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert "nst_jax.stylize" in modules and "nst_jax.sweep" in modules and "nst_jax.losses" in modules
    assert json.loads(result.stdout) == []


def test_scripts_are_thin_entry_points():
    for path in sorted((REPO / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))], path
        assert imported_modules(path) <= {"sys", "nst_jax.apps.runner"} | {
            f"nst_jax.apps.runner.{name}" for name in ("run_tool", "stylize", "sweep",
                                                       "fetch_weights", "paper_figures",
                                                       "control_figures", "serve")}, path
        code_lines = [l for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert len(code_lines) <= 10, path


def test_every_tool_has_a_script_and_the_console_scripts_exist():
    from nst_jax.apps import runner

    scripts = {p.stem for p in (REPO / "scripts").glob("*.py")}
    tools = {p.stem for p in (PACKAGE / "apps").glob("*.py")} - {
        "__init__", "runner", "flags", "progress", "plots", "paper", "controls", "torch_baseline",
        "peer", "compile_cache", "web", "web_jobs"}
    assert tools == scripts
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name, target in project["scripts"].items():
        module, function = target.split(":")
        assert module == "nst_jax.apps.runner" and callable(getattr(runner, function)), name
