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


def source_folder(setup_kwargs, package: str) -> pathlib.Path:
    """The repository folder of an installed package name (setup.py's `package_dir`)."""
    return ROOT / setup_kwargs["package_dir"][package]


def installed_path(setup_kwargs, path: pathlib.Path) -> str:
    """Where a repository file lands in the wheel: `eval/harness/tasks/x.yaml` -> `memory_models/eval/harness/...`."""
    relative = path.relative_to(ROOT)
    for package, folder in sorted(setup_kwargs["package_dir"].items(), key=lambda item: -len(item[1])):
        if relative.is_relative_to(folder):
            return str(pathlib.Path(package.replace(".", "/")) / relative.relative_to(folder))
    raise AssertionError(f"{relative} belongs to no package")


def declared_data_files(setup_kwargs) -> dict[str, list[pathlib.Path]]:
    """`package/pattern` -> the repository files it matches."""
    return {f"{package}/{pattern}": sorted(source_folder(setup_kwargs, package).glob(pattern))
            for package, patterns in setup_kwargs.get("package_data", {}).items() for pattern in patterns}


def test_every_declared_data_pattern_matches_a_file(setup_kwargs):
    """Each `package_data` pattern matches at least one file, and each package has an `__init__.py`."""
    data = declared_data_files(setup_kwargs)
    assert data, "setup.py declares no package data"
    assert {pattern: files for pattern, files in data.items() if not files} == {}
    for package in setup_kwargs["packages"]:
        assert (source_folder(setup_kwargs, package) / "__init__.py").is_file(), package
    assert {package.split(".")[0] for package in setup_kwargs["packages"]} == {"memory_models"}, "one import name"
    extras = setup_kwargs["extras_require"]
    assert set(extras["plot"]) <= set(extras["eval"]), "the [eval] extra includes [plot]"


@pytest.fixture(scope="module")
def built(setup_kwargs, tmp_path_factory) -> dict:
    """`setup.py sdist` and `bdist_wheel`, run once on a copy of the repository: the two archives."""
    tmp_path = tmp_path_factory.mktemp("build")
    source = tmp_path / "src"
    source.mkdir()
    for name in ["setup.py", "README.md", *{folder.split("/")[0] for folder in setup_kwargs["package_dir"].values()}]:
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
    assert [f for f in files if installed_path(setup_kwargs, f) not in in_wheel] == []
    assert [f for f in files if str(f.relative_to(ROOT)) not in in_sdist] == []
    assert not any("tests/" in name for name in in_wheel)
    assert "memory_models/modeling_memory/modeling_memory.py" in in_wheel and "memory_models/eval/cli.py" in in_wheel
    top_level = {name.split("/")[0] for name in in_wheel if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"memory_models"}, top_level


INSTALLED_EVAL = """
import json, sys
from pathlib import Path
import memory_models.eval.harness.runner as runner, memory_models.training.train as train
from memory_models.eval.cli import main
code = main(["eval", "--model", sys.argv[1], "--tasks", "records_extraction", "--limit", "2", "--batch-size", "2",
             "--rolling-context", "128", "--output-dir", sys.argv[2]])
print(json.dumps({"code": code, "files": [runner.__file__, train.__file__]}))
"""


def test_the_installed_wheel_runs_its_own_lm_eval_tasks(built, tmp_path):
    """Installed from the wheel alone, outside the source tree, `memory-models eval --tasks records_extraction`
    finds the package's task YAMLs and their Python helper, and scores a saved memory model."""
    from memory_models.configuration import build_model, get_preset
    from memory_models.training.data.corpora import records_documents
    from memory_models.training.data.tokenizer import special_token_ids, train_tokenizer

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


STAND_INS = ("configuration", "conversion", "eval", "training")
BESIDE_STAND_INS = """
import importlib, json
found = {name: importlib.import_module(name).WHO for name in %r}
import memory_models.configuration, memory_models.eval.cli, memory_models.training.train
from memory_models.configuration import build_model, get_preset
model = build_model(get_preset("memory-transformer-tiny"))
print(json.dumps({"stand_ins": found, "ours": [memory_models.configuration.__file__, memory_models.eval.cli.__file__],
                  "model": type(model).__module__}))
""" % (STAND_INS,)


def test_the_wheel_installs_beside_packages_with_generic_names(built, tmp_path):
    """Installed into one site folder with other distributions' packages named `configuration`, `conversion`,
    `eval` and `training`, the wheel overwrites none of them and they shadow none of ours: both import."""
    site = tmp_path / "site"
    for name in STAND_INS:  # another distribution's top-level package, installed first
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(f"WHO = 'the other {name}'\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(built["wheel"])], check=True, capture_output=True)
    for name in STAND_INS:
        assert [p.name for p in (site / name).iterdir()] == ["__init__.py"], f"the wheel wrote into {name}/"
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", BESIDE_STAND_INS], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["stand_ins"] == {name: f"the other {name}" for name in STAND_INS}
    assert all(pathlib.Path(f).is_relative_to(site / "memory_models") for f in report["ours"]), report["ours"]
    assert report["model"].startswith("memory_models.modeling_memory.")
