//! End-to-end tests: the real binary, real eBPF programs in the kernel, real servers and
//! clients (python3, curl, psql) on loopback and in network namespaces the tests build, and
//! capture files the tests write.

mod bookinfo;
mod cli;
mod clients;
mod durability;
mod http_capture;
mod lab;
mod packet_capture;
mod pcap_ingest;
mod sql_examples;
mod sql_server;
mod support;
mod trace_live;
