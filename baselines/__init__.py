"""The distillation methods' defaults (`NAME.yaml`) and the paper's published numbers
(`paper_results.csv`), installed as the package `ackd_bench.baselines` (pyproject.toml's package-dir) and
read through `ackd_bench.resources`. The losses themselves are code, in `ackd_bench/methods/`."""
