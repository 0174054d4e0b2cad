//! How log lines are written: in text logs every field's control characters are escaped, so
//! a destination's error body or a producer's id cannot forge log lines or drive the
//! terminal (JSON logs escape them by themselves).

use std::fmt::Write as _;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{debug_fn, Writer};
use tracing_subscriber::fmt::FormatFields;

/// `text` with each control character written as an escape (`\n`, `\u{1b}`).
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The fields of a text log line, `name=value` separated by spaces (the message bare), with
/// control characters escaped.
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(
        |w: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            let text = format!("{value:?}");
            let text = escape_controls(&text);
            if field.name() == "message" {
                write!(w, "{text}")
            } else {
                write!(w, "{}={text}", field.name())
            }
        },
    )
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\nINFO forged\r\t\u{1b}[31m"),
            "a\\nINFO forged\\r\\t\\u{1b}[31m"
        );
    }

    #[test]
    fn a_field_cannot_start_a_new_line() {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .fmt_fields(escaped_fields())
            .with_writer(move || Shared(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let body = "HTTP 500: oops\n2026-01-01T00:00:00Z  INFO forged line";
            tracing::warn!(id = %"evt\r1", error = %body, "Delivery failed");
        });
        let out = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            out.contains("Delivery failed id=evt\\r1 error=HTTP 500: oops\\n2026"),
            "{out}"
        );
    }

    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
