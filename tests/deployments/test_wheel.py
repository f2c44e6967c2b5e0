"""A regular (non-editable) install: build the wheel, install it alone, import every module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "tasks", "storage", "deployments")
DATA_FILES = ("tasks/predict/data/imagenet_class_index.json", "deployments/prefect.yaml")
EXTRAS = {"openvino", "nncf", "prefect_dask", "dask", "distributed"}  # optional: may be absent
# Imports every module of the installed packages, from a folder outside the checkout, and
# builds the served deployments the way `pixelpipe serve` does.
IMPORT_ALL = f"""
import importlib, importlib.resources, json, pkgutil, sys
found = {{}}
for top in {PACKAGES!r}:
    package = importlib.import_module(top)
    found[top] = package.__file__
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        try:
            found[info.name] = importlib.import_module(info.name).__file__
        except ModuleNotFoundError as e:
            found[info.name] = "missing " + (e.name or "?").split(".")[0]
from deployments.serve import build_deployments
entrypoints = sorted(d.entrypoint for d in build_deployments())
data = [str(importlib.resources.files(p.split("/")[0]).joinpath(*p.split("/")[1:]))
        for p in {DATA_FILES!r}]
print(json.dumps({{"modules": found, "entrypoints": entrypoints, "data": data}}))
"""


def source_modules() -> set[str]:
    """Every module of the checkout's packages, as dotted names."""
    names = set()
    for top in PACKAGES:
        for path in (REPO / top).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The wheel, built from a copy of the checkout (the build writes build/ and *.egg-info
    beside the sources), installed with --target into a folder of its own. No index is used:
    the build runs in this interpreter (no isolation), so nothing is downloaded."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=not_sources)
    wheels, site = root / "wheels", root / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", ".", "-w", str(wheels)],
        cwd=source)  # fmt: skip
    (wheel,) = wheels.glob("pixelpipe-*.whl")
    run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], cwd=root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "site": site, "cwd": elsewhere}


def not_sources(folder: str, names: list[str]) -> set[str]:
    """What the copy leaves out: caches and build output anywhere; the data root and the
    virtual environment at the top only (tasks/predict/data/ is package data)."""
    skipped = shutil.ignore_patterns("__pycache__", ".*_cache", "*.egg-info")(folder, names)
    if Path(folder) == REPO:
        skipped |= {".git", ".venv", "data", "build"} & set(names)
    return skipped


def from_wheel_env(site: Path) -> dict[str, str]:
    """Only the installed folder on the path: not the checkout (nor PYTHONPATH pointing at it)."""
    return {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}


def test_the_wheel_holds_the_packages_and_data_files_and_no_tests(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for data in DATA_FILES:
        assert data in names
    shipped = {n.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for n in names}
    assert source_modules() <= shipped, sorted(source_modules() - shipped)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_every_module_and_data_file_imports_from_the_install(installed):
    site = installed["site"].resolve()
    out = run(
        [sys.executable, "-c", IMPORT_ALL], installed["cwd"], from_wheel_env(site), timeout=600
    )
    report = json.loads(out.strip().splitlines()[-1])
    modules = report["modules"]
    assert set(modules) == source_modules()
    for name, file in modules.items():
        if file.startswith("missing "):
            assert file.removeprefix("missing ") in EXTRAS, f"{name}: {file}"
        else:
            assert Path(file).resolve().is_relative_to(site), f"{name} came from {file}"
    for data in report["data"]:
        assert Path(data).resolve().is_relative_to(site) and Path(data).is_file(), data
    assert json.loads(Path(report["data"][0]).read_text())["0"] == ["n01440764", "tench"]
    flows = ["image_pipeline", "scrape_images", "curate_images", "prepare_dataset"]
    flows += ["train_classifier", "promote_model", "predict_batch", "write_report"]
    assert report["entrypoints"] == sorted(f"flows.{name}.{name}" for name in flows)


def test_pixelpipe_serve_is_a_command_of_the_install_in_any_folder(installed):
    out = run(
        [sys.executable, "-m", "flows.cli", "serve", "--help"],
        installed["cwd"],
        from_wheel_env(installed["site"]),
    )
    assert "--allow-root" in out and "--allow-dask" in out
