//! A mirror answers plain SQL as PostgreSQL does where its types meet SQLite's storage
//! classes (issue 10, mirror format 3), and still restores exactly: fixtures/queryable.sql.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::types::ValueRef;

use crate::support::{
    assert_ok, csv_export, export, fixtures_dir, fresh_db, open_mirror, pgmirror, restore, table_digests,
    temp_dir, try_csv_export, TestDb,
};

fn queryable_source(name: &str) -> TestDb {
    let db = fresh_db(name);
    db.psql_file(&fixtures_dir().join("queryable.sql"));
    db
}

/// One cell of a query's answer, compared across the two databases: numbers as the double
/// they are nearest to (PostgreSQL's exact decimals included), everything else as text.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Null,
    Number(f64),
    Text(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Null => write!(f, "NULL"),
            Answer::Number(n) => write!(f, "{n:?}"),
            Answer::Text(t) => write!(f, "{t}"),
        }
    }
}

fn answer_of_text(text: &str) -> Answer {
    // money prints as `-$1,234.56` in the C locale.
    let unmoneyed = text.replacen('$', "", 1).replace(',', "");
    let number_like = if text.contains('$') { &unmoneyed } else { text };
    match number_like.parse::<f64>() {
        Ok(n) if !n.is_nan() => Answer::Number(n),
        _ => Answer::Text(text.to_owned()),
    }
}

fn answer_of_cell(value: ValueRef<'_>) -> Answer {
    match value {
        ValueRef::Null => Answer::Null,
        ValueRef::Integer(i) => Answer::Number(i as f64),
        ValueRef::Real(f) => Answer::Number(f),
        ValueRef::Text(t) => answer_of_text(&String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => Answer::Text(format!("blob of {} bytes", b.len())),
    }
}

fn ask_postgres(db: &TestDb, sql: &str) -> Vec<Vec<Answer>> {
    db.query(sql)
        .into_iter()
        .map(|row| {
            row.iter()
                .map(|cell| cell.as_deref().map_or(Answer::Null, answer_of_text))
                .collect()
        })
        .collect()
}

fn ask_sqlite(conn: &rusqlite::Connection, sql: &str) -> Vec<Vec<Answer>> {
    let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns = statement.column_count();
    let mut rows = statement.query([]).unwrap();
    let mut answers = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        answers.push(
            (0..columns)
                .map(|i| answer_of_cell(row.get_ref(i).unwrap()))
                .collect(),
        );
    }
    answers
}

/// Numeric-like columns of `ledger`, with the expression that gives each as numeric in
/// PostgreSQL (money has no abs()) and the text a user would write for a value.
const NUMBER_COLUMNS: [&str; 7] = ["price", "amount", "huge", "hundreds", "ratio", "measure", "cash"];
const TEXT_COLUMNS: [&str; 5] = ["addr", "net", "mac", "day", "at"];

/// A query whose answers must agree, and how: exactly, or (sums) within double precision
/// of the sum of the absolute values.
struct Question {
    sql: String,
    tolerance: Option<f64>,
}

/// The battery: thresholds, order, min/max and sums over every numeric column; equality
/// with every value written as PostgreSQL prints it (money: as its numeric); order and
/// min/max of timestamps. Literals that SQLite itself reads as another double are left out
/// and returned beside (its text-to-float conversion is off by one unit in the last place
/// for some exponents beyond ±200, such as 1e-300).
fn battery(source: &TestDb, sqlite: &rusqlite::Connection) -> (Vec<Question>, Vec<(String, f64)>) {
    let exact = |sql: String| Question { sql, tolerance: None };
    let mut questions = Vec::new();
    let mut misread = Vec::new();
    // Timestamps order and compare as ISO text does (AD years; the README says why BC does not).
    for column in NUMBER_COLUMNS.iter().chain(&["at"]) {
        questions.push(exact(format!(
            "SELECT id FROM ledger WHERE {column} IS NOT NULL ORDER BY {column}, id"
        )));
        questions.push(exact(format!("SELECT min({column}), max({column}) FROM ledger")));
    }
    for column in NUMBER_COLUMNS {
        for (operator, bound) in [(">", "0"), (">", "100"), ("<", "-1")] {
            questions.push(exact(format!(
                "SELECT count(*) FROM ledger WHERE {column} {operator} '{bound}'"
            )));
        }
        // Sums over the finite values (PostgreSQL's NaN and Infinity rules are not SQLite's).
        let finite: Vec<String> = source
            .query(&format!(
                "SELECT id FROM ledger WHERE abs({column}::numeric) < 1e300 ORDER BY id"
            ))
            .into_iter()
            .map(|row| row[0].clone().unwrap())
            .collect();
        let tolerance = if column == "ratio" { 1e-6 } else { 1e-12 };
        questions.push(Question {
            sql: format!(
                "SELECT sum({column}) FROM ledger WHERE id IN ({})",
                finite.join(", ")
            ),
            tolerance: Some(tolerance),
        });
    }
    for column in NUMBER_COLUMNS.iter().chain(&TEXT_COLUMNS) {
        // As PostgreSQL prints it: its output function (`::text` adds /32 to an inet host).
        let printed = if *column == "cash" {
            format!("{column}::numeric")
        } else {
            (*column).to_owned()
        };
        // SQLite reads no literal as ±Infinity (`9e999` is its way), nor one beyond
        // double's range as anything but ±Inf or 0: the README says so.
        let comparable = if NUMBER_COLUMNS.contains(column) {
            format!(
                "{column}::text = 'NaN' OR (abs({column}::numeric) <= 1.7976931348623157e308 \
                 AND ({column}::numeric = 0 OR abs({column}::numeric) >= 4.9406564584124654e-324))"
            )
        } else {
            "true".to_owned()
        };
        for row in source.query(&format!(
            "SELECT DISTINCT {printed} FROM ledger WHERE {column} IS NOT NULL AND ({comparable}) ORDER BY 1"
        )) {
            let literal = row[0].clone().unwrap();
            if let Some(read) = sqlite_misreads(sqlite, &literal) {
                misread.push((format!("{column} = '{literal}'"), read));
                continue;
            }
            questions.push(exact(format!(
                "SELECT count(*) FROM ledger WHERE {column} = '{literal}'"
            )));
        }
    }
    (questions, misread)
}

/// The double SQLite makes of a number literal, when it is not the nearest one.
fn sqlite_misreads(sqlite: &rusqlite::Connection, literal: &str) -> Option<f64> {
    let nearest = literal.parse::<f64>().ok().filter(|n| n.is_finite())?;
    let read: f64 = sqlite
        .query_row("SELECT CAST(?1 AS REAL)", [literal], |r| r.get(0))
        .unwrap();
    (read != nearest).then_some(read)
}

fn agree(postgres: &[Vec<Answer>], mirror: &[Vec<Answer>], tolerance: Option<f64>, scale: f64) -> bool {
    match (tolerance, postgres, mirror) {
        (Some(tolerance), [p], [m]) => match (p.as_slice(), m.as_slice()) {
            ([Answer::Number(p)], [Answer::Number(m)]) => (p - m).abs() <= tolerance * scale.max(1.0),
            (p, m) => p == m,
        },
        _ => postgres == mirror,
    }
}

fn shown(answers: &[Vec<Answer>]) -> String {
    answers
        .iter()
        .map(|row| row.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn plain_queries_on_the_mirror_give_postgresqls_answers() {
    let source = queryable_source("queryable_battery");
    let dir = temp_dir();
    let mirror = dir.path().join("ledger.db");
    export(&source, &mirror, &[]);
    let conn = open_mirror(&mirror);
    let (questions, misread) = battery(&source, &conn);
    assert!(questions.len() > 100, "{} questions", questions.len());
    // Only where the README says SQLite misreads: exponents beyond ±200.
    for (literal, _) in &misread {
        let value: f64 = literal.split('\'').nth(1).and_then(|l| l.parse().ok()).unwrap();
        assert!(
            value != 0.0 && !(1e-200..=1e200).contains(&value.abs()),
            "SQLite misreads {literal}"
        );
    }
    for (literal, read) in &misread {
        eprintln!("left out | {literal}: SQLite reads {read:e}");
    }
    let mut disagreements = Vec::new();
    for question in &questions {
        let postgres = ask_postgres(&source, &question.sql);
        let answered = ask_sqlite(&conn, &question.sql);
        let scale = match question.tolerance {
            Some(_) => {
                let column = NUMBER_COLUMNS
                    .iter()
                    .find(|c| question.sql.contains(&format!("sum({c})")))
                    .expect("a sum names its column");
                let of_abs = question
                    .sql
                    .replace(&format!("sum({column})"), &format!("sum(abs({column}::numeric))"));
                match ask_postgres(&source, &of_abs).as_slice() {
                    [row] => match row.as_slice() {
                        [Answer::Number(n)] => *n,
                        _ => 0.0,
                    },
                    _ => 0.0,
                }
            }
            None => 0.0,
        };
        let same = agree(&postgres, &answered, question.tolerance, scale);
        // The side-by-side record of the run (cargo test -- --nocapture shows it).
        eprintln!(
            "{} | {} | {} | {}",
            if same { "same" } else { "DIFFERENT" },
            question.sql,
            shown(&postgres),
            shown(&answered)
        );
        if !same {
            disagreements.push(format!(
                "{}\n  PostgreSQL: {}\n  mirror:     {}",
                question.sql,
                shown(&postgres),
                shown(&answered)
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} queries answer differently:\n{}",
        disagreements.len(),
        questions.len(),
        disagreements.join("\n")
    );
}

/// (rowid, column, exact text) of every value the mirror keeps beside its number.
fn kept_exact_texts(mirror: &Path, table: &str) -> Vec<(i64, String, String)> {
    open_mirror(mirror)
        .prepare("SELECT row, column_name, exact_text FROM _pgmirror_exact_text WHERE sqlite_table = ?1 ORDER BY 1, 2")
        .unwrap()
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn only_values_their_number_cannot_give_back_keep_their_text_and_all_restore_exactly() {
    let source = queryable_source("queryable_exact_source");
    let dir = temp_dir();
    let mirror = dir.path().join("ledger.db");
    // Batches of three rows: rowids of tables without a key must carry across batches.
    export(&source, &mirror, &["--batch-rows", "3"]);

    // ledger: exactly the hand-made list, each with PostgreSQL's own text.
    let kept = kept_exact_texts(&mirror, "ledger");
    let expected: BTreeSet<(i64, String)> = source
        .query("SELECT id, column_name FROM expected_exact_text")
        .into_iter()
        .map(|row| (row[0].clone().unwrap().parse().unwrap(), row[1].clone().unwrap()))
        .collect();
    let kept_keys: BTreeSet<(i64, String)> = kept
        .iter()
        .map(|(row, column, _)| (*row, column.clone()))
        .collect();
    assert_eq!(kept_keys, expected, "values kept beside their number in ledger");
    for (id, column, text) in &kept {
        let printed = if column == "cash" {
            "::numeric::text"
        } else {
            "::text"
        };
        let postgres = source.query(&format!("SELECT {column}{printed} FROM ledger WHERE id = {id}"));
        assert_eq!(
            postgres[0][0].as_deref(),
            Some(text.as_str()),
            "ledger {id}.{column}"
        );
    }

    // readings has no key: its rows are numbered in the order they came, across batches.
    let conn = open_mirror(&mirror);
    let needing: BTreeSet<i64> = conn
        .prepare("SELECT rowid FROM readings WHERE needs_exact")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let kept_rows: BTreeSet<i64> = kept_exact_texts(&mirror, "readings")
        .iter()
        .map(|(row, _, _)| *row)
        .collect();
    assert_eq!(kept_rows, needing, "readings rows with a kept text");
    let kept_by_seq: Vec<(String, i64)> = conn
        .prepare(
            "SELECT e.exact_text, r.seq FROM _pgmirror_exact_text e JOIN readings r ON r.rowid = e.row \
             WHERE e.sqlite_table = 'readings'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (text, seq) in kept_by_seq {
        let postgres = source.query(&format!("SELECT value::text FROM readings WHERE seq = {seq}"));
        assert_eq!(
            postgres[0][0].as_deref(),
            Some(text.as_str()),
            "readings seq {seq}"
        );
    }
    assert!(!needing.is_empty());

    // Every value comes back exactly: restore into an empty database, csv export.
    let target = fresh_db("queryable_exact_target");
    assert_ok(&restore(&mirror, &target, &["--create"]));
    assert_eq!(table_digests(&source), table_digests(&target));
    for table in ["ledger", "readings"] {
        let (from_mirror, from_source) = (dir.path().join("mirror.csv"), dir.path().join("source.csv"));
        csv_export(("--from", mirror.to_str().unwrap()), table, &from_mirror);
        csv_export(("--source", &source.url), table, &from_source);
        let sorted = |path: &Path| {
            let text = std::fs::read_to_string(path).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.sort_unstable();
            lines
        };
        assert_eq!(
            sorted(&from_mirror),
            sorted(&from_source),
            "csv export of {table}"
        );
    }
    let verified = pgmirror(&["verify", "--quiet", mirror.to_str().unwrap()]);
    assert_ok(&verified);
}

#[test]
fn a_number_edited_after_export_is_named_by_verify_and_refused_by_restore_and_csv() {
    let source = queryable_source("queryable_edited_source");
    let dir = temp_dir();
    let mirror = dir.path().join("ledger.db");
    export(&source, &mirror, &[]);
    {
        let conn = rusqlite::Connection::open(&mirror).unwrap();
        // 1.50 is kept as text beside 1.5; the user changes the number only.
        assert_eq!(
            conn.execute("UPDATE ledger SET amount = 2.5 WHERE id = 5", [])
                .unwrap(),
            1
        );
    }
    let verified = pgmirror(&["verify", "--quiet", mirror.to_str().unwrap()]);
    let report =
        String::from_utf8_lossy(&verified.stdout).to_string() + &String::from_utf8_lossy(&verified.stderr);
    assert_eq!(verified.status.code(), Some(1), "{report}");
    for needle in ["\"ledger\"", "rowid 5", "\"amount\"", "2.5", "\"1.50\""] {
        assert!(report.contains(needle), "verify names {needle}: {report}");
    }

    let target = fresh_db("queryable_edited_target");
    let refused = restore(&mirror, &target, &["--create"]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "restore of an edited mirror succeeded");
    assert!(
        message.contains("rowid 5") && message.contains("amount"),
        "{message}"
    );
    let tables = target.query("SELECT count(*) FROM pg_class WHERE relname = 'ledger'");
    assert_eq!(
        tables[0][0].as_deref(),
        Some("0"),
        "a refused restore creates nothing"
    );

    let csv = try_csv_export(
        ("--from", mirror.to_str().unwrap()),
        "ledger",
        &dir.path().join("ledger.csv"),
    );
    assert!(!csv.status.success(), "csv export of an edited value succeeded");
    assert!(String::from_utf8_lossy(&csv.stderr).contains("rowid 5"));

    // The way out the message gives: drop the kept text, and the cell's value is restored.
    {
        let conn = rusqlite::Connection::open(&mirror).unwrap();
        conn.execute(
            "DELETE FROM _pgmirror_exact_text WHERE sqlite_table = 'ledger' AND row = 5 AND column_name = 'amount'",
            [],
        )
        .unwrap();
    }
    assert_ok(&restore(&mirror, &target, &["--create"]));
    let amount = target.query("SELECT amount::text FROM ledger WHERE id = 5");
    assert_eq!(amount[0][0].as_deref(), Some("2.5"));
}

#[test]
fn format_1_and_2_mirrors_from_fixtures_still_verify_and_restore_exactly() {
    // fixtures/mirrors/*: fixtures/types.sql exported by pgmirror at mirror formats 1 and 2.
    let source = fresh_db("queryable_old_formats_source");
    source.execute("ALTER DATABASE \"queryable_old_formats_source\" SET timezone = 'America/New_York'");
    source.psql_file(&fixtures_dir().join("types.sql"));
    for format in [1, 2] {
        let mirror = fixtures_dir().join(format!("mirrors/types-format-{format}.db.zst"));
        let version: i64 = {
            let dir = temp_dir();
            let plain = dir.path().join("plain.db");
            let compressed = std::fs::File::open(&mirror).unwrap();
            let mut decoder = zstd::Decoder::new(compressed).unwrap();
            std::io::copy(&mut decoder, &mut std::fs::File::create(&plain).unwrap()).unwrap();
            open_mirror(&plain)
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(version, format, "{}", mirror.display());
        assert_ok(&pgmirror(&["verify", "--quiet", mirror.to_str().unwrap()]));
        let target = fresh_db(&format!("queryable_old_format_{format}"));
        assert_ok(&restore(&mirror, &target, &["--create"]));
        assert_eq!(
            table_digests(&source),
            table_digests(&target),
            "a format {format} mirror restores exactly"
        );
    }
}

#[test]
fn exact_texts_of_a_table_read_in_chunks_by_several_workers_land_on_their_rows() {
    let source = fresh_db("queryable_chunked_source");
    // No key, many pages; two values in three need their text (`5.0`, `7.00`).
    source.execute(
        "CREATE TABLE spread AS SELECT i AS seq, (i || rtrim('.' || repeat('0', i % 3), '.'))::numeric AS value \
         FROM generate_series(1, 20000) AS i",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("spread.db");
    export(&source, &mirror, &["--chunk-size", "64kB", "--jobs", "3"]);
    let kept = open_mirror(&mirror)
        .query_row("SELECT count(*) FROM _pgmirror_exact_text", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    assert_eq!(kept, 13_334);
    let plan = pgmirror(&[
        "export",
        "--plan",
        "--source",
        &source.url,
        "--chunk-size",
        "64kB",
    ]);
    assert_ok(&plan);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let chunks = plan["tasks"].as_array().map_or(0, Vec::len);
    assert!(chunks >= 5, "the table is read in {chunks} chunks");
    let target = fresh_db("queryable_chunked_target");
    assert_ok(&restore(&mirror, &target, &["--create"]));
    assert_eq!(table_digests(&source), table_digests(&target));
}

#[test]
fn columns_named_like_the_rowid_are_read_through_the_key_or_refused_at_export() {
    let source = fresh_db("queryable_rowid_names_source");
    source.execute(
        "CREATE TABLE \"odd \"\"names\"\" ☃\" (id integer PRIMARY KEY, rowid numeric, _rowid_ numeric, oid numeric); \
         INSERT INTO \"odd \"\"names\"\" ☃\" VALUES (7, 1.50, 2.0, 3.000), (3, 1.5, 2, 3), (5, NULL, 0.10, 0.100)",
    );
    let dir = temp_dir();
    let mirror = dir.path().join("odd.db");
    export(&source, &mirror, &[]);
    assert_ok(&pgmirror(&["verify", "--quiet", mirror.to_str().unwrap()]));
    let target = fresh_db("queryable_rowid_names_target");
    assert_ok(&restore(&mirror, &target, &["--create"]));
    assert_eq!(table_digests(&source), table_digests(&target));

    // Without the key nothing can read the rowid back: refused, naming the table.
    source.execute("CREATE TABLE keyless (rowid integer, _rowid_ numeric, oid numeric); INSERT INTO keyless VALUES (1, 1.50, 2)");
    let refused_mirror = dir.path().join("keyless.db");
    let refused = pgmirror(&[
        "export",
        "--quiet",
        "--source",
        &source.url,
        "--output",
        refused_mirror.to_str().unwrap(),
    ]);
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "exported a mirror nothing can restore");
    assert!(
        message.contains("keyless") && message.contains("rowid, _rowid_ and oid"),
        "{message}"
    );
    assert!(!refused_mirror.exists(), "a refused export leaves no file");
}
