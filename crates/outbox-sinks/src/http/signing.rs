//! Signed webhooks, as the Standard Webhooks specification defines them: each request
//! carries `webhook-id` (the event id, the same on every attempt), `webhook-timestamp` (Unix
//! seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
//! `id.timestamp.body` under each secret, space-separated, so a receiver rotating its
//! secret accepts either.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use outbox_core::conf::Section;
use sha2::Sha256;

/// The secrets' prefix in Standard Webhooks' own form (`whsec_` + base64).
const PREFIX: &str = "whsec_";

/// A signing key; its bytes are never printed.
#[derive(Clone)]
struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("whsec_(redacted)")
    }
}

/// `signing = { scheme = "standard-webhooks", secret = "whsec_…" }` (or `secret = [ … ]`
/// while rotating).
#[derive(Debug, Clone)]
pub struct Signing {
    keys: Vec<Key>,
}

/// The secret's bytes: `whsec_` + base64 (the prefix may be left out).
fn decode(secret: &str) -> Result<Vec<u8>, String> {
    let text = secret.trim();
    let text = text.strip_prefix(PREFIX).unwrap_or(text);
    let bytes = STANDARD
        .decode(text)
        .map_err(|_| "is not a Standard Webhooks secret: write whsec_ followed by base64 (e.g. from `openssl rand -base64 32`)".to_string())?;
    if bytes.len() < 16 {
        return Err(format!(
            "is {} bytes long once decoded; use at least 16 (24 to 64 recommended)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

impl Signing {
    /// Reads the `signing` table of an HTTP sink; problems are recorded, never a secret.
    pub fn read(s: &mut Section<'_>) -> Option<Signing> {
        let before = s.issue_count();
        s.sub("signing", |t| {
            t.choice("scheme", &["standard-webhooks"], "standard-webhooks");
            let secrets: Vec<String> = match t.value("secret") {
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                Some(_) => t.string("secret").into_iter().collect(),
                None => {
                    t.issue("secret", "missing; add `secret = \"${WEBHOOK_SECRET}\"` (whsec_ + base64), or a list while rotating");
                    Vec::new()
                }
            };
            if matches!(t.value("secret"), Some(toml::Value::Array(a)) if a.is_empty() || a.len() != secrets.len())
            {
                t.issue("secret", "expected one secret or a non-empty list of secrets (strings)");
            }
            let mut keys = Vec::new();
            for (i, secret) in secrets.iter().enumerate() {
                match decode(secret) {
                    Ok(k) => keys.push(Key(k)),
                    Err(e) if secrets.len() > 1 => t.issue(&format!("secret[{i}]"), e),
                    Err(e) => t.issue("secret", e),
                }
            }
            keys
        })
        .filter(|keys| !keys.is_empty() && s.issue_count() == before)
        .map(|keys| Signing { keys })
    }

    /// The three headers for `body` of event `id` sent at `timestamp` (Unix seconds).
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
        let signatures: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(&k.0).expect("HMAC takes any key length");
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
            })
            .collect();
        [
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signatures.join(" ")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Option<Signing>, Vec<String>) {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut issues = Vec::new();
        let mut s = Section::open("sinks.s", &table, &mut issues);
        let out = Signing::read(&mut s);
        s.finish();
        (out, issues.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        let (s, issues) = read(
            r#"signing = { scheme = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }"#,
        );
        assert!(issues.is_empty(), "{issues:?}");
        let s = s.unwrap();
        assert!(!format!("{s:?}").contains("MfKQ"), "{s:?}");
        let (s, issues) = read(r#"signing = { secret = "whsec_c2hvcnQ=" }"#);
        assert!(s.is_none());
        assert!(issues[0].contains("use at least 16"), "{issues:?}");
        assert!(!issues[0].contains("c2hvcnQ"), "{issues:?}");
        let (_, issues) = read(r#"signing = { scheme = "hmac", secret = "not base64!" }"#);
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("sinks.s.signing.scheme")),
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.contains("whsec_ followed by base64")),
            "{issues:?}"
        );
        let (_, issues) =
            read(r#"signing = { secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", algo = "x" }"#);
        assert!(
            issues[0].starts_with("sinks.s.signing.algo: unknown key"),
            "{issues:?}"
        );
    }

    #[test]
    fn each_secret_signs_id_timestamp_and_body() {
        let (s, _) = read(
            r#"signing = { secret = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] }"#,
        );
        let [id, ts, sig] = s.unwrap().headers(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(id.1, "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(ts.1, "1614265330");
        let sigs: Vec<&str> = sig.1.split(' ').collect();
        assert_eq!(sigs.len(), 2);
        // The specification's own example (the first secret, this id, timestamp and body).
        assert_eq!(sigs[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
