//! Pure helpers for reading configuration tables: each getter records a problem (key, what
//! is wrong, how to fix it) instead of stopping, so validation reports everything at once.
//! Values that came from environment variables arrive as strings; numeric and boolean
//! getters accept those too.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use toml::{Table, Value};

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted key, e.g. `sinks.audit-api.timeout`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The longest duration any setting takes (ten years): beyond it, times computed from
/// it would overflow the clock or the database's timestamps.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `500ms`, `5s`, `2m`, `1h`, `1d` (also `1.5s`). A bare number is not accepted:
/// the unit must be explicit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{text}' has no unit; write e.g. \"{t}ms\" or \"{t}s\""))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration; write e.g. \"500ms\", \"5s\", \"2m\""))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}'; use ms, s, m, h or d"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{text}' is out of range"))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A table being read, with the errors found so far. It records the keys it is asked for;
/// opened with [`Section::open`], [`Section::finish`] reports every other key as unknown,
/// so a reader's list of keys is its reads and cannot drift from them.
pub struct Section<'a> {
    path: String,
    table: &'a Table,
    issues: &'a mut Vec<Issue>,
    /// The keys asked for, in the order first asked.
    read: std::cell::RefCell<Vec<String>>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl<'a> Section<'a> {
    /// Starts reading `table` found at `path`; every key not in `known` is reported.
    pub fn new(path: &str, table: &'a Table, known: &[&str], issues: &'a mut Vec<Issue>) -> Self {
        let mut s = Section::open(path, table, issues);
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let msg = format!(
                    "unknown key; the keys of [{path}] are: {}",
                    known.join(", ")
                );
                s.issue(key, msg);
            }
        }
        s
    }

    /// Starts reading `table` found at `path`; which keys it has is settled by the reads
    /// ([`Section::finish`]).
    pub fn open(path: &str, table: &'a Table, issues: &'a mut Vec<Issue>) -> Self {
        Section {
            path: path.to_string(),
            table,
            issues,
            read: Default::default(),
        }
    }

    /// Reports every key of the table that no read asked for, naming the keys read.
    pub fn finish(mut self) {
        let read = self.read.take();
        let unknown: Vec<String> = self
            .table
            .keys()
            .filter(|k| !read.contains(k))
            .cloned()
            .collect();
        for key in unknown {
            let msg = format!(
                "unknown key; the keys of [{}] are: {}",
                self.path,
                read.join(", ")
            );
            self.issue(&key, msg);
        }
    }

    /// The number of problems recorded so far, this section's and those before it.
    pub fn issue_count(&self) -> usize {
        self.issues.len()
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        let mut read = self.read.borrow_mut();
        if !read.iter().any(|k| k == key) {
            read.push(key.to_string());
        }
        self.table.get(key)
    }

    /// The dotted name of `key` in this section.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Records a problem with `key`.
    pub fn issue(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key_path(key);
        self.issues.push(Issue {
            key,
            message: message.into(),
        });
    }

    /// The raw value.
    pub fn value(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }

    /// A string value.
    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                let msg = format!("expected a string, found {}", type_name(other));
                self.issue(key, msg);
                None
            }
        }
    }

    /// A string value that must be present.
    pub fn required_string(&mut self, key: &str, example: &str) -> Option<String> {
        if self.get(key).is_none() {
            self.issue(key, format!("missing; add `{key} = {example}`"));
            return None;
        }
        let s = self.string(key)?;
        if s.trim().is_empty() {
            self.issue(key, format!("is empty; set it, e.g. `{key} = {example}`"));
            return None;
        }
        Some(s)
    }

    /// One of `choices`, or `default` when absent.
    pub fn choice(&mut self, key: &str, choices: &[&str], default: &str) -> String {
        match self.string(key) {
            None => default.to_string(),
            Some(s) if choices.contains(&s.as_str()) => s,
            Some(s) => {
                let msg = format!("'{s}' is not one of: {}", choices.join(", "));
                self.issue(key, msg);
                default.to_string()
            }
        }
    }

    /// An integer within `min..=max`, or `default`.
    pub fn int(&mut self, key: &str, min: i64, max: i64, default: i64) -> i64 {
        let parsed = match self.get(key) {
            None => return default,
            Some(Value::Integer(i)) => Some(*i),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        match parsed {
            Some(i) if (min..=max).contains(&i) => i,
            Some(i) => {
                self.issue(key, format!("{i} is out of range; use {min} to {max}"));
                default
            }
            None => {
                self.issue(key, format!("expected an integer from {min} to {max}"));
                default
            }
        }
    }

    /// A boolean, or `default`.
    pub fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(_) => {
                self.issue(key, "expected true or false");
                default
            }
        }
    }

    /// A duration string such as "5s", at least `min`, or `default`.
    pub fn duration(&mut self, key: &str, min: Duration, default: Duration) -> Duration {
        self.optional_duration(key, min).unwrap_or(default)
    }

    /// A duration string such as "5s" from `min` to `max`, or `default`.
    pub fn duration_within(
        &mut self,
        key: &str,
        min: Duration,
        max: Duration,
        default: Duration,
    ) -> Duration {
        match self.optional_duration(key, min) {
            Some(d) if d > max => {
                let msg = format!(
                    "{} is too long; use at most {}",
                    format_duration(d),
                    format_duration(max)
                );
                self.issue(key, msg);
                default
            }
            Some(d) => d,
            None => default,
        }
    }

    /// A duration string such as "7d", at least `min` and at most [`MAX_DURATION`], or
    /// `None` when absent (or invalid, which is reported).
    pub fn optional_duration(&mut self, key: &str, min: Duration) -> Option<Duration> {
        let text = self.string(key)?;
        match parse_duration(&text) {
            Ok(d) if d > MAX_DURATION => {
                let msg = format!(
                    "'{text}' is too long; use at most {}",
                    format_duration(MAX_DURATION)
                );
                self.issue(key, msg);
                None
            }
            Ok(d) if d >= min => Some(d),
            Ok(_) => {
                let msg = format!(
                    "'{text}' is too short; use at least {}",
                    format_duration(min)
                );
                self.issue(key, msg);
                None
            }
            Err(e) => {
                self.issue(key, e);
                None
            }
        }
    }

    /// A table of strings (e.g. HTTP headers).
    pub fn string_map(&mut self, key: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self.get(key) {
            None => {}
            Some(Value::Table(t)) => {
                for (k, v) in t {
                    match v {
                        Value::String(s) => {
                            out.insert(k.clone(), s.clone());
                        }
                        other => {
                            let msg = format!("expected a string, found {}", type_name(other));
                            self.issue(&format!("{key}.{k}"), msg);
                        }
                    }
                }
            }
            Some(other) => {
                let msg = format!(
                    "expected a table such as {{ Name = \"value\" }}, found {}",
                    type_name(other)
                );
                self.issue(key, msg);
            }
        }
        out
    }

    /// Reads the sub-table `key` with `read` as a section of its own (`path.key`), whose
    /// keys are those `read` asks for; `None` when absent (or not a table, reported).
    pub fn sub<R>(&mut self, key: &str, read: impl FnOnce(&mut Section<'_>) -> R) -> Option<R> {
        let table = self.table(key)?;
        let path = self.key_path(key);
        let mut sub = Section::open(&path, table, self.issues);
        let out = read(&mut sub);
        sub.finish();
        Some(out)
    }

    /// A sub-table, reported when it is something else.
    pub fn table(&mut self, key: &str) -> Option<&'a Table> {
        match self.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                let msg = format!("expected a table, found {}", type_name(other));
                self.issue(key, msg);
                None
            }
        }
    }
}

/// `%XX` sequences decoded (user names, passwords and paths in URLs).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters whose values are masked wherever a URL is shown: names that hold, or
/// end in, one of these (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "signature",
    "sig",
    "credential",
    "session",
];

/// `text` with every secret it may hold replaced by `***`: the password of every URL
/// (`scheme://user:password@host`, the password may hold spaces or commas; a NATS user
/// without a password is a token), the values of query parameters named like secrets
/// (`?api_key=…`, `&token=…`), and libpq's `password=…` / `password = '…'` in any case.
/// For errors and logs, which must never carry a secret.
pub fn redact_secrets(text: &str) -> String {
    let masked = mask_userinfo(text);
    let masked = mask_query_secrets(&masked);
    mask_password_settings(&masked)
}

/// The password part of `scheme://user:password@host` (and a NATS token).
fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the path. A password may hold anything but `@` and `/`
        // (spaces, commas, quotes and brackets too, unencoded), so the user information
        // ends at the last `@` before the path or the line's end; that may reach past the
        // URL into the text after it, which is then masked too — never shown.
        let end = tail.find(['/', '\n']).unwrap_or(tail.len());
        let authority = &tail[..end];
        let scheme = head[..i]
            .rsplit(|c: char| !c.is_ascii_alphanumeric())
            .next();
        let token_scheme = matches!(scheme, Some("nats" | "tls"));
        let consumed = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                // Where this URL's own user information starts: a list of servers
                // (`nats://a@h1,nats://b@h2`) is split by the loop, not here.
                match userinfo.find(':') {
                    Some(c) => {
                        out.push_str(&userinfo[..c]);
                        out.push_str(":***@");
                    }
                    None if token_scheme => out.push_str("***@"),
                    None => {
                        out.push_str(userinfo);
                        out.push('@');
                    }
                }
                at + 1
            }
            None => 0,
        };
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    out
}

/// The values of query parameters named like secrets.
fn mask_query_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    let mut last = 0;
    while let Some((i, c)) = chars.next() {
        if c != '?' && c != '&' {
            continue;
        }
        let after = &text[i + 1..];
        let Some(eq) = after.find('=') else { continue };
        let name = &after[..eq];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c))
        {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if !SECRET_PARAMS.iter().any(|p| lower.contains(p)) {
            continue;
        }
        let value_start = i + 1 + eq + 1;
        let value_len = text[value_start..]
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || "\"'<>()".contains(c))
            .unwrap_or(text.len() - value_start);
        out.push_str(&text[last..value_start]);
        out.push_str("***");
        last = value_start + value_len;
        while chars.peek().is_some_and(|(j, _)| *j < last) {
            chars.next();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// libpq's `password=secret`, `password = 'sec ret'`, in any letter case.
fn mask_password_settings(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let start = from + found;
        let mut j = start + "password".len();
        from = j;
        let bytes = text.as_bytes();
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b'=' {
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let value_end = if text[j..].starts_with('\'') {
            // A quoted value ends at the first quote not escaped by a backslash.
            let mut k = j + 1;
            let mut end = text.len();
            while k < bytes.len() {
                match bytes[k] {
                    b'\\' => k += 2,
                    b'\'' => {
                        end = k + 1;
                        break;
                    }
                    _ => k += 1,
                }
            }
            end
        } else {
            text[j..]
                .find(char::is_whitespace)
                .map_or(text.len(), |e| j + e)
        };
        out.push_str(&text[last..j]);
        out.push_str("***");
        last = value_end;
        from = value_end.max(from);
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_wherever_they_appear() {
        assert_eq!(
            redact_secrets("error sending request for url (http://bob:s3cret@api.local:8080/x)"),
            "error sending request for url (http://bob:***@api.local:8080/x)"
        );
        assert_eq!(
            redact_secrets("postgres://u:p@h/db and https://h/x"),
            "postgres://u:***@h/db and https://h/x"
        );
        assert_eq!(redact_secrets("postgres://u@h/db"), "postgres://u@h/db");
        // A NATS user without a password is a token.
        assert_eq!(
            redact_secrets("at nats://t0ken@h:4222,tls://t0ken@g"),
            "at nats://***@h:4222,tls://***@g"
        );
        assert_eq!(percent_decode("p%40ss%2"), "p@ss%2");
        assert_eq!(
            redact_secrets("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact_secrets("host=h password='s3 cret' user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn secrets_in_odd_places_are_masked_too() {
        for (text, secret) in [
            ("postgres://u:pa ss,word@h:5432/db failed", "pa ss,word"),
            ("at postgres://u:a,b@h/db", "a,b"),
            ("host=h password = s3cret user=u", "s3cret"),
            ("host=h PASSWORD=s3cret", "s3cret"),
            ("host=h Password = 'two words' user=u", "two words"),
            ("for url (http://api/x?api_key=s3cret&b=1)", "s3cret"),
            ("https://h/p?a=1&access_token=s3cret#f", "s3cret"),
            ("https://h/p?Signature=s3cret", "s3cret"),
            ("redis://:s3cret@h:6379", "s3cret"),
            ("nats://t0ken@h:4222", "t0ken"),
            ("postgres://u:pa(ss)'x@h/db", "pa(ss)'x"),
            ("(see postgres://u:s3cret@h)", "s3cret"),
            (r"host=h password='ab\'cd' user=u", "cd"),
        ] {
            let shown = redact_secrets(text);
            assert!(!shown.contains(secret), "{text:?} → {shown:?}");
            assert!(shown.contains("***"), "{text:?} → {shown:?}");
        }
        // What is not a secret stays readable.
        assert_eq!(
            redact_secrets("https://h/p?page=2&limit=10"),
            "https://h/p?page=2&limit=10"
        );
        assert_eq!(
            redact_secrets("postgres://u:p@h/db?sslmode=require"),
            "postgres://u:***@h/db?sslmode=require"
        );
        assert_eq!(
            redact_secrets("http://api/x?api_key=abc&b=1"),
            "http://api/x?api_key=***&b=1"
        );
    }

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration(" 1h ").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn every_problem_of_a_section_is_reported() {
        let table: Table = toml::from_str(
            r#"
            batch_size = 0
            poll_interval = "fast"
            lease = "30s"
            extra = 1
            on_success = "archive"
            "#,
        )
        .unwrap();
        let mut issues = Vec::new();
        let mut s = Section::new(
            "worker",
            &table,
            &["batch_size", "poll_interval", "lease", "on_success"],
            &mut issues,
        );
        assert_eq!(s.int("batch_size", 1, 10_000, 100), 100);
        s.duration(
            "poll_interval",
            Duration::from_millis(10),
            Duration::from_secs(1),
        );
        assert_eq!(
            s.duration("lease", Duration::from_secs(1), Duration::ZERO),
            Duration::from_secs(30)
        );
        s.choice("on_success", &["mark", "delete"], "mark");
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "worker.extra",
                "worker.batch_size",
                "worker.poll_interval",
                "worker.on_success"
            ]
        );
    }

    #[test]
    fn strings_from_the_environment_are_typed_on_read() {
        let table: Table = toml::from_str("n = \"42\"\nb = \"true\"").unwrap();
        let mut issues = Vec::new();
        let mut s = Section::new("x", &table, &["n", "b"], &mut issues);
        assert_eq!(s.int("n", 0, 100, 0), 42);
        assert!(s.boolean("b", false));
        assert!(issues.is_empty());
    }
}
