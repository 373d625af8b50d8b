//! Criterion benches live in `benches/benches/`; numbers in `benches/README.md`.
