"""Experiments that train and measure: the demo, `reproduce` (the paper's tables and figures at small or full scale)
and the launcher check."""
