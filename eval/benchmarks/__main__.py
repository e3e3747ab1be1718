"""`python -m eval.benchmarks ...` (the same as `memory-models benchmark ...`)."""

import sys

from eval.benchmarks.cli import main

sys.exit(main())
