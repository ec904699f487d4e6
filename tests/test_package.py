"""A real package: pyproject.toml's metadata, an engine that needs no UI package, and a wheel that
works when installed outside the checkout.

The wheel test builds the wheel offline (setuptools from this environment, no build isolation)
from a copy of the package's files, installs it into a new virtual environment with no pip nor
packages of its own whose only other packages are this environment's (a .pth file), with
``pip --no-index``: pip then checks every declared requirement against the versions the suite runs
with, and nothing is downloaded (a registry install of torch and its dependencies would take minutes
and the network). From a temporary working directory, ``textgen`` lists the bundled models, samples
one offline and trains five steps.
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import textgen_core
from textgen_core import jobs, pretrained
from textgen_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
UI_PACKAGES = ("streamlit", "plotly")


def requirements(names: list[str]) -> list[Requirement]:
    return [Requirement(text) for text in names]


# --- metadata -----------------------------------------------------------------------------------
def test_version_is_one_and_the_cli_says_it(capsys):
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "textgen_core.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", textgen_core.__version__)
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"textgen_core {textgen_core.__version__}"


def test_the_textgen_command_is_python_dash_m_textgen_core():
    assert PROJECT["scripts"] == {"textgen": "textgen_core.console:main"}
    command = [sys.executable, "-c", "import sys; from textgen_core.console import main; sys.argv[1:] = "
               "['push', ' ', '--repo', 'me/x']; main()"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and result.stderr.strip() == "error: no model folder given: give the folder of " \
                                                               "the model to upload"


def test_the_engine_needs_no_ui_package_and_the_extras_name_them():
    names = {r.name for r in requirements(PROJECT["dependencies"])}
    assert names.isdisjoint(UI_PACKAGES) and "torch" in names
    extras = PROJECT["optional-dependencies"]
    assert {r.name for r in requirements(extras["app"])} == set(UI_PACKAGES)
    assert {r.name for r in requirements(extras["export"])} == {"onnx", "onnxruntime"}
    assert {"pytest", "playwright", "ruff", "mypy"} <= {r.name for r in requirements(extras["dev"])}


def test_every_requirement_has_an_upper_bound_that_admits_the_tested_version():
    everything = PROJECT["dependencies"] + [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    for requirement in requirements(everything):
        assert any(spec.operator in ("<", "<=", "==") for spec in requirement.specifier), requirement
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            continue   # an extra this environment does not have
        assert requirement.specifier.contains(installed, prereleases=True), f"{requirement} excludes {installed}"


def test_no_blanket_silencing_of_deprecation_warnings():
    filters = [line.strip() for line in (ROOT / "pytest.ini").read_text().splitlines() if line.strip().startswith(
        ("ignore", "error", "default"))]
    assert "ignore::DeprecationWarning" not in filters
    assert all(re.match(r"ignore:.+:\w+", f) for f in filters if f.startswith("ignore")), filters


IMPORT_ALL = """
import importlib, importlib.abc, json, pkgutil, sys

class NoUI(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("streamlit", "plotly"):
            raise ImportError(f"the engine imported {name}")

sys.meta_path.insert(0, NoUI())
import textgen_core
for module in pkgutil.walk_packages(textgen_core.__path__, "textgen_core."):
    if module.name != "textgen_core.__main__":   # that one runs the command line
        importlib.import_module(module.name)
top = {name.split(".")[0] for name in sys.modules} - set(sys.stdlib_module_names)
print(json.dumps(sorted(top)))
"""


def test_the_engine_imports_whole_without_ui_packages_and_only_what_it_declares():
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = json.loads(result.stdout.splitlines()[-1])
    providers = metadata.packages_distributions()
    used = {dist for module in modules for dist in providers.get(module, []) if not module.startswith("_")}
    used -= {"textgen-core", "textgen_core"}
    assert used <= declared_closure(PROJECT["dependencies"]), used - declared_closure(PROJECT["dependencies"])


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_closure(names: list[str]) -> set[str]:
    """The distributions the requirements pull in (without extras), by their installed names."""
    seen: dict[str, str] = {}
    todo = list(requirements(names))
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue
        if _normal(requirement.name) in seen:
            continue
        seen[_normal(requirement.name)] = dist.metadata["Name"]
        todo.extend(requirements(dist.requires or []))
    return set(seen.values()) | {_normal(n) for n in seen.values()}


# --- where things are ----------------------------------------------------------------------------
def test_runs_go_to_the_working_directory_or_textgen_runs_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(jobs.RUNS_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert jobs.runs_dir() == tmp_path / "runs"
    monkeypatch.setenv(jobs.RUNS_DIR_ENV, "elsewhere")
    assert jobs.runs_dir() == tmp_path / "elsewhere"


def test_the_bundled_models_are_package_data(monkeypatch, tmp_path):
    package = Path(textgen_core.__file__).parent
    assert pretrained.PRETRAINED_DIR == package / "pretrained_models"
    monkeypatch.setenv(pretrained.PRETRAINED_ENV, "")
    assert pretrained.pretrained_dir() == pretrained.PRETRAINED_DIR
    monkeypatch.setenv(pretrained.PRETRAINED_ENV, str(tmp_path))
    assert pretrained.pretrained_dir() == tmp_path and pretrained.catalog() == []
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["textgen_core.pretrained_models"]
    for path in pretrained.PRETRAINED_DIR.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            name = path.relative_to(pretrained.PRETRAINED_DIR).as_posix()
            assert any(Path(name).match(p) for p in patterns), f"{name} would not be in the wheel"


# --- the wheel, installed elsewhere ----------------------------------------------------------------
def run(command: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stdout[-1500:]}\n{result.stderr[-3000:]}"
    return result


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of the package's own files (so nothing of the checkout leaks into it)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "textgen_core", source / "textgen_core", ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(source)], tmp_path, dict(os.environ))
    (wheel,) = (tmp_path / "dist").glob("textgen_core-*.whl")
    return wheel


def new_environment(tmp_path: Path, wheel: Path) -> Path:
    """A virtual environment with the wheel installed, seeing this environment's packages only."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, dict(os.environ))
    python = venv / "bin" / "python"
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
               dict(os.environ)).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "tested-packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", "--no-cache-dir",
         str(wheel)], tmp_path, dict(os.environ))
    return venv


@pytest.mark.slow
def test_the_wheel_installed_elsewhere_lists_samples_and_trains(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:   # the sampling loop native_step compiles where it is installed
        assert "textgen_core/native/rnn_sampler.cpp" in archive.namelist()
    venv = new_environment(tmp_path, wheel)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTGEN_", "PYTHON", "HF_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), OMP_WAIT_POLICY="PASSIVE")
    textgen = str(venv / "bin" / "textgen")

    where = run([str(venv / "bin" / "python"), "-c", "import textgen_core; print(textgen_core.__file__)"], work, env)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    assert run([textgen, "--version"], work, env).stdout.strip() == f"textgen_core {textgen_core.__version__}"
    listed = run([textgen, "pretrained"], work, env).stdout
    assert all(entry.name in listed for entry in pretrained.catalog(pretrained.PRETRAINED_DIR)), listed
    sampled = run([textgen, "sample", "shakespeare-char-gru", "--prompt", "ROMEO:", "--length", "60", "--seed", "1"],
                  work, env)
    assert sampled.stdout.startswith("ROMEO:") and len(sampled.stdout) > 60
    assert "bundled copy" in sampled.stderr

    (work / "song.txt").write_text("home on the range, where the deer and the antelope play\n" * 40)
    run([textgen, "train", "song.txt", "--out", "song", "--preset", "tiny", "--max-steps", "5", "--eval-every", "5",
         "--batch-size", "4", "--seq-len", "16", "--device", "cpu"], work, env)
    assert json.loads((work / "song" / "run.json").read_text())["steps"] == 5
    assert run([textgen, "sample", "song", "--length", "20", "--seed", "1"], work, env).stdout.strip()
    assert sorted(p.name for p in work.iterdir()) == ["song", "song.txt"]   # nothing written elsewhere in it

    runs = subprocess.run([textgen, "runs", "list"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert runs.returncode == 2 and f"{work / 'runs'} is not a folder" in runs.stderr   # ./runs by default
    recipe = subprocess.run([textgen, "recipe", "shakespeare-gru", "--max-minutes", "0.01"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=120)
    assert recipe.returncode == 2 and "set TEXTGEN_DATA_DIR" in recipe.stderr.splitlines()[-1]
