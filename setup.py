"""memory-models: memory models (Badger 2026) as Hugging Face models."""

from setuptools import setup

SUBPACKAGES = ["modeling_memory", "configuration", "conversion", "training", "training.data", "training.objectives",
               "eval", "eval.banks", "eval.benchmarks", "eval.experiments", "eval.harness", "eval.serving"]

setup(
    name="memory-models",
    version="0.1.0",
    description="Encoder-decoder memory models, masked mixers, autoencoders and information-retention "
    "probes as Hugging Face models (Badger 2026, arXiv 2602.13466)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # One import name, `memory_models`: the repository's top-level folders install as its sub-packages (generic
    # names such as `configuration` or `eval` never reach site-packages). Explicit list: never pick up `tests`.
    packages=["memory_models", *(f"memory_models.{name}" for name in SUBPACKAGES)],
    package_dir={"memory_models": "memory_models",
                 **{f"memory_models.{name}": name.replace(".", "/") for name in SUBPACKAGES}},
    # accelerate / FSDP launch configs; the package's own lm-eval tasks (YAML and their Python helpers)
    package_data={"memory_models.training": ["*.yaml"], "memory_models.eval.harness": ["tasks/*.yaml", "tasks/*.py"]},
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "huggingface_hub>=1.0",
        "datasets>=3.0",
        "accelerate>=1.0",
        "peft>=0.15",
    ],
    extras_require={
        # lm-eval plus the metric packages of its LongBench tasks (lm_eval[longbench]).
        "eval": ["lm_eval>=0.4.9", "jieba", "fuzzywuzzy", "rouge", "matplotlib>=3.7"],
        "plot": ["matplotlib>=3.7"],  # loss curves, retention and benchmark plots (training/plot.py)
        # tensorboard: the report_to test reads its event files; setuptools>=70.1 builds wheels without `wheel`
        # (the packaging test builds the sdist and the wheel); pytest-xdist runs the suite in one worker per core
        # (pytest.ini): 272 s on two idle cores against 374 s in one process, back to back.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "tensorboard>=2.14", "setuptools>=70.1"],
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "tensorboard>=2.14", "setuptools>=70.1", "lm_eval>=0.4.9", "jieba", "fuzzywuzzy", "rouge", "matplotlib>=3.7"],
    },
    entry_points={
        "console_scripts": ["memory-models=memory_models.eval.cli:main"],
        # vLLM loads this in its own environment (scripts/vllm_env.sh): it serves a memory-model folder's decoder.
        "vllm.general_plugins": ["memory_models = memory_models.eval.serving.vllm_plugin:register"],
    },
)
