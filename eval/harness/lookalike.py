"""Offline look-alikes of lm-eval's `mmlu`, `longbench` and `swde`: local data in the exact schema of the Hub
datasets, and task configs that reuse the installed lm-eval task definitions unchanged except for where the
data comes from.

    memory-models lookalike --output lookalike
    lm_eval --model hf --model_args pretrained=DIR,trust_remote_code=True --include_path lookalike \\
        --tasks mmlu,longbench,swde --device cpu --batch_size 4 --limit 2

Each task YAML written here `include`s the installed one (by absolute path, so the prompt, generation
settings and metrics are lm-eval's own) and only sets `dataset_path: json` with local `data_files`; the
`swde` task (a Python class in lm-eval) is subclassed only to load its local file. Tasks in an
`--include_path` folder replace installed tasks of the same name, so `--tasks mmlu` then means the local
subject and `--tasks longbench` the local qasper (single-doc QA), lcc (code completion) and trec (few-shot)
tasks. The documents are synthetic (the real datasets need Hub access): numbers here say that the pipeline
runs and scores, not how good a model is.
"""

from __future__ import annotations

import json
import random
import sys
import sysconfig
from pathlib import Path

from memory_models.conversion import safe_io
from memory_models.eval.harness.arguments import lookalike_parser

MMLU_SUBJECT = "abstract_algebra"
LONGBENCH_TASKS = {"single": "qasper", "code": "lcc", "fewshot": "trec"}
TREC_CLASSES = ["Abbreviation", "Entity", "Description", "Person", "Location", "Number"]
WORDS = ("memory model chunk encoder decoder token slot copy objective layer mixer attention context window "
         "retention entropy gradient batch embedding vector filler sequence training causal").split()


def installed_tasks_dir() -> Path:
    """The `lm_eval/tasks` folder of the installed lm-eval."""
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def _sentence(rng: random.Random, n: int = 10) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _prose(rng: random.Random, chars: int) -> str:
    text = []
    while sum(len(s) + 1 for s in text) < chars:
        text.append(_sentence(rng, rng.randint(6, 14)))
    return " ".join(text)


def mmlu_docs(rng: random.Random, count: int) -> list[dict]:
    """`cais/mmlu` rows: question, subject, choices (4 strings), answer (index of the right choice)."""
    docs = []
    for _ in range(count):
        a, b = rng.randint(2, 30), rng.randint(2, 30)
        right = (a * b) % 31
        wrong = rng.sample([v for v in range(31) if v != right], 3)
        answer = rng.randrange(4)
        choices = [str(v) for v in wrong[:answer] + [right] + wrong[answer:]]
        docs.append({"question": f"In the cyclic group Z_31 under multiplication, what is {a} * {b}?",
                     "subject": MMLU_SUBJECT, "choices": choices, "answer": answer})
    return docs


def _longbench_row(name: str, index: int, context: str, question: str, answers: list, all_classes=None) -> dict:
    """A `Xnhyacinth/LongBench` row."""
    return {"question": question, "context": context, "answers": answers, "length": len(context.split()),
            "dataset": name, "language": "en", "all_classes": all_classes, "_id": f"{name}-lookalike-{index}"}


def qasper_docs(rng: random.Random, count: int, chars: int) -> list[dict]:
    """Single-doc QA: an article that states a fact early on, and a question about it."""
    docs = []
    for index in range(count):
        name, value = rng.choice(WORDS), rng.choice(WORDS)
        fact = f"The {name} of this study is the {value}."
        context = f"{fact} {_prose(rng, chars)}"
        docs.append(_longbench_row("qasper", index, context, f"What is the {name} of this study?", [f"the {value}"]))
    return docs


def _python_sources() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [str(stdlib / name) for name in ("textwrap.py", "fnmatch.py", "colorsys.py", "bisect.py", "shlex.py")]


def lcc_docs(rng: random.Random, count: int, chars: int) -> list[dict]:
    """Code completion: real Python source (standard library) cut before a non-empty line, which is the answer."""
    docs = []
    sources = [Path(p).read_text(encoding="utf-8") for p in _python_sources() if Path(p).exists()]
    for index in range(count):
        lines = sources[index % len(sources)].splitlines(keepends=True)
        start = rng.randrange(0, max(1, len(lines) // 3))
        context, cut = "", start
        while cut < len(lines) - 1 and len(context) < chars:
            context += lines[cut]
            cut += 1
        while cut < len(lines) - 1 and not lines[cut].strip():
            context += lines[cut]
            cut += 1
        docs.append(_longbench_row("lcc", index, context, "", [lines[cut].rstrip("\n")]))
    return docs


def trec_docs(rng: random.Random, count: int, chars: int) -> list[dict]:
    """Few-shot classification: labelled example questions, then one to label (`all_classes` as in LongBench)."""
    def example():
        label = rng.choice(TREC_CLASSES)
        return f"Question: What {rng.choice(WORDS)} {rng.choice(WORDS)} is the {label.lower()}?", label

    docs = []
    for index in range(count):
        shots = []
        while sum(len(s) for s in shots) < chars:
            question, label = example()
            shots.append(f"{question}\nType: {label}\n")
        question, label = example()
        docs.append(_longbench_row("trec", index, "\n".join(shots), f"{question}\nType:", [label], TREC_CLASSES))
    return docs


def swde_docs(rng: random.Random, count: int, chars: int) -> list[dict]:
    """`hazyresearch/based-swde-v2` rows: a page's text ending in `key:`, the value stated early in the page."""
    docs = []
    for index in range(count):
        key, value = rng.choice(["director", "title", "genre", "studio"]), " ".join(rng.sample(WORDS, 2))
        text = f"{key}: {value}\n{_prose(rng, chars)}\n{key}:"
        docs.append({"doc_id": index, "file_name": f"movie-lookalike-{index:04d}.htm", "key": key, "value": value,
                     "text": text})
    return docs


def _write_jsonl(folder: Path, final: Path, name: str, rows: list[dict]) -> str:
    """Write `folder/data/name`; return the path it will have once `folder` is moved to `final`."""
    (folder / "data" / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(final / "data" / name)


def _yaml(path: Path, config: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


SWDE_MODULE = '''"""lm-eval's SWDE task, unchanged except that it reads the local look-alike file next to this module."""

from pathlib import Path

from lm_eval.tasks.swde.task import SWDE


class LocalSWDE(SWDE):
    DATASET_PATH = "json"
    DATASET_NAME = None

    def download(self, dataset_kwargs=None, **kwargs):
        data_files = {"validation": str(Path(__file__).with_name("data") / "swde.jsonl")}
        super().download({**(dataset_kwargs or {}), "data_files": data_files}, **kwargs)
'''


def _write_tasks(folder: Path, final: Path, docs: int, context_chars: int, seed: int) -> None:
    """Write everything into `folder`, with data paths as they will be under `final` (absolute)."""
    tasks = installed_tasks_dir()
    (folder / "data").mkdir()
    rng = random.Random(seed)
    # MMLU: one subject; the `mmlu` group (and its stem sub-group) then hold only that subject.
    files = {split: _write_jsonl(folder, final, f"mmlu_{MMLU_SUBJECT}_{split}.jsonl", mmlu_docs(rng, n))
             for split, n in (("test", docs), ("dev", 5))}
    _yaml(folder / f"mmlu_{MMLU_SUBJECT}.yaml",
          {"include": str(tasks / "mmlu" / "default" / f"mmlu_{MMLU_SUBJECT}.yaml"),
           "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files}})
    _yaml(folder / "_mmlu.yaml", {"include": str(tasks / "mmlu" / "default" / "_mmlu.yaml"), "task": ["mmlu_stem"]})
    _yaml(folder / "_mmlu_stem.yaml", {"include": str(tasks / "mmlu" / "default" / "_mmlu_stem.yaml")})
    # LongBench: one task per category we cover, and the groups restricted to them.
    writers = {"qasper": qasper_docs, "lcc": lcc_docs, "trec": trec_docs}
    for category, name in LONGBENCH_TASKS.items():
        path = _write_jsonl(folder, final, f"longbench_{name}.jsonl", writers[name](rng, docs, context_chars))
        _yaml(folder / f"longbench_{name}.yaml",
              {"include": str(tasks / "longbench" / f"{name}.yaml"), "dataset_path": "json", "dataset_name": None,
               "dataset_kwargs": {"data_files": {"test": path}}})
        _yaml(folder / f"_longbench_{category}.yaml",
              {"include": str(tasks / "longbench" / f"_longbench_{category}.yaml"), "task": [f"longbench_{name}"]})
    _yaml(folder / "_longbench.yaml", {"include": str(tasks / "longbench" / "_longbench.yaml"),
                                       "task": [f"longbench_{category}" for category in LONGBENCH_TASKS]})
    # SWDE: lm-eval defines it as a Python class; a subclass only changes where it loads from.
    _write_jsonl(folder, final, "swde.jsonl", swde_docs(rng, docs, context_chars))
    (folder / "swde_lookalike.py").write_text(SWDE_MODULE, encoding="utf-8")
    swde = dict(_load_plain_yaml(tasks / "swde" / "swde.yaml"))
    swde["class"] = "!function swde_lookalike.LocalSWDE"
    (folder / "swde.yaml").write_text(
        "".join(f"{key}: {value}\n" for key, value in swde.items()), encoding="utf-8")


def _load_plain_yaml(path: Path) -> dict:
    """`key: value` lines of a flat YAML file, keeping `!function` tags as text."""
    pairs = (line.split(":", 1) for line in path.read_text(encoding="utf-8").splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def write_lookalike_tasks(output: str | Path, docs: int = 4, context_chars: int = 3000, seed: int = 0,
                          overwrite: bool = False) -> Path:
    """Write the look-alike data and task configs into `output` (a new folder, or look-alikes written before;
    another non-empty folder only with `overwrite`), atomically (`conversion.safe_io.write_folder`).

    Args:
        docs (`int`): documents per task (MMLU also gets 5 `dev` rows for few-shot prompts).
        context_chars (`int`): length of each LongBench/SWDE context, in characters (make it longer than the
            model's window to exercise truncation and memory).
    Returns:
        The folder, to pass as `--include_path` / `--include-path`.
    """
    if docs < 1 or context_chars < 1:
        raise ValueError(f"docs and context_chars must be positive, got docs={docs}, context_chars={context_chars}")
    output = Path(output).absolute()
    final = output.resolve()  # the data paths written into the YAMLs
    return safe_io.write_folder(output, lambda staging: _write_tasks(staging, final, docs, context_chars, seed),
                                kind="lookalike", overwrite=overwrite)


def main(argv=None) -> int:
    """`memory-models lookalike`: write the look-alike tasks and data."""
    args = lookalike_parser().parse_args(argv)
    folder = write_lookalike_tasks(args.output, args.docs, args.context_chars, args.seed, args.overwrite)
    print(f"wrote {folder}: --include_path {folder} --tasks mmlu,longbench,swde")
    return 0


if __name__ == "__main__":
    sys.exit(main())
