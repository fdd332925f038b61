"""A fixture package that publishes one distiller under the `ackd_bench.methods` entry-point group."""
