//! wiretrace's benchmarks live in `benches/` (criterion); this library is empty on purpose.
