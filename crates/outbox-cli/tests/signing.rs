//! Signed webhooks: `outbox run` signs each request of an HTTP sink with `signing`, and the
//! Standard Webhooks project's own verifier (its Python package, installed by
//! scripts/python-tools) accepts every request under each secret of a rotation — and
//! refuses them under another secret.

use outbox_testkit::*;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_dGhlIG5ldyBzZWNyZXQgb2YgdGhlIHJvdGF0aW9u";
const OTHER: &str = "whsec_c29tZWJvZHkgZWxzZSdzIHNlY3JldCBrZXk=";

/// Whether the reference verifier accepts `body` with `headers` under `secret`.
fn verifies(secret: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<(), String> {
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, headers = sys.argv[1], json.loads(sys.argv[2])
Webhook(secret).verify(sys.stdin.buffer.read(), headers)
"#;
    let mut child = Command::new("python3")
        .env("PYTHONPATH", python_path())
        .args([
            "-c",
            script,
            secret,
            &serde_json::Value::Object(headers).to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_verifies_under_each_secret_of_a_rotation() {
    assert!(
        python_path().join("standardwebhooks").is_dir(),
        "run scripts/python-tools first (scripts/test does)"
    );
    let db = TestDb::with_policies(&[(KEY, 3, 100)]).await;
    let c = db.client().await;
    // The first attempt of `retried` fails: its second request is signed anew.
    let server = TestServer::start(|seen, earlier| match seen.id().as_str() {
        "retried" if earlier == 0 => Reply::status(503),
        _ => Reply::status(200),
    })
    .await;
    let config = http_config(&db.url, &server.url("/hook"), &[KEY], "").replace(
        "timeout = \"5s\"",
        "timeout = \"5s\"\nsigning = { scheme = \"standard-webhooks\", secret = [\"${OLD_SECRET}\", \"${NEW_SECRET}\"] }",
    );
    let mut worker =
        WorkerProcess::start_with(&config, &[], &[("OLD_SECRET", OLD), ("NEW_SECRET", NEW)]);
    worker.wait_started().await;
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload", "headers")
           VALUES ('signed', 'PasswordUserLoggedInEvent', 'auth.login.success', 'user-1', $1, '{"ip": "10.0.0.1", "note": "ü"}',
                   '{"webhook-signature": "v1,forged"}')"#,
        &[&KEY],
    )
    .await
    .unwrap();
    insert_event(&c, "retried", KEY).await;
    wait_status(&c, "signed", "SENT", Duration::from_secs(30)).await;
    wait_status(&c, "retried", "SENT", Duration::from_secs(30)).await;
    worker.stop().await;
    assert!(!worker.logs().contains("MfKQ9r8"), "a secret was logged");

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        let id = r.header("webhook-id").unwrap();
        assert_eq!(
            Some(id),
            r.header("idempotency-key"),
            "webhook-id is the event id"
        );
        let headers = [
            ("webhook-id", id),
            ("webhook-timestamp", r.header("webhook-timestamp").unwrap()),
            ("webhook-signature", r.header("webhook-signature").unwrap()),
        ];
        assert_eq!(headers[2].1.split(' ').count(), 2, "{headers:?}");
        for secret in [OLD, NEW] {
            verifies(secret, &r.raw, &headers)
                .unwrap_or_else(|e| panic!("{id} under {secret}: {e}"));
        }
        assert!(
            verifies(OTHER, &r.raw, &headers).is_err(),
            "another secret is refused"
        );
        let mut tampered = r.raw.clone();
        tampered.push(b' ');
        assert!(
            verifies(OLD, &tampered, &headers).is_err(),
            "a changed body is refused"
        );
    }
}
