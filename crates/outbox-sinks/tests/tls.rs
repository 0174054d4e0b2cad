//! TLS to brokers: a private CA's server on a free port for each broker (Redis, Mosquitto,
//! NATS), reached with `ca_file` and refused without it.

use outbox_core::{Outcome, Sink};
use outbox_testkit::{build_sink, claimed_event, LocalServer, TestCa};
use std::sync::Arc;
use std::time::Duration;

/// A server of the test's own, and the CA that issued its certificate.
fn server(name: &str) -> (LocalServer, TestCa) {
    let server = LocalServer::prepare(&format!("{name}-tls"));
    let ca = TestCa::new(&server.dir, "DNS:localhost,IP:127.0.0.1");
    (server, ca)
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Delivers until the server has come up (it may take a moment to listen).
async fn deliver_when_up(sink: &Arc<dyn Sink>) -> Outcome {
    let mut outcome = Outcome::retry("not tried");
    for i in 0..60 {
        outcome = sink.deliver(&claimed_event(&format!("up-{i}"))).await;
        if outcome == Outcome::Delivered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outcome
}

fn assert_refused(outcome: Outcome) {
    match outcome {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("cannot connect"), "{reason}");
            // The cause is named: the certificate, not just "connection failed".
            let lower = reason.to_ascii_lowercase();
            assert!(
                lower.contains("certificate") || lower.contains("unknownissuer"),
                "{reason}"
            );
        }
        other => panic!("a server whose CA is not trusted is refused: {other:?}"),
    }
}

#[tokio::test]
async fn http_names_why_it_could_not_connect() {
    let (mut server, files) = server("https");
    let (cert, key) = (path(&files.cert), path(&files.key));
    let port = server.port.to_string();
    server.spawn(
        "openssl",
        &[
            "s_server", "-quiet", "-accept", &port, "-cert", &cert, "-key", &key, "-www",
        ],
    );
    let sink = build_sink(&format!(
        "type = \"http\"\nurl = \"https://127.0.0.1:{port}/x?api_key=k3y\"\ntimeout = \"2s\""
    ));
    let mut reason = String::new();
    for i in 0..60 {
        match sink.deliver(&claimed_event(&format!("t-{i}"))).await {
            Outcome::Retry { reason: r, .. } if r.contains("refused") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Outcome::Retry { reason: r, .. } => {
                reason = r;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(reason.contains("invalid peer certificate"), "{reason}");
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    assert!(!reason.contains("k3y"), "{reason}");
    drop(server);
    let refused = build_sink("type = \"http\"\nurl = \"http://127.0.0.1:1/x\"\ntimeout = \"2s\"");
    match refused.deliver(&claimed_event("r-1")).await {
        Outcome::Retry { reason, .. } => {
            assert!(reason.contains("Connection refused"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn redis_over_tls_with_a_private_ca() {
    let (mut server, files) = server("redis");
    let (cert, key, ca) = (path(&files.cert), path(&files.key), path(&files.ca));
    let port = server.port.to_string();
    server.spawn(
        "redis-server",
        &[
            "--port",
            "0",
            "--tls-port",
            &port,
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{port}");
    let trusted = build_sink(&format!(
        "type = \"redis\"\nurl = \"{url}\"\nca_file = \"{ca}\"\nstream = \"s\"\ntimeout = \"1s\""
    ));
    assert_eq!(deliver_when_up(&trusted).await, Outcome::Delivered);
    let untrusted = build_sink(&format!(
        "type = \"redis\"\nurl = \"{url}\"\nstream = \"s\"\ntimeout = \"1s\""
    ));
    assert_refused(untrusted.deliver(&claimed_event("u-1")).await);
}

#[tokio::test]
async fn mqtt_over_tls_with_a_private_ca() {
    let (mut server, files) = server("mqtt");
    let conf = server.file("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n",
            server.port,
            path(&files.ca),
            path(&files.cert),
            path(&files.key)
        ),
    )
    .unwrap();
    server.spawn("mosquitto", &["-c", &conf]);
    let url = format!("mqtts://127.0.0.1:{}", server.port);
    let ca = path(&files.ca);
    let trusted = build_sink(&format!(
        "type = \"mqtt\"\nurl = \"{url}\"\nca_file = \"{ca}\"\ntopic = \"t/x\"\ntimeout = \"1s\""
    ));
    assert_eq!(deliver_when_up(&trusted).await, Outcome::Delivered);
    let untrusted = build_sink(&format!(
        "type = \"mqtt\"\nurl = \"{url}\"\ntopic = \"t/x\"\ntimeout = \"1s\""
    ));
    assert_refused(untrusted.deliver(&claimed_event("u-1")).await);
}

#[tokio::test]
async fn nats_over_tls_with_a_private_ca() {
    let (mut server, files) = server("nats");
    let port = server.port.to_string();
    let store = server.file("js");
    let (cert, key, ca) = (path(&files.cert), path(&files.key), path(&files.ca));
    server.spawn(
        "nats-server",
        &[
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "-js",
            "-sd",
            &store,
            "--tls",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
        ],
    );
    // A stream for the subject, made over TLS too.
    let mut client = None;
    for _ in 0..60 {
        let options = async_nats::ConnectOptions::new()
            .add_root_certificates(files.ca.clone())
            .require_tls(true);
        if let Ok(c) = options.connect(format!("tls://127.0.0.1:{port}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let js = async_nats::jetstream::new(client.expect("the TLS nats-server comes up"));
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "TLS".into(),
        subjects: vec!["tls.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("tls://127.0.0.1:{port}");
    let trusted = build_sink(&format!(
        "type = \"nats\"\nurl = \"{url}\"\nca_file = \"{ca}\"\nsubject = \"tls.x\"\ntimeout = \"1s\""
    ));
    assert_eq!(
        trusted.deliver(&claimed_event("t-1")).await,
        Outcome::Delivered
    );
    let untrusted = build_sink(&format!(
        "type = \"nats\"\nurl = \"{url}\"\nsubject = \"tls.x\"\ntimeout = \"1s\""
    ));
    assert_refused(untrusted.deliver(&claimed_event("u-1")).await);
}
