"""Experiments that train and measure: the demo, the paper checks, Table 4 at small scale and the launcher check."""
