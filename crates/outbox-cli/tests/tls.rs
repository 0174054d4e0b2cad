//! TLS to PostgreSQL with libpq's `sslmode`s, against a private cluster whose certificate a
//! throwaway CA issued for `localhost` only.

use outbox_testkit::*;
use std::time::Duration;

const KEY: &str = "audit.record-auth-log";

/// The first line of `outbox doctor` with `url`, and its exit code.
fn reachability(config: &std::path::Path, url: &str) -> (String, Option<i32>) {
    let out = outbox(&[
        "--config",
        config.to_str().unwrap(),
        "--database-url",
        url,
        "doctor",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (
        text.lines().next().unwrap_or_default().to_string(),
        out.status.code(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_encrypt_and_check_the_server_as_libpq_does() {
    let (cluster, ca) = PrivateCluster::start_with_tls();
    let db = TestDb::on(&cluster.url("postgres"), &cluster.base()).await;
    let ca = ca.display().to_string();
    let name = db.name.clone();
    let at = |host: &str, query: &str| {
        format!("postgres://postgres@{host}:{}/{name}?{query}", cluster.port)
    };
    let dir = TempDir::new();
    let config = dir.write(
        "outbox.toml",
        &sink_config(&db.url, &[KEY], "", "type = \"blackhole\""),
    );

    // verify-full: the CA and the name (the certificate is for localhost).
    let full = at(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let (line, _) = reachability(&config, &full);
    assert!(
        line.contains("over TLSv1.3 (server certificate and host name verified)"),
        "{line}"
    );
    let (line, code) = reachability(
        &config,
        &at(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
    );
    assert_eq!(code, Some(20), "{line}");
    assert!(line.contains("not valid for name \"127.0.0.1\""), "{line}");
    // verify-ca: the CA only.
    let (line, _) = reachability(
        &config,
        &at("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
    );
    assert!(
        line.contains("(server certificate verified, host name not checked)"),
        "{line}"
    );
    // verify-full without the CA's file: the public roots do not know this CA.
    let (line, code) = reachability(&config, &at("localhost", "sslmode=verify-full"));
    assert_eq!(code, Some(20), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
    assert!(line.contains("sslrootcert"), "{line}");
    // require / the default (prefer): encrypted, not checked. disable: plain.
    for query in ["sslmode=require", ""] {
        let (line, _) = reachability(&config, &at("127.0.0.1", query));
        assert!(
            line.contains("over TLSv1.3 (server certificate not verified"),
            "{query}: {line}"
        );
    }
    let (line, _) = reachability(&config, &at("127.0.0.1", "sslmode=disable"));
    assert!(line.contains("without TLS (sslmode=disable)"), "{line}");

    // The worker, verify-full: migrations, LISTEN and deliveries all over TLS.
    let config_text = sink_config(&full, &[KEY], "", "type = \"blackhole\"");
    let cfg = dir.write("full.toml", &config_text);
    let out = outbox(&["--config", cfg.to_str().unwrap(), "migrate", "deploy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = db.client().await;
    insert_policy(&c, KEY, 3, 100, 1000).await;
    let mut worker = WorkerProcess::start(&config_text);
    worker.wait_started().await;
    insert_many(&c, "tls", KEY, 50).await;
    wait_for("50 SENT", Duration::from_secs(30), || async {
        count_status(&c, "SENT").await == 50
    })
    .await;
    let (all, encrypted): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE s.ssl)
                   FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                  WHERE a.application_name = 'outbox'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(all >= 2, "the pool and the listener: {all}");
    assert_eq!(encrypted, all, "every worker connection is encrypted");
    worker.stop().await;
}
