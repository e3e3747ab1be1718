"""memory-models: memory models (Badger 2026, arXiv 2602.13466) as Hugging Face models.

Every part of the package lives under this one import name, so that no generic top-level name reaches a user's
site-packages:

    memory_models.modeling_memory   the Hub folder: configs and models (importing it registers the Auto classes)
    memory_models.configuration     named presets (`get_preset`, `build_model`)
    memory_models.conversion        pretrained decoders, export, safe writes, checked loading
    memory_models.training          objectives, corpora, the Trainer and the training job
    memory_models.eval              retention, lm-eval, memory banks, benchmarks, experiments, the CLI

In the repository these are the top-level folders `modeling_memory/`, `configuration/`, ...; the wheel installs
them inside this package. Importing `memory_models` itself loads nothing else (the CLI's `--help` stays instant).
"""

import os as _os

__version__ = "0.1.0"

# A source checkout (an editable install, or the repository on sys.path): the sub-packages are the repository's
# top-level folders beside this one. In an installed wheel they sit inside this folder and nothing is added.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "modeling_memory")) and \
        _os.path.isfile(_os.path.join(_root, "modeling_memory", "__init__.py")):
    __path__.append(_root)
