"""Export a model as a Hub-ready folder: weights, config with `auto_map`, code, tokenizer, model card.

    memory-models export --preset memory-transformer-tiny --output hub/memory-tiny
    memory-models export --model runs/clm/checkpoint-100 --output hub/clm --push-to-hub org/name

The folder loads anywhere with `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`:
only torch and transformers are needed on the loading side (checked by `lint_hub_folder`).
"""

import json
import pathlib
import stat
import sys
import uuid

from huggingface_hub import HfApi
from transformers import AutoTokenizer

import modeling_memory  # noqa: F401  (registers the classes, so that save_pretrained copies their code)
from configuration import build_model, get_preset
from conversion.adapters import load_adapter
from conversion.arguments import export_parser
from conversion.extract_decoder import decoder_model_card, extract_decoder
from conversion.isolation import lint_hub_folder
from conversion.loading import check_model_path, load_model
from conversion.model_card import model_card
from conversion.safe_io import MARKER, check_target, write_folder


def staging_folder(parent, name: str) -> pathlib.Path:
    """A new, uniquely named hidden folder `parent/.name.XXXX` created by a plain `mkdir`.

    Unlike `tempfile.mkdtemp` (always mode 0700), it gets the permissions of any folder the user creates
    (0755 under umask 022), which the final folder keeps after the atomic rename.
    """
    parent = pathlib.Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = parent / f".{name}.{uuid.uuid4().hex[:12]}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # pragma: no cover - a 48-bit collision
            continue


def match_folder_modes(folder) -> None:
    """Give everything under `folder` the modes a plain `mkdir` / `open` would under the user's umask, read off
    `folder` itself (made by `staging_folder`): files copied by `save_pretrained` otherwise keep their source's."""
    folder = pathlib.Path(folder)
    folder_mode = stat.S_IMODE(folder.stat().st_mode)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(folder_mode if path.is_dir() else folder_mode & 0o666)


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
                 card_text: str | None = None) -> pathlib.Path:
    """Save `model` (and `tokenizer`) as a Hub-ready folder, atomically; optionally push it.

    The folder is written next to `output_dir` under a temporary name and renamed into place only after
    saving and linting succeeded (`conversion.safe_io.write_folder`): a failed export never leaves a
    half-written folder, and an existing export is replaced atomically. An existing non-empty folder that
    memory-models did not create is refused unless `overwrite=True`. `training` (a `metrics.json` summary),
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
        match_folder_modes(staging)
        problems = lint_hub_folder(staging)
        if problems:
            raise ValueError("the exported code would not load for a Hub user:\n" + "\n".join(problems))

    output_dir = write_folder(output_dir, write, kind="export", overwrite=overwrite)
    if push:
        push_folder(output_dir, repo_id, commit_message)
    return output_dir


def main(argv=None) -> int:
    """`memory-models export` (`memory-models export`)."""
    args = export_parser().parse_args(argv)

    check_target(args.output, overwrite=args.overwrite)  # before the (slow) loading
    if args.tokenizer and not pathlib.Path(args.tokenizer).expanduser().is_dir():
        check_model_path(args.tokenizer, "--tokenizer")
    if args.preset:
        model = build_model(get_preset(args.preset))
    elif (pathlib.Path(args.model) / "adapter_config.json").exists():
        model = load_adapter(args.model, args.base_model)  # merged; refuses clearly without a base model
    else:
        model = load_model(args.model, allow_missing=args.allow_missing_weights, trust_remote_code=True)
    tokenizer_dir = args.tokenizer or (args.model if args.model and (pathlib.Path(args.model) / "tokenizer.json").exists() else None)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else None
    card = None
    if args.decoder_only:
        model = extract_decoder(model)
        card = decoder_model_card(model, args.model or args.preset)
    beside = args.model and pathlib.Path(args.model).name == "final"  # `memory-models train` writes run/metrics.json
    metrics = args.metrics or (beside and pathlib.Path(args.model).parent / "metrics.json")
    training = json.loads(pathlib.Path(metrics).read_text()) if metrics and pathlib.Path(metrics).is_file() else None
    if args.metrics and training is None:
        raise ValueError(f"--metrics {args.metrics}: no such file")
    folder = export_model(model, args.output, tokenizer, repo_id=args.push_to_hub, push=bool(args.push_to_hub),
                          overwrite=args.overwrite, training=training, card_text=card,
                          base_model=None if args.model and (pathlib.Path(args.model) / "adapter_config.json").exists()
                          else args.base_model, license=args.license)
    print(f"exported {type(model).__name__} to {folder}" + (f" and pushed to {args.push_to_hub}" if args.push_to_hub else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
