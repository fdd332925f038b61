"""Benchmark datasets: recipes, sources, splits and the HDF5 shard format."""
