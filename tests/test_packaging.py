"""Package metadata says only what exists: every declared data pattern matches files, and the built
sdist and wheel carry them."""

import pathlib
import runpy
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
import setuptools

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup_kwargs():
    """The keyword arguments setup.py passes to `setuptools.setup` (captured, nothing is built)."""
    captured = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
        patch.chdir(ROOT)
        runpy.run_path(str(ROOT / "setup.py"))
    return captured


def declared_data_files(setup_kwargs) -> dict[str, list[str]]:
    """`package/pattern` -> the repository files it matches (relative paths)."""
    return {f"{package}/{pattern}": sorted(str(p.relative_to(ROOT)) for p in (ROOT / package.replace(".", "/")).glob(pattern))
            for package, patterns in setup_kwargs.get("package_data", {}).items() for pattern in patterns}


def test_every_declared_data_pattern_matches_a_file(setup_kwargs):
    """Each `package_data` pattern matches at least one file, and each package has an `__init__.py`."""
    data = declared_data_files(setup_kwargs)
    assert data, "setup.py declares no package data"
    assert {pattern: files for pattern, files in data.items() if not files} == {}
    for package in setup_kwargs["packages"]:
        assert (ROOT / package.replace(".", "/") / "__init__.py").is_file(), package
    extras = setup_kwargs["extras_require"]
    assert set(extras["plot"]) <= set(extras["eval"]), "the [eval] extra includes [plot]"


def test_built_sdist_and_wheel_carry_the_declared_data(setup_kwargs, tmp_path):
    """`setup.py sdist` and `bdist_wheel`, run on a copy of the repository, ship every declared data file."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ["setup.py", "README.md", *{package.split(".")[0] for package in setup_kwargs["packages"]}]:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                             if (ROOT / name).is_dir() else {}))
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist"),
                    "bdist_wheel", "-d", str(tmp_path / "dist")], cwd=source, check=True, capture_output=True)
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    files = [file for matched in declared_data_files(setup_kwargs).values() for file in matched]
    assert [f for f in files if f not in in_wheel] == [] and [f for f in files if f not in in_sdist] == []
    assert not any(name.startswith("tests/") for name in in_wheel)
    assert "modeling_memory/modeling_memory.py" in in_wheel and "eval/cli.py" in in_wheel
