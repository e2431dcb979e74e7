//! Criterion benchmarks of the packet path live in benches/.
