//! The end-to-end tests, one test crate: each module runs the real `otelwatch` binary against
//! real peers; `support` is the shared harness.

mod support;

mod auth;
mod bad_input;
mod cli;
mod collector;
mod compose;
mod conformance;
mod console;
mod demo;
mod detection;
mod elasticsearch;
mod elasticsearch_faults;
mod forwarding;
mod hostile;
mod kibana;
mod latency;
mod lifecycle;
mod node_sdk;
mod overload;
mod real_data;
mod scale;
mod sdk_e2e;
mod signals;
mod target_system;
mod tls;
mod train;
mod webhook;
