//! `type = "http"`: one request per event, keep-alive connections reused.

mod config;
mod signing;
mod sink;

pub use crate::message::BodyFormat;
pub use config::{HttpSinkConfig, Type};
pub use sink::{classify_status, HttpSink};
