//! Every DESIGN.md §5 type with its edge values, value by value in the SQLite file, and the
//! whole table round-tripped through PostgreSQL by the oracle.

use std::path::Path;

use rusqlite::types::Value;

use crate::compare::assert_mirror_matches;
use crate::support::{export, fresh_db, open_mirror, temp_dir, TestDb};

fn load_types(name: &str) -> TestDb {
    let db = fresh_db(name);
    // Values must not depend on the server's or the database's TimeZone.
    db.execute(&format!(
        "ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'"
    ));
    db.psql_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/types.sql"));
    db
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn cell(conn: &rusqlite::Connection, column: &str, id: i64) -> (String, Value) {
    conn.query_row(
        &format!("SELECT typeof(\"{column}\"), \"{column}\" FROM every_type WHERE id = ?1"),
        [id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .unwrap_or_else(|e| panic!("{column} of row {id}: {e}"))
}

fn expect(conn: &rusqlite::Connection, id: i64, cases: &[(&str, &str, Value)]) {
    for (column, sqlite_type, value) in cases {
        let (actual_type, actual) = cell(conn, column, id);
        assert_eq!(
            (actual_type.as_str(), &actual),
            (*sqlite_type, value),
            "every_type.{column}, row {id}"
        );
    }
}

#[test]
fn every_type_maps_to_its_documented_sqlite_value() {
    let db = load_types("types_values");
    let dir = temp_dir();
    let mirror = dir.path().join("types.db");
    export(&db, &mirror, &["--jobs", "2"]);
    let conn = open_mirror(&mirror);

    let all_columns: Vec<String> = conn
        .prepare("SELECT column_name FROM _pgmirror_columns WHERE sqlite_table = 'every_type' AND column_name <> 'id'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all_columns.len(), 41);
    for column in &all_columns {
        assert_eq!(
            cell(&conn, column, 1),
            ("null".to_owned(), Value::Null),
            "{column} of the all-NULL row"
        );
    }

    expect(
        &conn,
        2,
        &[
            ("c_bool", "integer", Value::Integer(0)),
            ("c_real", "real", Value::Real(0.0)),
            // numeric and money are numbers (format 3); numeric(12,3) gives back 0.000.
            ("c_numeric_scaled", "integer", Value::Integer(0)),
            ("c_money", "integer", Value::Integer(0)),
            ("c_text", "text", text("")),
            ("c_varchar", "text", text("")),
            ("c_char", "text", text("     ")),
            ("c_bytea", "blob", Value::Blob(vec![])),
            ("c_json", "text", text("{}")),
            ("c_date", "text", text("2000-01-01")),
            ("c_timestamptz", "text", text("2000-01-01 00:00:00+00:00")),
            ("c_interval", "text", text("00:00:00")),
            ("c_int_array", "text", text("[]")),
            ("c_text_array", "text", text("[]")),
            ("c_inet", "text", text("0.0.0.0")),
            ("c_bit", "text", text("0000")),
            ("c_composite", "text", text("(0,\"\")")),
        ],
    );

    expect(
        &conn,
        3,
        &[
            ("c_smallint", "integer", Value::Integer(32767)),
            ("c_integer", "integer", Value::Integer(2147483647)),
            ("c_bigint", "integer", Value::Integer(i64::MAX)),
            ("c_oid", "integer", Value::Integer(4294967295)),
            ("c_bool", "integer", Value::Integer(1)),
            ("c_real", "real", Value::Real(f64::INFINITY)),
            ("c_double", "real", Value::Real(f64::INFINITY)),
            // The nearest doubles; their exact texts are kept beside (checked below).
            ("c_numeric", "real", Value::Real(1.2345678901234568e29)),
            ("c_numeric_scaled", "real", Value::Real(999999999.999)),
            // An integral double below 2^63 in a column of NUMERIC affinity is an INTEGER.
            ("c_money", "integer", Value::Integer(92233720368547760)),
            ("c_text", "text", text("héllo wörld ✓ 日本語 🎉")),
            ("c_char", "text", text("ab   ")),
            ("c_name", "text", text("a name")),
            ("c_enum", "text", text("happy")),
            ("c_bytea", "blob", Value::Blob(vec![0x00, 0xff, 0x10])),
            ("c_uuid", "text", text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
            ("c_json", "text", text("{\"b\": 1,  \"a\": [1, 2]}")),
            ("c_jsonb", "text", text("{\"a\": [1, 2], \"b\": 1, \"é\": \"✓\"}")),
            ("c_date", "text", text("infinity")),
            ("c_timestamp", "text", text("294276-12-31 23:59:59.999999")),
            ("c_timestamptz", "text", text("infinity")),
            ("c_time", "text", text("24:00:00")),
            ("c_timetz", "text", text("23:59:59.5+05:30")),
            ("c_interval", "text", text("1 year 2 mons 3 days 04:05:06.789")),
            ("c_int_array", "text", text("[1,null,3]")),
            (
                "c_text_array",
                "text",
                text(r#"["a,b","quote\"d",null,"","back\\slash"]"#),
            ),
            ("c_numeric_array", "text", text(r#"["1.50","NaN"]"#)),
            ("c_matrix", "text", text("{{1,2},{3,4}}")),
            ("c_inet", "text", text("192.168.0.1/24")),
            ("c_int4range", "text", text("[1,10)")),
            ("c_point", "text", text("(1.5,-2)")),
            ("c_domain", "integer", Value::Integer(42)),
            ("c_composite", "text", text("(1,\"x y\")")),
            ("c_enum_array", "text", text(r#"["sad","happy"]"#)),
        ],
    );

    expect(
        &conn,
        4,
        &[
            ("c_smallint", "integer", Value::Integer(-32768)),
            ("c_bigint", "integer", Value::Integer(i64::MIN)),
            ("c_real", "real", Value::Real(f64::NEG_INFINITY)),
            ("c_double", "text", text("NaN")),
            ("c_numeric", "real", Value::Real(-1e-21)),
            ("c_numeric_scaled", "text", text("NaN")),
            ("c_money", "integer", Value::Integer(-92233720368547760)),
            (
                "c_text",
                "text",
                text("line1\nline2\ttab\\back \"quoted\" 'single'"),
            ),
            ("c_char", "text", text("abcde")),
            ("c_date", "text", text("0044-03-15 BC")),
            ("c_timestamp", "text", text("1000-06-15 12:30:00 BC")),
            ("c_timestamptz", "text", text("0001-12-31 23:00:00+00:00 BC")),
            ("c_time", "text", text("00:00:00.000001")),
            ("c_timetz", "text", text("12:00:00-11:30")),
            ("c_interval", "text", text("-178000000 years -1 days -00:00:01")),
            ("c_int_array", "text", text("[0:2]={7,8,9}")),
            ("c_matrix", "text", text("[2:3][1:1]={{5},{6}}")),
            ("c_numeric_array", "text", text(r#"["-0.5"]"#)),
            ("c_enum_array", "text", text("[null]")),
        ],
    );

    expect(
        &conn,
        6,
        &[
            // float4's largest as float4 prints it, not widened (3.4028234663852886e38).
            ("c_real", "real", Value::Real(3.4028235e38)),
            ("c_double", "real", Value::Real(5e-324)),
            ("c_timestamptz", "text", text("2021-06-01 10:00:00+00:00")),
            ("c_numeric", "real", Value::Real(1e-20)),
        ],
    );

    // Only the values their number does not give back keep their exact text: 30 digits,
    // and money beyond double's 15 to 17.
    let kept: Vec<(i64, String, String)> = conn
        .prepare("SELECT row, column_name, exact_text FROM _pgmirror_exact_text WHERE sqlite_table = 'every_type' ORDER BY 1, 2")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let kept_owned = |row: i64, column: &str, text: &str| (row, column.to_owned(), text.to_owned());
    assert_eq!(
        kept,
        vec![
            kept_owned(3, "c_money", "92233720368547758.07"),
            kept_owned(
                3,
                "c_numeric",
                "123456789012345678901234567890.123456789012345678901234567890"
            ),
            kept_owned(4, "c_money", "-92233720368547758.08"),
        ]
    );

    let (chars, bytes): (i64, i64) = conn
        .query_row(
            "SELECT length(c_text), length(c_bytea) FROM every_type WHERE id = 5",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (chars, bytes),
        (1_500_000, 2_500_000),
        "multi-megabyte text and bytea"
    );
    let prefix: Vec<u8> = conn
        .query_row(
            "SELECT substr(c_bytea, 1, 4) FROM every_type WHERE id = 5",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(prefix, vec![0xab, 0x01, 0xab, 0x01]);

    let valid_json: i64 = conn
        .query_row(
            "SELECT count(*) FROM every_type WHERE json_valid(c_jsonb) AND json_valid(c_json) AND json_valid(c_int_array)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        valid_json, 2,
        "json, jsonb and 1-D arrays are valid JSON for SQLite's json functions"
    );

    let codecs: Vec<(String, String, String)> = conn
        .prepare("SELECT column_name, pg_type, codec FROM _pgmirror_columns WHERE sqlite_table = 'every_type' ORDER BY ordinal")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let find = |name: &str| codecs.iter().find(|(c, _, _)| c == name).cloned().unwrap();
    assert_eq!(
        find("c_varchar"),
        ("c_varchar".into(), "character varying(20)".into(), "text".into())
    );
    assert_eq!(find("c_numeric_scaled").1, "numeric(12,3)");
    assert_eq!(find("c_numeric_scaled").2, "decimal(3)");
    assert_eq!(find("c_numeric").2, "decimal");
    assert_eq!(find("c_money").2, "decimal(2)");
    assert_eq!(find("c_matrix").2, "array:int4");
    assert_eq!(find("c_domain").1, "positive_int");
    assert_eq!(find("c_domain").2, "int4");
}

#[test]
fn every_type_round_trips_exactly_through_postgresql() {
    let db = load_types("types_round_trip");
    let dir = temp_dir();
    let mirror = dir.path().join("types.db");
    export(&db, &mirror, &[]);
    assert_eq!(assert_mirror_matches(&db, &mirror), 2);
}

/// Bit patterns spread over every exponent, plus the values where notation switches.
fn float_samples() -> Vec<f64> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut values: Vec<f64> = (0..3000)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            f64::from_bits(state)
        })
        .filter(|v| v.is_finite())
        .collect();
    for exponent in -8..=20 {
        for mantissa in [1.0, 1.5, 9.999_999, 1.234_567_890_123_456_7] {
            values.push(mantissa * 10f64.powi(exponent));
            values.push(-mantissa * 10f64.powi(exponent));
        }
    }
    // Decimals that lie exactly halfway between two doubles, where PostgreSQL prints more.
    values.extend([
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        5e-324,
        4.0,
        0.1,
        100.0,
        1e23,
        5e22,
        9.999_999e19,
    ]);
    values
}

#[test]
fn floats_are_written_exactly_as_postgresql_prints_them() {
    let db = fresh_db("float_text");
    let rt = crate::support::runtime();
    rt.block_on(async {
        let client = crate::support::connect(&db.url).await;
        let doubles = float_samples();
        let singles: Vec<f32> = doubles
            .iter()
            .map(|v| *v as f32)
            .filter(|v| v.is_finite())
            .collect();
        let printed: Vec<String> = client
            .query_one(
                "SELECT array_agg(v::text ORDER BY n) FROM unnest($1::float8[]) WITH ORDINALITY AS t(v, n)",
                &[&doubles],
            )
            .await
            .unwrap()
            .get(0);
        let printed_singles: Vec<String> = client
            .query_one(
                "SELECT array_agg(v::text ORDER BY n) FROM unnest($1::float4[]) WITH ORDINALITY AS t(v, n)",
                &[&singles],
            )
            .await
            .unwrap()
            .get(0);
        let ours = |value: f64, single: bool| {
            let mut text = String::new();
            pgmirror::copy::types::write_pg_float(&mut text, value, single);
            text
        };
        for (value, expected) in doubles.iter().zip(&printed) {
            assert_eq!(
                &ours(*value, false),
                expected,
                "float8 {value:e} (bits {:#x})",
                value.to_bits()
            );
        }
        for (value, expected) in singles.iter().zip(&printed_singles) {
            assert_eq!(&ours(f64::from(*value), true), expected, "float4 {value:e}");
        }
        assert!(printed.len() > 2500 && printed_singles.len() > 500);
    });
}
