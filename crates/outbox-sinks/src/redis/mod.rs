//! `type = "redis"`: appends each event to a Redis stream (`XADD`) and counts it delivered on
//! the server's reply, optionally after `WAIT` has seen it reach replicas.

mod config;
mod sink;

pub use config::{RedisSinkConfig, Type};
pub use sink::RedisSink;
