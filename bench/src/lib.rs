//! kuku-bench
