"""Export a model as a Hub-ready folder: weights, config with `auto_map`, code, tokenizer, model card.

    memory-models export --preset memory-transformer-tiny --output hub/memory-tiny
    memory-models export --model runs/clm/checkpoint-100 --output hub/clm --push-to-hub org/name

The folder loads anywhere with `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`:
only torch and transformers are needed on the loading side (checked by `lint_hub_folder`).
"""

import json
import pathlib
import sys

from huggingface_hub import HfApi

import memory_models.modeling_memory  # noqa: F401  (registers the classes, so that save_pretrained copies their code)
from memory_models.configuration import build_model, get_preset
from memory_models.conversion.adapters import load_adapter
from memory_models.conversion.arguments import export_parser
from memory_models.conversion.extract_decoder import decoder_model_card, dropped_positions, extract_decoder
from memory_models.conversion.isolation import lint_hub_folder
from memory_models.conversion.loading import check_model_path, load_model, load_tokenizer
from memory_models.conversion.model_card import model_card
from memory_models.conversion.safe_io import MARKER, check_target, write_folder


def push_folder(folder, repo_id: str, commit_message: str | None = None, private: bool | None = None) -> str:
    """Create the model repo `repo_id` (if it does not exist) and upload `folder` as one commit; returns its URL."""
    folder = pathlib.Path(folder)
    if "/" not in repo_id or repo_id.count("/") > 1:
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", ignore_patterns=[MARKER],
                             commit_message=commit_message or f"Upload {folder.name} with memory-models")
    return getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}"


def export_model(model, output_dir, tokenizer=None, *, repo_id: str | None = None, push: bool = False,
                 safe_serialization: bool = True, overwrite: bool = False, training: dict | None = None,
                 base_model: str | None = None, license: str | None = None, commit_message: str | None = None,
                 card_text: str | None = None, kind: str = "export", inputs=()) -> pathlib.Path:
    """Save `model` (and `tokenizer`) as a Hub-ready folder, atomically; optionally push it.

    The folder is written next to `output_dir` under a temporary name and renamed into place only after
    saving and linting succeeded (`conversion.safe_io.write_folder`, which also locks it and gives it the
    umask's modes): a failed export never leaves a half-written folder, and an existing export is replaced
    atomically. An existing non-empty folder that memory-models did not create, or created as another `kind`
    (a training run, a memory bank, ...), is refused unless `overwrite=True`; one that holds or lies inside one of
    `inputs` (`(option, path)` pairs) always is. `training` (a `metrics.json` summary),
    `base_model` and `license` go into the model card (`conversion.model_card`; `card_text` replaces it);
    `push=True` creates the repo `repo_id` if needed and uploads the folder with `commit_message`.
    """
    if push and not repo_id:
        raise ValueError("push=True needs repo_id='org/name'")

    def write(staging):
        model.save_pretrained(staging, safe_serialization=safe_serialization)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if card_text is not None:
            (staging / "README.md").write_text(card_text, encoding="utf-8")
        else:
            card = model_card(model, repo_id or str(output_dir), training=training, base_model=base_model,
                              license=license)
            card.save(staging / "README.md")
        problems = lint_hub_folder(staging)
        if problems:
            raise ValueError("the exported code would not load for a Hub user:\n" + "\n".join(problems))

    output_dir = write_folder(output_dir, write, kind=kind, overwrite=overwrite, inputs=inputs)
    if push:
        push_folder(output_dir, repo_id, commit_message)
    return output_dir


def main(argv=None) -> int:
    """`memory-models export`."""
    args = export_parser().parse_args(argv)

    adapter = bool(args.model) and (pathlib.Path(args.model) / "adapter_config.json").exists()
    inputs = [("--model", args.model), ("--tokenizer", args.tokenizer), ("--base-model", args.base_model),
              ("--metrics", args.metrics)]
    check_target(args.output, kind="export", overwrite=args.overwrite, inputs=inputs)  # before the (slow) loading
    if args.tokenizer and not pathlib.Path(args.tokenizer).expanduser().is_dir():
        check_model_path(args.tokenizer, "--tokenizer")
    if args.preset:
        model = build_model(get_preset(args.preset))
    elif adapter:
        model = load_adapter(args.model, args.base_model, trust_remote_code=args.trust_remote_code)  # merged
    else:
        model = load_model(args.model, allow_missing=args.allow_missing_weights,
                           trust_remote_code=args.trust_remote_code)
    tokenizer_dir = args.tokenizer or (args.model if args.model and (pathlib.Path(args.model) / "tokenizer.json").exists() else None)
    tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code=args.trust_remote_code) if tokenizer_dir else None
    card = None
    if args.decoder_only:
        positions_dropped = dropped_positions(model)
        model = extract_decoder(model)
        card = decoder_model_card(model, args.model or args.preset, positions_dropped)
    beside = args.model and pathlib.Path(args.model).name == "final"  # `memory-models train` writes run/metrics.json
    metrics = args.metrics or (beside and pathlib.Path(args.model).parent / "metrics.json")
    training = json.loads(pathlib.Path(metrics).read_text()) if metrics and pathlib.Path(metrics).is_file() else None
    if args.metrics and training is None:
        raise ValueError(f"--metrics {args.metrics}: no such file")
    folder = export_model(model, args.output, tokenizer, repo_id=args.push_to_hub, push=bool(args.push_to_hub),
                          overwrite=args.overwrite, training=training, card_text=card, inputs=inputs,
                          base_model=None if adapter else args.base_model, license=args.license)
    print(f"exported {type(model).__name__} to {folder}" + (f" and pushed to {args.push_to_hub}" if args.push_to_hub else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
