"""Memory banks: a corpus encoded once into memories (`bank`: `memory-models encode`), generation that reads one
document's memories (`generate`), and how much of its text a bank can read back (`read_back`)."""
