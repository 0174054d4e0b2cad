//! Helpers for the config tests of every sink.

use outbox_core::conf::Issue;

/// A sink's `from_table`.
pub(crate) type FromTable<T> = fn(&str, &toml::Table, &mut Vec<Issue>) -> Option<T>;

/// Reads `text` as the section `sinks.s` with `from_table`: the config, and every problem.
pub(crate) fn read<T>(from_table: FromTable<T>, text: &str) -> (Option<T>, Vec<String>) {
    let table: toml::Table = toml::from_str(text).unwrap();
    let mut issues = Vec::new();
    let c = from_table("sinks.s", &table, &mut issues);
    (c, issues.iter().map(|i| i.to_string()).collect())
}

/// Asserts that the problems name each of `keys` (under `sinks.s.`).
pub(crate) fn assert_names(issues: &[String], keys: &[&str]) {
    let joined = issues.join("\n");
    for key in keys {
        let key = format!("sinks.s.{key}");
        assert!(joined.contains(&key), "{key} missing from {joined}");
    }
}
