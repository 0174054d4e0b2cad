//! Settings of a sink's circuit breaker: after `failures` retryable failures in a row the
//! worker stops calling the sink for `cooldown`, then lets one delivery through as a probe;
//! a failed probe opens it again for twice as long, up to `max_cooldown`. Events held back
//! meanwhile are not charged an attempt.

use crate::conf::Section;
use std::time::Duration;
use toml::Value;

/// How a sink's circuit breaker behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Retryable failures in a row that open the breaker; 0 turns it off.
    pub failures: u32,
    /// How long it stays open the first time.
    pub cooldown: Duration,
    /// The longest it stays open after failed probes.
    pub max_cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

impl BreakerSettings {
    /// A breaker that never opens.
    pub fn off() -> Self {
        BreakerSettings {
            failures: 0,
            ..BreakerSettings::default()
        }
    }

    /// Reads `circuit_breaker` of a `[sinks.NAME]` section at `path`: `false`, or a table
    /// with `failures`, `cooldown` and `max_cooldown` (each optional).
    pub fn from_value(
        path: &str,
        value: Option<&Value>,
        issues: &mut Vec<crate::conf::Issue>,
    ) -> BreakerSettings {
        let d = BreakerSettings::default();
        match value {
            None | Some(Value::Boolean(true)) => d,
            Some(Value::Boolean(false)) => BreakerSettings::off(),
            Some(Value::Table(t)) => {
                let path = format!("{path}.circuit_breaker");
                let mut s =
                    Section::new(&path, t, &["failures", "cooldown", "max_cooldown"], issues);
                let failures = s.int("failures", 0, 1_000_000, i64::from(d.failures));
                let cooldown = s.duration("cooldown", Duration::from_millis(10), d.cooldown);
                let max_cooldown =
                    s.duration("max_cooldown", cooldown, d.max_cooldown.max(cooldown));
                BreakerSettings {
                    failures: u32::try_from(failures).unwrap_or(d.failures),
                    cooldown,
                    max_cooldown,
                }
            }
            Some(_) => {
                issues.push(crate::conf::Issue {
                    key: format!("{path}.circuit_breaker"),
                    message: "expected false or a table such as { failures = 5, cooldown = \"5s\", max_cooldown = \"1m\" }".into(),
                });
                d
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (BreakerSettings, Vec<crate::conf::Issue>) {
        let t: toml::Table = toml::from_str(text).unwrap();
        let mut issues = Vec::new();
        let s = BreakerSettings::from_value("sinks.a", t.get("circuit_breaker"), &mut issues);
        (s, issues)
    }

    #[test]
    fn the_breaker_is_on_by_default_and_can_be_tuned_or_turned_off() {
        assert_eq!(read("").0, BreakerSettings::default());
        assert_eq!(read("circuit_breaker = false").0.failures, 0);
        let (s, issues) =
            read("circuit_breaker = { failures = 3, cooldown = \"2s\", max_cooldown = \"10s\" }");
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(
            s,
            BreakerSettings {
                failures: 3,
                cooldown: Duration::from_secs(2),
                max_cooldown: Duration::from_secs(10)
            }
        );
        let (_, issues) = read("circuit_breaker = { failure = 3 }");
        assert_eq!(issues[0].key, "sinks.a.circuit_breaker.failure");
        let (_, issues) = read("circuit_breaker = 3");
        assert_eq!(issues[0].key, "sinks.a.circuit_breaker");
    }
}
