"""The local stack of real services for the demo, the tests and the benchmarks."""
