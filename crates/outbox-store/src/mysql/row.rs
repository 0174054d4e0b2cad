//! Reading MySQL values one by one: a column of the wrong type, a NULL where a value is
//! required, a payload that is not JSON — each makes its own row unreadable, never the call.

use crate::cells::Cells;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use mysql_async::{Row, Value};
use outbox_core::Leased;

fn value<'a>(row: &'a Row, i: usize, name: &str) -> Result<&'a Value, String> {
    row.as_ref(i)
        .ok_or_else(|| format!("column {name}: missing"))
}

/// Text; `None` for NULL.
pub(crate) fn text_opt(row: &Row, i: usize, name: &str) -> Result<Option<String>, String> {
    match value(row, i, name)? {
        Value::NULL => Ok(None),
        Value::Bytes(b) => String::from_utf8(b.clone())
            .map(Some)
            .map_err(|_| format!("column {name}: text that is not UTF-8")),
        Value::Int(n) => Ok(Some(n.to_string())),
        Value::UInt(n) => Ok(Some(n.to_string())),
        other => Err(format!("column {name}: {other:?} where text belongs")),
    }
}

/// An integer; `None` for NULL.
pub(crate) fn int_opt(row: &Row, i: usize, name: &str) -> Result<Option<i64>, String> {
    match value(row, i, name)? {
        Value::NULL => Ok(None),
        Value::Int(n) => Ok(Some(*n)),
        Value::UInt(n) => i64::try_from(*n)
            .map(Some)
            .map_err(|_| format!("column {name}: {n} is out of range")),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| format!("column {name}: text that is not an integer")),
        other => Err(format!("column {name}: {other:?} where an integer belongs")),
    }
}

/// A number; `None` for NULL.
pub(crate) fn real_opt(row: &Row, i: usize, name: &str) -> Result<Option<f64>, String> {
    match value(row, i, name)? {
        Value::NULL => Ok(None),
        Value::Double(f) => Ok(Some(*f)),
        Value::Float(f) => Ok(Some(f64::from(*f))),
        Value::Int(n) => Ok(Some(*n as f64)),
        Value::UInt(n) => Ok(Some(*n as f64)),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| format!("column {name}: text that is not a number")),
        other => Err(format!("column {name}: {other:?} where a number belongs")),
    }
}

/// A boolean (TINYINT 0/1); `None` for NULL.
pub(crate) fn bool_opt(row: &Row, i: usize, name: &str) -> Result<Option<bool>, String> {
    match int_opt(row, i, name)? {
        None => Ok(None),
        Some(0) => Ok(Some(false)),
        Some(1) => Ok(Some(true)),
        Some(n) => Err(format!(
            "column {name}: {n} where a boolean (0 or 1) belongs"
        )),
    }
}

/// A DATETIME as UTC (the worker's connections use time_zone = '+00:00').
pub(crate) fn timestamp(row: &Row, i: usize, name: &str) -> Result<DateTime<Utc>, String> {
    match value(row, i, name)? {
        Value::Date(y, mo, d, h, mi, s, us) => {
            NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*mo), u32::from(*d))
                .and_then(|date| {
                    date.and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us)
                })
                .map(|n| Utc.from_utc_datetime(&n))
                .ok_or_else(|| format!("column {name}: not a valid date and time"))
        }
        Value::Bytes(b) => {
            let s = String::from_utf8_lossy(b);
            chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
                .map(|n| Utc.from_utc_datetime(&n))
                .map_err(|_| format!("column {name}: text that is not a timestamp"))
        }
        Value::NULL => Err(format!("column {name}: NULL in a required column")),
        other => Err(format!(
            "column {name}: {other:?} where a timestamp belongs"
        )),
    }
}

/// A value as an operator's listing shows it, whatever it holds.
pub(crate) fn shown(row: &Row, i: usize) -> String {
    match row.as_ref(i) {
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::Int(n)) => n.to_string(),
        Some(Value::UInt(n)) => n.to_string(),
        Some(Value::Double(f)) => f.to_string(),
        Some(Value::Float(f)) => f.to_string(),
        Some(Value::NULL) | None => "(NULL)".into(),
        Some(other) => other.as_sql(true),
    }
}

/// Every row, each read on its own.
pub(crate) fn leased_rows(rows: &[Row], owner: Option<&str>) -> Leased {
    crate::cells::leased(rows, owner)
}

impl Cells for Row {
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
