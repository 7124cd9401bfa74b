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
    """Every module ``path`` imports, at the top or inside a function; relative imports
    resolved against ``path``'s package."""
    names = set()
    package = path.relative_to(REPO).parent.parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                module = ".".join([*base, *([module] if module else [])])
            if module:
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
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


APPS = PACKAGE / "apps"
# The role folders: every package under nst_jax/apps. ``common`` is the plumbing the tools
# share (runner, flags, progress, outputs); the others hold the tools of one role each.
ROLES = sorted(p.parent.name for p in APPS.glob("*/__init__.py"))
SHARED = "common"


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_tool(path: pathlib.Path) -> bool:
    """A tool is a module with a top-level ``main`` (what :func:`runner.launch` runs)."""
    return any(isinstance(n, ast.FunctionDef) and n.name == "main"
               for n in ast.parse(path.read_text()).body)


APP_MODULES = sorted(APPS.rglob("*.py"))
TOOLS = {module_name(p): p for p in APP_MODULES if is_tool(p)}


def test_the_applications_are_grouped_by_role():
    assert ROLES == ["benchmark", "cli", "common", "figures", "web"]
    assert not list(APPS.glob("*.py"))[1:] and [p.name for p in APPS.glob("*.py")] == ["__init__.py"]
    assert not [m for m in TOOLS if ".common." in m], "the shared plumbing holds no tool"
    assert len(TOOLS) >= 9


def violations(module: str, imports: set[str], tools: set[str]) -> list[str]:
    """What ``module`` (``nst_jax.apps.<role>....``) may not import among ``imports``: a
    module of another role than its own or ``common`` (``common`` itself: only
    ``common``), or a tool (a module of ``tools``) other than itself."""
    role = module.split(".")[2]
    bad = []
    for name in sorted(imports):
        if not name.startswith("nst_jax.apps."):
            continue
        target = name.split(".")[2]
        if target not in (role, SHARED) or (role == SHARED and target != SHARED):
            bad.append(f"{module} imports {name} (another role)")
        parts = name.split(".")
        prefixes = {".".join(parts[:k]) for k in range(4, len(parts) + 1)}
        if (prefixes & tools) - {module}:
            bad.append(f"{module} imports the tool {name}")
    return bad


def test_the_rule_catches_what_it_forbids():
    tools = {"nst_jax.apps.cli.stylize", "nst_jax.apps.cli.sweep"}
    assert violations("nst_jax.apps.cli.sweep", {"nst_jax.apps.cli.stylize.save"}, tools)
    assert violations("nst_jax.apps.web.jobs", {"nst_jax.apps.cli.helpers"}, tools)
    assert violations("nst_jax.apps.common.outputs", {"nst_jax.apps.web.jobs"}, tools)
    assert not violations("nst_jax.apps.web.page", {"nst_jax.apps.web.jobs", "nst_jax.config",
                                                    "nst_jax.apps.common.runner"}, tools)


def test_no_tool_imports_another_tool_or_another_role():
    """A module imports the library, the shared plumbing and the non-tool modules of its own
    role folder; never a tool (tools run through the runner, by name), never another role."""
    checked = 0
    for path in APP_MODULES:
        if path.parent == APPS:  # nst_jax/apps/__init__.py: imports nothing
            assert not [m for m in imported_modules(path) if m.startswith("nst_jax")], path
            continue
        assert not violations(module_name(path), imported_modules(path), set(TOOLS))
        checked += 1
    assert checked >= 30


def test_scripts_are_thin_entry_points():
    from nst_jax.apps.common import runner

    for path in sorted((REPO / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))], path
        allowed = {"sys", "nst_jax.apps.common.runner"} | {
            f"nst_jax.apps.common.runner.{name}" for name in ("run_tool", *runner.TOOLS)}
        assert imported_modules(path) <= allowed, path
        code_lines = [l for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert len(code_lines) <= 10, path


def test_every_tool_has_a_script_and_the_console_scripts_exist():
    from nst_jax.apps.common import runner

    scripts = {p.stem: p.read_text() for p in (REPO / "scripts").glob("*.py")}
    assert {m.rsplit(".", 1)[1] for m in TOOLS} == set(scripts)
    for module in TOOLS:  # each script runs its tool, by the runner's table or by name
        stem = module.rsplit(".", 1)[1]
        assert runner.TOOLS.get(stem) == module or f'run_tool("{module}")' in scripts[stem], module
    assert set(runner.TOOLS.values()) <= set(TOOLS)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name, target in project["scripts"].items():
        module, function = target.split(":")
        assert module == "nst_jax.apps.common.runner" and callable(getattr(runner, function)), name
