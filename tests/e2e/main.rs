//! End-to-end tests: the real binary, real eBPF programs in the kernel, real servers and
//! clients (python3, curl, psql) on loopback.

mod cli;
mod http_capture;
mod sql_examples;
mod sql_server;
mod support;
