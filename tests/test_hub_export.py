"""Hub export proof: shipped code is lint-clean and every family reloads where our packages don't exist."""

import json
import os
import pathlib

import pytest
import torch

from memory_models.conversion.export_to_hub import export_model
from memory_models.conversion.isolation import OUR_PACKAGES, lint_hub_folder, run_without_our_packages
from model_tester import all_cases, run

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = all_cases()

# Runs where our packages cannot be imported: loads each job's `source` with an Auto class and saves the outputs;
# one interpreter for every job (transformers' start-up is paid once), each folder under its own name, so each
# gets its own `transformers_modules` package.
LOADER = """
    import json, sys, traceback
    import torch, transformers
    report = {}
    for job in json.loads(sys.argv[1]):
        try:
            inputs = torch.load(job["io"] + "/inputs.pt")
            config = transformers.AutoConfig.from_pretrained(job["source"], trust_remote_code=True)
            auto_class = getattr(transformers, job["auto_class"])
            model = auto_class.from_pretrained(job["source"], trust_remote_code=True).eval()
            with torch.no_grad():
                torch.save(getattr(model(**inputs), job["output_key"]), job["io"] + "/outputs.pt")
            report[job["io"]] = {"config_module": type(config).__module__, "model_module": type(model).__module__}
        except Exception:
            report[job["io"]] = {"error": traceback.format_exc()}
    print(json.dumps(report))
"""
HUB_CASES = CASES[:1] + [c for c in CASES if c.name.startswith("memory_")][:1]


def _export_case(case, root: pathlib.Path, **export_options):
    """Build `case`'s model with seed 0, export it to `root/<case name>`; its inputs go to `root/inputs.pt`."""
    torch.manual_seed(0)
    model, inputs = case.build(), case.inputs(2)
    expected = getattr(run(model, inputs), case.output_key)
    root.mkdir(parents=True)
    torch.save(inputs, root / "inputs.pt")
    return export_model(model, root / case.name, **export_options), expected


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory):
    """Every case exported to a folder, and the two `HUB_CASES` to a local Hub cache as `memory-models/<case>`,
    all reloaded in one interpreter without our packages: {(kind, case name): (folder, expected, modules, got)}."""
    root = tmp_path_factory.mktemp("hub_export")
    jobs, exported = [], {}
    for case in CASES:
        io = root / "folders" / case.name
        folder, expected = _export_case(case, io)
        jobs.append({"source": str(folder), "auto_class": case.auto_class, "output_key": case.output_key, "io": str(io)})
        exported[("folder", case.name)] = (folder, expected, io)
    for case in HUB_CASES:
        io, repo_id = root / "hub" / case.name, f"memory-models/{case.name}"
        folder, expected = _export_case(case, io, repo_id=repo_id)
        _fake_hub_cache(folder, root / "cache", repo_id)
        jobs.append({"source": repo_id, "auto_class": case.auto_class, "output_key": case.output_key, "io": str(io)})
        exported[("hub", case.name)] = (folder, expected, io)
    report = run_without_our_packages(LOADER, json.dumps(jobs), timeout=900,
                                      env={"HF_HUB_CACHE": str(root / "cache"), "HF_HOME": str(root / "home")})
    results = {}
    for key, (folder, expected, io) in exported.items():
        modules = report[str(io)]
        assert "error" not in modules, modules.get("error")
        results[key] = (folder, expected, modules, torch.load(io / "outputs.pt"))
    return results


def test_isolated_runs_cannot_import_our_packages():
    """The isolation used below really blocks every package of this repository."""
    script = """
        import importlib, json
        blocked = []
        for name in ("memory_models", "modeling_memory", "configuration", "conversion", "eval", "training"):
            try:
                importlib.import_module(name)
            except ImportError:
                blocked.append(name)
        print(json.dumps({"blocked": blocked}))
    """
    assert run_without_our_packages(script)["blocked"] == list(OUR_PACKAGES)


def test_shipped_source_is_lint_clean():
    """modeling_memory/ imports only stdlib, torch, transformers and existing single-dot siblings."""
    assert lint_hub_folder(ROOT / "modeling_memory") == []


@pytest.mark.parametrize(
    "source, message",
    [
        ("import numpy\n", "imports 'numpy'"),
        ("from configuration import presets\n", "imports 'configuration'"),
        ("from . import helpers\n", "only 'from .sibling import name'"),
        ("from .missing_module import thing\n", "is not a file of the folder"),
        ("from .layers.norm import RMSNorm\n", "is not a file of the folder"),
        ("from ..other import thing\n", "only 'from .sibling import name'"),
    ],
)
def test_lint_catches_breaking_imports(tmp_path, source, message):
    """The lint flags each import pattern that breaks a trust_remote_code load."""
    (tmp_path / "modeling_bad.py").write_text(source)
    problems = lint_hub_folder(tmp_path)
    assert any(message in p for p in problems), problems


def test_lint_allows_guarded_optional_imports(tmp_path):
    """An optional dependency inside try/except ImportError is allowed."""
    (tmp_path / "modeling_ok.py").write_text("try:\n    import flash_attn\nexcept ImportError:\n    flash_attn = None\n")
    assert lint_hub_folder(tmp_path) == []


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_export_and_reload_without_our_packages(case, reloaded):
    """Each family's exported folder loads with trust_remote_code where our packages can't be imported."""
    folder, expected, modules, got = reloaded[("folder", case.name)]
    files = {p.name for p in folder.iterdir()}
    config = json.loads((folder / "config.json").read_text())
    assert case.auto_class in config["auto_map"] and "AutoConfig" in config["auto_map"], config["auto_map"]
    for reference in config["auto_map"].values():
        assert reference.split(".")[0] + ".py" in files
    assert lint_hub_folder(folder) == []
    assert modules["model_module"].startswith("transformers_modules"), modules
    assert modules["config_module"].startswith("transformers_modules"), modules
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def _fake_hub_cache(folder: pathlib.Path, cache: pathlib.Path, repo_id: str) -> None:
    """Lay out `folder` as the Hugging Face cache holds a downloaded repo (blobs, snapshot, refs/main)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for i, path in enumerate(sorted(folder.iterdir())):
        blob = repo / "blobs" / f"blob{i:04d}"
        blob.write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))


@pytest.mark.parametrize("case", HUB_CASES, ids=repr)
def test_load_by_repo_id_from_offline_hub_cache(case, reloaded):
    """`from_pretrained("org/name")` resolves through a local Hub cache with HF_HUB_OFFLINE=1."""
    _, expected, modules, got = reloaded[("hub", case.name)]
    assert modules["model_module"].startswith("transformers_modules"), modules
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    """An export that fails mid-way leaves neither the target folder nor a staging folder."""
    case = CASES[0]
    model = case.build()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(model, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_model(model, tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


def test_failed_export_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """Re-exporting over an existing folder and failing keeps the previous, complete folder intact."""
    case = CASES[0]
    model = case.build()
    folder = export_model(model, tmp_path / "export")
    before = sorted(p.name for p in folder.iterdir())
    monkeypatch.setattr(model, "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        export_model(model, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
