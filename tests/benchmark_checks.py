"""Structure checks shared by the benchmark tests: every timed figure is a spread that holds together."""

SPREAD_KEYS = {"median", "min", "max", "interval", "runs"}


def spreads(tree, path: str = "") -> dict:
    """Every spread (`{"median", "min", "max", "interval", "runs"}`) in a benchmark's JSON, by its path."""
    if isinstance(tree, dict):
        if SPREAD_KEYS <= set(tree):
            return {path: tree}
        return {key: value for name, child in tree.items() for key, value in spreads(child, f"{path}/{name}").items()}
    if isinstance(tree, list):
        return {key: value for index, child in enumerate(tree)
                for key, value in spreads(child, f"{path}[{index}]").items()}
    return {}


def assert_spreads(tree, runs: int, expected: set[str]) -> dict:
    """Every spread in `tree` is exactly a spread of `runs` positive measurements with min <= the median's interval
    <= max around the median, and the paths in `expected` (suffixes, e.g. "/tokens_per_s/memory_batched") are
    among them. Returns them."""
    found = spreads(tree)
    for path, figure in found.items():
        assert set(figure) == SPREAD_KEYS, (path, figure)
        assert figure["runs"] == runs, (path, figure)
        low, high = figure["interval"]
        assert 0 < figure["min"] <= low <= figure["median"] <= high <= figure["max"], (path, figure)
    missing = {suffix for suffix in expected if not any(path.endswith(suffix) for path in found)}
    assert not missing, f"no spread at {sorted(missing)}; found {sorted(found)}"
    return found
