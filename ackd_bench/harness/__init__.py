"""Running many runs: one dataset's evaluation over pairs, grids, launchers."""
