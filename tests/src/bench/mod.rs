//! Benchmarks behind the `bench` binary: measurements and the BENCHMARKS.md writer.

pub mod idle;
pub mod proc;
pub mod report;
