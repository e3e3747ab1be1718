"""Conversion of foreign checkpoints and export of Hub-ready folders."""
