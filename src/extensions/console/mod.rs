//! The console: a live view of the services, their anomalies and incidents in the browser,
//! served by otelwatch itself. `history.rs` is its memory of the last hours (bounded by age and
//! size) and the questions asked of it; the HTTP server and the page are built on it.

pub mod history;
