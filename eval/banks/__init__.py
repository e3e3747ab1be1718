"""Memory banks: a corpus encoded once into memories (`encode`: `memory-models encode`, on one process or many),
its on-disk format (`store`), opening it and reading one document at a time (`bank`, `memory-models verify`),
generation that reads one document's memories (`generate`), and how much of its text a bank can read back
(`read_back`)."""
