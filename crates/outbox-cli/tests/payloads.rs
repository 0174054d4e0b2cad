//! Payloads pass through byte for byte: numbers beyond f64, long fractions, unicode and
//! escapes, and a 5 MB payload arrive as the database gives them (`payload::text`), in every
//! body format, over HTTP and Redis Streams.

use outbox_testkit::*;
use std::collections::HashMap;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";
const LONG: Duration = Duration::from_secs(60);

/// Payloads that a round trip through f64 (or a re-serialisation) would change.
const TRICKY: &[(&str, &str)] = &[
    (
        "numbers",
        r#"{"a": 1e-30, "b": 0.14285714285714285714, "c": 123456789012345678901234567890, "d": -0.0, "e": 1.5E+300}"#,
    ),
    (
        "text",
        r#"{"jp": "日本語", "esc": "quote \" backslash \\ tab \t nl \n", "u": "\u00e9\ud83d\ude00", "z": "\u0001"}"#,
    ),
    ("array", r#"[1, 2.50, {"k": null}, true, "x"]"#),
    ("scalar", r#""just a string""#),
];

/// Inserts the tricky payloads and a 5 MB one; returns id → the text PostgreSQL gives for
/// each payload.
async fn insert_payloads(c: &Client) -> HashMap<String, String> {
    for (id, json) in TRICKY {
        c.execute(
            r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
               VALUES ($1, 'E', 't', 'a', $2, $3::text::jsonb)"#,
            &[id, &KEY, json],
        )
        .await
        .unwrap();
    }
    c.execute(
        r#"INSERT INTO "OutboxEvent" ("id", "eventName", "eventType", "aggregateId", "routingKey", "payload")
           VALUES ('big', 'E', 't', 'a', $1, jsonb_build_object('blob', repeat('x', 5 * 1024 * 1024), 'n', 0.1000000000000000055511151231257827))"#,
        &[&KEY],
    )
    .await
    .unwrap();
    c.query(r#"SELECT "id", "payload"::text FROM "OutboxEvent""#, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_reach_an_http_destination_byte_for_byte_in_every_format() {
    for format in ["envelope", "payload", "cloudevents"] {
        let db = TestDb::with_policies(&[(KEY, 2, 50)]).await;
        let c = db.client().await;
        let stored = insert_payloads(&c).await;
        let server = TestServer::always(200).await;
        let config = http_config(&db.url, &server.url("/"), &[KEY], "").replace(
            "timeout = \"5s\"",
            &format!("timeout = \"5s\"\nformat = \"{format}\""),
        );
        let mut worker = WorkerProcess::start(&config);
        wait_for("every payload delivered", LONG, || async {
            count_status(&c, "SENT").await == stored.len() as i64
        })
        .await;
        worker.stop().await;
        for (id, text) in &stored {
            let raw = String::from_utf8(server.requests_for(id)[0].raw.clone()).unwrap();
            let ok = match format {
                "payload" => raw == *text,
                "envelope" => raw.ends_with(&format!("\"payload\":{text}}}")),
                _ => raw.ends_with(&format!("\"data\":{text}}}")),
            };
            assert!(
                ok,
                "{format} {id}: stored {} bytes, received {} bytes: {}",
                text.len(),
                raw.len(),
                &raw[..raw.len().min(400)]
            );
        }
        // The operator commands show them as stored too.
        if format == "envelope" {
            for args in [
                &["events", "show", "numbers", "--format", "json"][..],
                &["events", "list", "--format", "json"],
            ] {
                let mut all = vec!["--database-url", db.url.as_str()];
                all.extend_from_slice(args);
                let out = outbox(&all);
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{args:?}: {out:?}");
                assert!(
                    text.contains(&format!("\"payload\":{}", stored["numbers"])),
                    "{args:?}: {text}"
                );
            }
            let out = outbox(&["--database-url", &db.url, "events", "show", "numbers"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains(&format!("payload: {}", stored["numbers"])),
                "{text}"
            );
        }
        // And f64 really would have changed them.
        let numbers = &stored["numbers"];
        assert!(numbers.contains("0.14285714285714285714"), "{numbers}");
        assert!(
            numbers.contains("123456789012345678901234567890"),
            "{numbers}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_reach_a_redis_stream_byte_for_byte() {
    let db = TestDb::with_policies(&[(KEY, 2, 50)]).await;
    let c = db.client().await;
    let stored = insert_payloads(&c).await;
    let stream = format!("outbox-payloads-{:x}", rand::random::<u64>());
    let sink = format!(
        "type = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nstream = \"{stream}\"\nformat = \"payload\""
    );
    let mut worker = WorkerProcess::start(&sink_config(&db.url, &[KEY], "", &sink));
    wait_for("every payload delivered", LONG, || async {
        count_status(&c, "SENT").await == stored.len() as i64
    })
    .await;
    worker.stop().await;
    let mut conn = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), stored.len());
    for (_, fields) in entries {
        let id = String::from_utf8(fields["id"].clone()).unwrap();
        let body = String::from_utf8(fields["body"].clone()).unwrap();
        assert!(
            body == stored[&id],
            "{id}: {} bytes, stored {}",
            body.len(),
            stored[&id].len()
        );
    }
}
