//! Reading SQLite values one by one: a column of the wrong type, a NULL where a value is
//! required, a payload that is not JSON — each makes its own row unreadable, never the call.

use crate::cells::Cells;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use outbox_core::Leased;
use rusqlite::types::ValueRef;
use rusqlite::Row;

/// The columns every event read selects, in this order (`lockedBy` last), as a template
/// of [`super::layout`].
pub(crate) const EVENT_COLUMNS: &str = "{e.id}, {e.eventName}, {e.eventType}, {e.aggregateId}, {e.routingKey}, {e.payload}, {e.headers}, {e.occurredAt}, {e.retryCount}, {e.maxRetries}, {e.retryInterval}, {e.maxInterval}, {e.lockedBy}";

fn what(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

fn value<'a>(row: &'a Row<'_>, i: usize, name: &str) -> Result<ValueRef<'a>, String> {
    row.get_ref(i).map_err(|e| format!("column {name}: {e}"))
}

/// Text (an integer is taken as its decimal text); `None` for NULL.
pub(crate) fn text_opt(row: &Row<'_>, i: usize, name: &str) -> Result<Option<String>, String> {
    match value(row, i, name)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => String::from_utf8(t.to_vec())
            .map(Some)
            .map_err(|_| format!("column {name}: text that is not UTF-8")),
        ValueRef::Integer(n) => Ok(Some(n.to_string())),
        other => Err(format!("column {name}: {} where text belongs", what(other))),
    }
}

/// An integer; `None` for NULL.
pub(crate) fn int_opt(row: &Row<'_>, i: usize, name: &str) -> Result<Option<i64>, String> {
    match value(row, i, name)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| format!("column {name}: text that is not an integer")),
        other => Err(format!(
            "column {name}: {} where an integer belongs",
            what(other)
        )),
    }
}

/// A number (integer or real); `None` for NULL.
pub(crate) fn real_opt(row: &Row<'_>, i: usize, name: &str) -> Result<Option<f64>, String> {
    match value(row, i, name)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n as f64)),
        ValueRef::Real(f) => Ok(Some(f)),
        other => Err(format!(
            "column {name}: {} where a number belongs",
            what(other)
        )),
    }
}

/// A boolean stored as 0/1 (or `true`/`false` text); `None` for NULL.
pub(crate) fn bool_opt(row: &Row<'_>, i: usize, name: &str) -> Result<Option<bool>, String> {
    match value(row, i, name)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(0) => Ok(Some(false)),
        ValueRef::Integer(1) => Ok(Some(true)),
        ValueRef::Text(t) if t.eq_ignore_ascii_case(b"true") => Ok(Some(true)),
        ValueRef::Text(t) if t.eq_ignore_ascii_case(b"false") => Ok(Some(false)),
        other => Err(format!(
            "column {name}: {} where a boolean (0 or 1) belongs",
            what(other)
        )),
    }
}

/// A value as an operator's listing shows it, whatever it holds: text (invalid UTF-8
/// replaced), a number's digits, `(NULL)`, or `(a blob)` — never an error, so one odd row
/// never fails a listing.
pub(crate) fn shown(row: &Row<'_>, i: usize) -> String {
    match row.get_ref(i) {
        Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
        Ok(ValueRef::Integer(n)) => n.to_string(),
        Ok(ValueRef::Real(f)) => f.to_string(),
        Ok(ValueRef::Blob(_)) => "(a blob)".into(),
        Ok(ValueRef::Null) | Err(_) => "(NULL)".into(),
    }
}

/// A column as a JSON value of a listing: a blob (which `json_object` refuses, failing the
/// whole listing) is shown as text.
pub(crate) fn json_safe(expr: &str) -> String {
    format!("CASE typeof({expr}) WHEN 'blob' THEN '(a blob)' ELSE {expr} END")
}

/// A timestamp: integer milliseconds since 1970 (what this store and Prisma write), or text
/// in SQLite's `YYYY-MM-DD HH:MM:SS[.SSS]` or RFC 3339 form.
pub(crate) fn timestamp(row: &Row<'_>, i: usize, name: &str) -> Result<DateTime<Utc>, String> {
    let out_of_range = || format!("column {name}: a timestamp out of range");
    match value(row, i, name)? {
        ValueRef::Integer(ms) => Utc
            .timestamp_millis_opt(ms)
            .single()
            .ok_or_else(out_of_range),
        ValueRef::Real(ms) if ms.is_finite() && ms.abs() < 8.0e15 => Utc
            .timestamp_millis_opt(ms as i64)
            .single()
            .ok_or_else(out_of_range),
        ValueRef::Text(t) => {
            let s = std::str::from_utf8(t).unwrap_or_default().trim();
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .or_else(|_| {
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").map(|n| n.and_utc())
                })
                .map_err(|_| format!("column {name}: text that is not a timestamp"))
        }
        ValueRef::Null => Err(format!("column {name}: NULL in a required column")),
        other => Err(format!(
            "column {name}: {} where a timestamp belongs",
            what(other)
        )),
    }
}

/// Every row of a leasing statement, each read on its own.
pub(crate) fn leased_rows(
    rows: &mut rusqlite::Rows<'_>,
    owner: Option<&str>,
) -> rusqlite::Result<Leased> {
    let mut out = Leased::default();
    while let Some(row) = rows.next()? {
        match crate::cells::leased_row(row, owner) {
            Ok(e) => out.events.push(e),
            Err(u) => out.unreadable.push(u),
        }
    }
    Ok(out)
}

impl Cells for Row<'_> {
    fn text_opt(&self, i: usize, name: &str) -> Result<Option<String>, String> {
        text_opt(self, i, name)
    }
    fn int_opt(&self, i: usize, name: &str) -> Result<Option<i64>, String> {
        int_opt(self, i, name)
    }
    fn real_opt(&self, i: usize, name: &str) -> Result<Option<f64>, String> {
        real_opt(self, i, name)
    }
    fn bool_opt(&self, i: usize, name: &str) -> Result<Option<bool>, String> {
        bool_opt(self, i, name)
    }
    fn timestamp(&self, i: usize, name: &str) -> Result<DateTime<Utc>, String> {
        timestamp(self, i, name)
    }
}
