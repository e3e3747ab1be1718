"""`python -m memory_models.eval.benchmarks ...` (the same as `memory-models benchmark ...`)."""

import sys

from memory_models.eval.benchmarks.cli import main

sys.exit(main())
