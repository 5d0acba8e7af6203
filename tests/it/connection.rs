//! Connection strings, the libpq environment, and TLS through rustls.

use std::path::Path;

use crate::support::{
    fresh_db, mirror_table_names, pgmirror, pgmirror_with_env, server_certificate, temp_dir, TestDb,
    TLS_ONLY_ROLE,
};

const PASSWORD: &str = "c0rrect-h0rse";

fn tcp_role(db: &TestDb, role: &str) -> String {
    db.execute(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN \
           CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'; END IF; END $$; \
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
    ));
    db.scalar("SELECT current_setting('port')")
}

fn export_to(dir: &Path, source: &str) -> std::process::Output {
    let output = dir.join("tls.db");
    pgmirror(&[
        "export",
        "--quiet",
        "--source",
        source,
        "--output",
        output.to_str().unwrap(),
    ])
}

#[test]
fn libpq_environment_fills_an_empty_source() {
    let db = fresh_db("env_source");
    db.execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2)");
    let port = tcp_role(&db, "env_user");
    let dir = temp_dir();
    let output = dir.path().join("env.db");
    let result = pgmirror_with_env(
        &["export", "--quiet", "--output", output.to_str().unwrap()],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port),
            ("PGUSER", "env_user"),
            ("PGPASSWORD", PASSWORD),
            ("PGDATABASE", "env_source"),
            ("PGSSLMODE", "disable"),
        ],
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(!stderr.contains(PASSWORD));
    assert_eq!(mirror_table_names(&output), vec!["t"]);
}

#[test]
fn tls_require_and_verify_full_work_and_verification_fails_closed() {
    let Some(certificate) = server_certificate() else {
        eprintln!("\n!!!!! PGMIRROR_TEST_URL is set: the TLS test needs the harness's own cluster and did NOT run !!!!!\n");
        return;
    };
    let db = fresh_db("tls");
    db.execute("CREATE TABLE secret (a text); INSERT INTO secret VALUES ('over tls')");
    let port = tcp_role(&db, TLS_ONLY_ROLE);
    let dir = temp_dir();
    let url =
        |host: &str, query: &str| format!("postgres://{TLS_ONLY_ROLE}:{PASSWORD}@{host}:{port}/tls?{query}");
    let root = format!("sslrootcert={}", certificate.display());

    // The role is rejected without TLS, so a success below proves the connection was encrypted.
    let plain = export_to(dir.path(), &url("127.0.0.1", "sslmode=disable"));
    assert_eq!(plain.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("no encryption"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );

    for query in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-full&{root}"),
    ] {
        let result = export_to(dir.path(), &url("localhost", &query));
        assert!(
            result.status.success(),
            "{query}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert_eq!(mirror_table_names(&dir.path().join("tls.db")), vec!["secret"]);
    }

    // The certificate names localhost, not 127.0.0.1; and without the root it is unknown.
    for (host, query) in [
        ("127.0.0.1", format!("sslmode=verify-full&{root}")),
        ("localhost", "sslmode=verify-full".to_owned()),
    ] {
        std::fs::remove_file(dir.path().join("tls.db")).ok();
        let result = export_to(dir.path(), &url(host, &query));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{host} {query}: {stderr}");
        assert!(stderr.contains("certificate"), "{stderr}");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
        assert!(!dir.path().join("tls.db").exists());
    }
}
