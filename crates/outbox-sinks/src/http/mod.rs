//! `type = "http"`: one request per event, keep-alive connections reused.

mod config;
mod sink;

pub use config::{BodyFormat, HttpSinkConfig};
pub use sink::{classify_status, HttpSink};
