"""Package metadata says only what exists: every declared data pattern matches files, and the built
sdist and wheel carry them."""

import json
import os
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


@pytest.fixture(scope="module")
def built(setup_kwargs, tmp_path_factory) -> dict:
    """`setup.py sdist` and `bdist_wheel`, run once on a copy of the repository: the two archives."""
    tmp_path = tmp_path_factory.mktemp("build")
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
    return {"sdist": sdist, "wheel": wheel}


def test_built_sdist_and_wheel_carry_the_declared_data(setup_kwargs, built):
    """The sdist and the wheel ship every declared data file, and no tests."""
    sdist, wheel = built["sdist"], built["wheel"]
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    files = [file for matched in declared_data_files(setup_kwargs).values() for file in matched]
    assert [f for f in files if f not in in_wheel] == [] and [f for f in files if f not in in_sdist] == []
    assert not any(name.startswith("tests/") for name in in_wheel)
    assert "modeling_memory/modeling_memory.py" in in_wheel and "eval/cli.py" in in_wheel


INSTALLED_EVAL = """
import json, sys
from pathlib import Path
import eval.harness.runner, training.train
from eval.cli import main
code = main(["eval", "--model", sys.argv[1], "--tasks", "records_extraction", "--limit", "2", "--batch-size", "2",
             "--rolling-context", "128", "--output-dir", sys.argv[2]])
print(json.dumps({"code": code, "files": [eval.harness.runner.__file__, training.train.__file__]}))
"""


def test_the_installed_wheel_runs_its_own_lm_eval_tasks(built, tmp_path):
    """Installed from the wheel alone, outside the source tree, `memory-models eval --tasks records_extraction`
    finds the package's task YAMLs and their Python helper, and scores a saved memory model."""
    from configuration import build_model, get_preset
    from training.data.corpora import records_documents
    from training.data.tokenizer import special_token_ids, train_tokenizer

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(built["wheel"])], check=True, capture_output=True)
    tokenizer = train_tokenizer(records_documents(60, 0, "train"), 300)
    ids = special_token_ids(tokenizer)
    config = get_preset("memory-transformer-tiny", vocab_size=len(tokenizer),
                        **{k: ids[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")})
    model_dir = tmp_path / "model"
    build_model(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    work = tmp_path / "work"  # the current folder holds no source tree
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-c", INSTALLED_EVAL, str(model_dir), str(work / "out")], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr[-3000:]
    assert all(pathlib.Path(f).is_relative_to(site) for f in report["files"]), report["files"]
    comparison = json.loads((work / "out" / "comparison.json").read_text())
    assert "records_extraction" in json.dumps(comparison)
