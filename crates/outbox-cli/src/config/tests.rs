use super::*;

const GOOD: &str = r#"
[database]
url = "postgres://postgres@127.0.0.1:5432/reserve_manage"

[worker]
batch_size = 50
poll_interval = "250ms"

[routes]
"audit.record-auth-log" = { sink = "audit-api" }

[sinks.audit-api]
type = "http"
url = "http://127.0.0.1:8081/audit/auth-logs"
timeout = "5s"
headers = { Authorization = "Bearer ${AUDIT_TOKEN}" }
"#;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn check(text: &str, e: &Env) -> Result<Config, ConfigError> {
    parse(text, None, "test.toml", &LoadOptions::default(), e)
}

fn issues(text: &str, e: &Env) -> Vec<String> {
    check(text, e)
        .expect_err("config should be rejected")
        .issues
}

fn http(c: &SinkConfig) -> &outbox_sinks::http::HttpSinkConfig {
    c.settings()
        .unwrap_or_else(|| panic!("an HTTP sink expected: {c:?}"))
}

#[test]
fn a_good_file_loads_with_defaults_and_expanded_secrets() {
    let c = check(GOOD, &env(&[("AUDIT_TOKEN", "s3cret")])).unwrap();
    assert_eq!(
        c.database.url.as_deref(),
        Some("postgres://postgres@127.0.0.1:5432/reserve_manage")
    );
    assert_eq!(c.database.schema, "public");
    assert_eq!(c.worker.batch_size, 50);
    assert_eq!(c.worker.concurrency, 128);
    assert_eq!(c.worker.poll_interval, Duration::from_millis(250));
    assert_eq!(c.worker.lease, Duration::from_secs(30));
    assert_eq!(c.routes.get("audit.record-auth-log").unwrap(), "audit-api");
    let h = http(&c.sinks["audit-api"]);
    assert_eq!(h.headers.get("Authorization").unwrap(), "Bearer s3cret");
    assert!(c.warnings.is_empty());
}

#[test]
fn a_missing_variable_names_the_key_and_the_variable() {
    let found = issues(GOOD, &env(&[]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "sinks.audit-api.headers.Authorization: environment variable AUDIT_TOKEN is not set"
        ),
        "{}",
        found[0]
    );
}

#[test]
fn defaults_and_dollar_escapes_expand() {
    let e = env(&[("A", "1")]);
    assert_eq!(expand_str("x${A}y", &e).unwrap(), "x1y");
    assert_eq!(expand_str("${B:-two}", &e).unwrap(), "two");
    assert_eq!(
        expand_str("cost $$5 and $HOME", &e).unwrap(),
        "cost $5 and $HOME"
    );
    assert!(expand_str("${A", &e).is_err());
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[database]
url = "postgres://x"
shema = "public"

[worker]
batch_size = 0
lease = "soon"
on_success = "archive"

[routes]
"a" = { sink = "missing" }
"b" = "api"

[sinks.api]
type = "http"
url = "ftp://nowhere"

[sinks.q]
type = "sqs"

[extra]
"#;
    let found = issues(text, &env(&[]));
    let joined = found.join("\n");
    for key in [
        "extra: unknown key",
        "database.shema: unknown key",
        "worker.batch_size: 0 is out of range",
        "worker.lease: 'soon'",
        "worker.on_success: 'archive' is not one of: mark, delete",
        "routes.\"a\".sink: sink 'missing' is not defined; defined sinks: api, q",
        "routes.\"b\": expected a table such as { sink = \"audit-api\" }",
        "sinks.api.url: scheme 'ftp' is not supported",
        "sinks.q.type: unknown sink type 'sqs'; use one of: amqp, blackhole, http, kafka, mqtt, nats, redis",
    ] {
        assert!(joined.contains(key), "missing {key:?} in:\n{joined}");
    }
    assert_eq!(found.len(), 9, "{joined}");
}

#[test]
fn a_sink_timeout_must_fit_in_the_part_of_the_lease_deliveries_get() {
    let e = env(&[("AUDIT_TOKEN", "t")]);
    // 28 s is under the 30 s lease but over the 27 s a delivery may run.
    let text = GOOD.replace("timeout = \"5s\"", "timeout = \"28s\"");
    let found = issues(&text, &e);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "worker.lease: 30s leaves deliveries 27s (90% of it), less than sinks.audit-api.timeout (28s) used by route 'audit.record-auth-log'; raise worker.lease to at least"
        ),
        "{}",
        found[0]
    );
    let fits = GOOD.replace("timeout = \"5s\"", "timeout = \"27s\"");
    assert!(check(&fits, &e).is_ok());
    // The advice passes the check it comes from.
    let advised = found[0]
        .rsplit("at least ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(advised, "32s");
    let taken = GOOD
        .replace("timeout = \"5s\"", "timeout = \"28s\"")
        .replace("batch_size = 50", &format!("lease = \"{advised}\""));
    assert!(check(&taken, &e).is_ok());
}

#[test]
fn durations_that_would_overflow_are_refused() {
    let e = env(&[("AUDIT_TOKEN", "t")]);
    let text = GOOD.replace(
        "poll_interval = \"250ms\"",
        "lease = \"100000d\"\npoll_interval = \"99999999d\"",
    );
    let found = issues(&text, &e).join("\n");
    assert!(
        found.contains("worker.lease: '100000d' is too long; use at most 3650d"),
        "{found}"
    );
    assert!(
        found.contains("worker.poll_interval: '99999999d' is too long; use at most 3650d"),
        "{found}"
    );
    let text = GOOD.replace("batch_size = 50", "lease = \"2d\"");
    assert!(
        issues(&text, &e)
            .join("\n")
            .contains("worker.lease: 2d is too long; use at most 1d"),
        "{:?}",
        issues(&text, &e)
    );
}

#[test]
fn outbox_variables_override_any_key() {
    let e = env(&[
        ("AUDIT_TOKEN", "t"),
        ("OUTBOX_WORKER__BATCH_SIZE", "200"),
        ("OUTBOX_WORKER__ON_SUCCESS", "delete"),
        ("OUTBOX_SINKS__AUDIT_API__URL", "http://127.0.0.1:9999/x"),
        ("OUTBOX_DATABASE__SCHEMA", "relay"),
        ("OUTBOX_CONFIG", "ignored.toml"),
    ]);
    let c = check(GOOD, &e).unwrap();
    assert_eq!(c.worker.batch_size, 200);
    assert_eq!(c.worker.on_success, OnSuccess::Delete);
    assert_eq!(c.database.schema, "relay");
    assert_eq!(http(&c.sinks["audit-api"]).url, "http://127.0.0.1:9999/x");
}

#[test]
fn a_bad_override_names_its_variable() {
    let e = env(&[
        ("AUDIT_TOKEN", "t"),
        ("OUTBOX_WORKER__CONCURRENCY", "lots"),
        ("OUTBOX_WORKER__BATCHSIZE", "5"),
    ]);
    let found = issues(GOOD, &e);
    assert!(
        found
            .iter()
            .any(|i| i.starts_with("worker.concurrency: expected an integer")
                && i.ends_with("(set by OUTBOX_WORKER__CONCURRENCY)")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|i| i.starts_with("worker.batchsize: unknown key")
                && i.ends_with("(set by OUTBOX_WORKER__BATCHSIZE)")),
        "{found:?}"
    );
}

#[test]
fn database_url_precedence_is_flag_then_outbox_variable_then_database_url_then_file() {
    let base = [
        ("AUDIT_TOKEN", "t"),
        ("DATABASE_URL", "postgres://from-database-url"),
    ];
    let c = check(GOOD, &env(&base)).unwrap();
    assert_eq!(
        c.database.url.as_deref(),
        Some("postgres://from-database-url")
    );
    let mut with_outbox = base.to_vec();
    with_outbox.push(("OUTBOX_DATABASE__URL", "postgres://from-outbox"));
    let c = check(GOOD, &env(&with_outbox)).unwrap();
    assert_eq!(c.database.url.as_deref(), Some("postgres://from-outbox"));
    let opts = LoadOptions {
        config: None,
        database_url: Some("postgres://from-flag".into()),
    };
    let c = parse(GOOD, None, "t", &opts, &env(&with_outbox)).unwrap();
    assert_eq!(c.database.url.as_deref(), Some("postgres://from-flag"));
}

#[test]
fn toml_syntax_errors_are_one_issue_with_the_line() {
    let found = issues("[worker\nbatch_size = 1", &env(&[]));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("not valid TOML"), "{}", found[0]);
    assert!(found[0].contains("line 1"), "{}", found[0]);
}

#[test]
fn unused_sinks_are_warnings() {
    let text = format!("{GOOD}\n[sinks.spare]\ntype = \"blackhole\"\n");
    let c = check(&text, &env(&[("AUDIT_TOKEN", "t")])).unwrap();
    assert_eq!(
        c.warnings,
        vec!["sinks.spare is not used by any route".to_string()]
    );
}

#[test]
fn env_files_hold_comments_quotes_and_exports() {
    let dir = std::env::temp_dir().join(format!("outbox-envfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(".env.local");
    std::fs::write(
        &path,
        "# local settings\nDATABASE_URL=postgres://postgres@127.0.0.1/reserve_manage\nexport AUDIT_TOKEN=\"a b\"\nEMPTY=\nPLAIN=x # note\n\n",
    )
    .unwrap();
    let mut e = env(&[("AUDIT_TOKEN", "old")]);
    e.load_file(&path).unwrap();
    assert_eq!(
        e.get("DATABASE_URL"),
        Some("postgres://postgres@127.0.0.1/reserve_manage")
    );
    assert_eq!(e.get("AUDIT_TOKEN"), Some("a b"));
    assert_eq!(e.get("EMPTY"), Some(""));
    assert_eq!(e.get("PLAIN"), Some("x"));
    std::fs::write(&path, "NOT A LINE\n").unwrap();
    let err = e.load_file(&path).unwrap_err();
    assert!(err.contains(".env.local:1: expected KEY=VALUE"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn app_mode_takes_column_and_table_overrides_and_checks_their_keys() {
    let text = GOOD.replace(
        "[database]\n",
        "[database]\nschema_owner = \"app\"\ncolumns = { eventName = \"evt\", \"OutboxRetryPolicy.maxRetries\" = \"max_tries\", colour = \"x\" }\ntables = { OutboxEvent = \"outbox_events\" }\n",
    );
    let found = issues(&text, &env(&[("AUDIT_TOKEN", "t")]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("database.columns.colour: 'colour' is not a column the worker uses"),
        "{}",
        found[0]
    );
    let c = check(
        &text.replace(", colour = \"x\"", ""),
        &env(&[("AUDIT_TOKEN", "t")]),
    )
    .unwrap();
    assert_eq!(c.database.owner, SchemaOwner::App);
    assert_eq!(
        c.database.overrides.columns.get("eventName").unwrap(),
        "evt"
    );
    assert_eq!(
        c.database.overrides.tables.get("OutboxEvent").unwrap(),
        "outbox_events"
    );
    let worker_mode = GOOD.replace(
        "[database]\n",
        "[database]\ncolumns = { eventName = \"evt\" }\n",
    );
    let found = issues(&worker_mode, &env(&[("AUDIT_TOKEN", "t")]));
    assert!(found[0].starts_with("database.schema_owner: [database.columns] and [database.tables] apply to app-owned tables"), "{found:?}");
}

#[test]
fn the_admin_section_takes_an_address_and_names_a_bad_one() {
    let e = env(&[("AUDIT_TOKEN", "t")]);
    let c = check(
        &format!("{GOOD}\n[admin]\nlisten = \"127.0.0.1:9090\"\n"),
        &e,
    )
    .unwrap();
    let admin = c.admin.unwrap();
    assert_eq!(admin.listen, "127.0.0.1:9090".parse().unwrap());
    assert!(!admin.dashboard && !admin.actions && admin.token.is_none());
    assert_eq!(check(GOOD, &e).unwrap().admin, None, "off when absent");
    let found = issues(&format!("{GOOD}\n[admin]\nlisten = \"9090\"\n"), &e);
    assert!(
        found[0].starts_with("admin.listen: '9090' is not an address:port"),
        "{found:?}"
    );
    let found = issues(&format!("{GOOD}\n[admin]\nport = 9090\n"), &e);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("admin.port: unknown key")),
        "{found:?}"
    );
}

#[test]
fn the_dashboard_needs_a_token_off_loopback_and_for_actions() {
    let e = env(&[
        ("AUDIT_TOKEN", "t"),
        ("ADMIN_TOKEN", "0123456789abcdef0123"),
    ]);
    let admin = |lines: &str| format!("{GOOD}\n[admin]\n{lines}\n");
    let c = check(
        &admin("listen = \"0.0.0.0:9090\"\ndashboard = true\ntoken = \"${ADMIN_TOKEN}\"\nactions = true\nstatement_timeout = \"2s\""),
        &e,
    )
    .unwrap()
    .admin
    .unwrap();
    assert!(c.dashboard && c.actions);
    assert_eq!(c.token.as_deref(), Some("0123456789abcdef0123"));
    assert_eq!(c.statement_timeout, std::time::Duration::from_secs(2));
    let refused = |lines: &str, start: &str| {
        let found = issues(&admin(lines), &e);
        assert!(found.iter().any(|f| f.starts_with(start)), "{found:?}");
    };
    refused(
        "listen = \"0.0.0.0:9090\"\ndashboard = true",
        "admin.token: is required for the dashboard on 0.0.0.0:9090",
    );
    refused(
        "listen = \"127.0.0.1:9090\"\ndashboard = true\nactions = true",
        "admin.actions: needs a token",
    );
    refused(
        "listen = \"127.0.0.1:9090\"\ndashboard = true\ntoken = \"short\"",
        "admin.token: is shorter than 16",
    );
    // On loopback without a token: read-only and allowed.
    assert!(check(&admin("listen = \"127.0.0.1:9090\"\ndashboard = true"), &e).is_ok());
    let found = issues(&format!("{GOOD}\n[admin]\nport = 9090\n"), &e);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("admin.port: unknown key")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with("admin.listen: missing")),
        "{found:?}"
    );
}

#[test]
fn retention_ages_are_optional_durations() {
    let c = check(
        &format!("{GOOD}\n[retention]\nsent = \"7d\"\n"),
        &env(&[("AUDIT_TOKEN", "t")]),
    )
    .unwrap();
    assert_eq!(
        c.worker.retention.sent,
        Some(Duration::from_secs(7 * 86_400))
    );
    assert_eq!(c.worker.retention.failed, None);
    assert_eq!(c.worker.retention.batch_size, 1000);
    let found = issues(
        &format!("{GOOD}\n[retention]\nfailed = \"forever\"\nkeep = 1\n"),
        &env(&[("AUDIT_TOKEN", "t")]),
    );
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn no_config_error_quotes_a_secret() {
    const SECRET: &str = "s3cret-Pa55";
    // A line TOML cannot read, holding a secret; a file that is no config at all.
    for text in [
        format!("[database]\nurl = \"postgres://u:{SECRET}@h/db\nbroken"),
        format!("root:$6${SECRET}:19000:0:99999:7:::\n"),
    ] {
        let found = issues(&text, &env(&[]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].contains(SECRET), "{}", found[0]);
        assert!(found[0].contains("at line "), "{}", found[0]);
    }
    // An unclosed ${ in a value holding a secret.
    let text = GOOD.replace("Bearer ${AUDIT_TOKEN}", &format!("Bearer {SECRET}${{AUDIT"));
    let found = issues(&text, &env(&[]));
    assert!(!found.join("\n").contains(SECRET), "{found:?}");
    assert!(
        found.join("\n").contains("has a '${' without its '}'"),
        "{found:?}"
    );
    // An env file with a line that is not KEY=VALUE, or a bad name.
    let dir = std::env::temp_dir().join(format!("outbox-envsecret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(".env");
    for line in [SECRET.to_string(), format!("{SECRET} x=1")] {
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let err = env(&[]).load_file(&path).unwrap_err();
        assert!(!err.contains(SECRET), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn values_from_outbox_variables_are_taken_as_they_are() {
    // `$$` in a secret set through the environment is not turned into `$`.
    let e = env(&[
        ("AUDIT_TOKEN", "t"),
        (
            "OUTBOX_SINKS__AUDIT_API__URL",
            "http://h/x?k=a$$b${NOT_EXPANDED}",
        ),
    ]);
    let c = check(GOOD, &e).unwrap();
    assert_eq!(
        http(&c.sinks["audit-api"]).url,
        "http://h/x?k=a$$b${NOT_EXPANDED}"
    );
}
