//! The mirror file format in one place: table naming, format markers and the
//! `_pgmirror_*` metadata tables. Everything that writes or reads a mirror's
//! metadata goes through here.

mod check;
mod ddl;
mod graft;
mod metadata;
mod read;
mod rows;
mod sync_state;

pub use check::verify_file;
pub use ddl::ObjectKind;
pub use graft::graft_tables;
pub use metadata::{
    run_facts, IndexOutcome, Metadata, MetadataInputs, EXACT_TEXT_SCHEMA, SCHEMA as METADATA_SCHEMA,
    SQLITE_SCHEMA_KEY,
};
use read::has_table;
pub use read::{
    Mirror, MirrorColumn, MirrorConstraint, MirrorIndex, MirrorObject, MirrorSequence, MirrorTable,
    MirrorType,
};
pub use rows::{integer_primary_key, rowid_alias, rowid_expression, MirrorRow, RowCursor, RowReader};
pub use sync_state::{
    exact_text_sql, record_row_count, record_sequence_value, SyncState, TableResync, SYNC_SCHEMA,
};

/// Bumped whenever the layout of data or metadata tables changes incompatibly.
/// 2: `_pgmirror_objects` (functions, access methods, table DDL, triggers) and
/// `_pgmirror_constraints.is_local`; range and base types in `_pgmirror_types`.
/// 3: numeric and money as numbers (codec `decimal`) with `_pgmirror_exact_text`; float4
/// as the double nearest its shortest text; ±Infinity floats as SQLite's ±Inf.
pub const FORMAT_VERSION: i32 = 3;
/// `PRAGMA application_id` of a pgmirror mirror: "PGMR".
pub const APPLICATION_ID: i32 = 0x5047_4d52;
/// Prefix of the metadata tables; no data table may start with it.
pub const METADATA_PREFIX: &str = "_pgmirror_";

/// What a curated export did to a table, as `_pgmirror_curation.kind` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CurationKind {
    /// Only the rows a `--where` condition holds for (detail: the condition).
    Where,
    /// A column left out (detail: its name).
    ExcludeColumn,
    /// A column kept with NULLs (detail: its name).
    RedactNull,
    /// A column kept as keyed hashes (detail: its name).
    RedactHash,
    /// A `--query` result (detail: the query).
    Query,
}

impl CurationKind {
    const ALL: [CurationKind; 5] = [
        CurationKind::Where,
        CurationKind::ExcludeColumn,
        CurationKind::RedactNull,
        CurationKind::RedactHash,
        CurationKind::Query,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CurationKind::Where => "where",
            CurationKind::ExcludeColumn => "exclude_column",
            CurationKind::RedactNull => "redact_null",
            CurationKind::RedactHash => "redact_hash",
            CurationKind::Query => "query",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the mirror's table lacks rows or real values of the source's.
    pub fn is_partial(self) -> bool {
        matches!(
            self,
            CurationKind::Where | CurationKind::RedactNull | CurationKind::RedactHash
        )
    }
}

/// Tables in `public` keep their name exactly; others are named `schema.table`.
pub fn sqlite_table_name(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// Why a data table cannot carry this name in SQLite, if it cannot.
pub fn reserved_name_reason(sqlite_name: &str) -> Option<&'static str> {
    let lower = sqlite_name.to_lowercase();
    if lower.starts_with(METADATA_PREFIX) {
        Some("is reserved for pgmirror's metadata tables")
    } else if lower.starts_with("sqlite_") {
        Some("is reserved by SQLite")
    } else {
        None
    }
}
