"""Dataset recipes (`NAME.yaml`) and training profiles (`profiles/NAME.yaml`), installed as the
package `ackd_bench.recipes` (pyproject.toml's package-dir) and read through `ackd_bench.resources`."""
