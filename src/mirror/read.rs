//! Opening an existing mirror and reading its metadata back.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{APPLICATION_ID, FORMAT_VERSION};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::pg::catalog::RelationKind;

/// A column as the mirror recorded it.
#[derive(Debug, Clone)]
pub struct MirrorColumn {
    pub name: String,
    /// `format_type()` text, e.g. `character varying(255)`.
    pub pg_type: String,
    pub type_oid: u32,
    /// The column's type modifier (-1 for none).
    pub typmod: i32,
    pub not_null: bool,
    pub default: Option<String>,
    /// "", "always" or "by default".
    pub identity: String,
    /// "" or "stored".
    pub generated: String,
    /// The codec name, e.g. `int4`, `array:numeric`, `text`.
    pub codec: String,
}

#[derive(Debug, Clone)]
pub struct MirrorIndex {
    pub name: String,
    pub definition: String,
    pub is_primary: bool,
}

#[derive(Debug, Clone)]
pub struct MirrorConstraint {
    pub name: String,
    /// pg_constraint.contype: p, u, f, c, x, t.
    pub kind: String,
    pub definition: String,
    /// False for a constraint the table only inherits (its parent brings it back).
    pub is_local: bool,
}

#[derive(Debug, Clone)]
pub struct MirrorTable {
    pub sqlite_name: String,
    pub schema: String,
    pub name: String,
    /// A table, partitioned table or materialized view; a view or query exported as a table.
    pub kind: RelationKind,
    pub row_count: i64,
    pub columns: Vec<MirrorColumn>,
    pub indexes: Vec<MirrorIndex>,
    pub constraints: Vec<MirrorConstraint>,
    /// (kind, detail) of each filter, exclusion, redaction or query applied at export.
    pub curation: Vec<(super::CurationKind, String)>,
    /// For a partitioned table: itself (no parent, no bound) then its partitions, each after
    /// its parent.
    pub partitions: Vec<MirrorPartition>,
}

#[derive(Debug, Clone)]
pub struct MirrorPartition {
    pub schema: String,
    pub name: String,
    pub parent_schema: String,
    pub parent_name: String,
    /// `FOR VALUES ...` (empty for the partitioned table itself).
    pub bound: String,
    /// `RANGE (col)` etc. for a partitioned table or partition.
    pub partition_key: Option<String>,
}

impl MirrorTable {
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The columns whose values go back into PostgreSQL, with their codecs. Generated
    /// columns are left out: the server computes them.
    pub fn loadable_columns(&self) -> Result<Vec<(&str, crate::convert::Codec)>> {
        self.columns
            .iter()
            .filter(|c| c.generated.is_empty())
            .map(|c| {
                crate::convert::Codec::from_name(&c.codec)
                    .map(|codec| (c.name.as_str(), codec))
                    .ok_or_else(|| {
                        Error::unsupported(
                            format!("table {}, column {:?}", self.display_name(), c.name),
                            format!("unknown codec {:?} in the mirror", c.codec),
                        )
                    })
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct MirrorSequence {
    pub schema: String,
    pub name: String,
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cycle: bool,
    pub last_value: Option<i64>,
    pub owner_schema: Option<String>,
    pub owner_table: Option<String>,
    pub owner_column: Option<String>,
    pub is_identity: bool,
}

/// A view or materialized view definition recorded at export.
#[derive(Debug, Clone)]
pub struct MirrorView {
    pub schema: String,
    pub name: String,
    /// A view or a materialized view.
    pub kind: RelationKind,
    pub definition: String,
    /// `WITH (...)` options (format 2).
    pub options: Option<String>,
    /// False for a materialized view that was WITH NO DATA (format 2).
    pub populated: bool,
}

/// A type (or extension) recorded so `restore --create` can make it.
#[derive(Debug, Clone)]
pub struct MirrorType {
    pub schema: String,
    pub name: String,
    /// "enum", "domain", "composite", "range", "base" or "extension".
    pub kind: String,
    pub create_sql: String,
}

/// A statement of `_pgmirror_objects` (format 2): see `mirror::ddl`.
#[derive(Debug, Clone)]
pub struct MirrorObject {
    pub kind: super::ObjectKind,
    pub schema: String,
    /// The name to look for in the target (a function's signature).
    pub name: String,
    pub sqlite_table: Option<String>,
    pub create_sql: String,
}

/// An open mirror with its metadata.
pub struct Mirror {
    pub conn: Connection,
    /// The decompressed copy of a `.zst` mirror, removed when the mirror is dropped.
    _decompressed: Option<crate::compress::Decompressed>,
    /// The decrypted copy of an encrypted (`.age`) mirror that is not compressed, likewise.
    _decrypted: Option<crate::crypt::Plain>,
    pub path: String,
    pub tables: Vec<MirrorTable>,
    pub sequences: Vec<MirrorSequence>,
    pub types: Vec<MirrorType>,
    pub views: Vec<MirrorView>,
    /// Empty for a mirror of format 1.
    pub objects: Vec<MirrorObject>,
}

impl Mirror {
    /// Opens a mirror read-only and checks that it is one this version understands.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    /// Opens an uncompressed mirror for changing its rows in place (`pgmirror sync`).
    pub fn open_writable(path: &Path) -> Result<Self> {
        if path.is_file() && (crate::compress::is_zstd(path)? || crate::crypt::is_encrypted(path)?) {
            return Err(Error::usage(format!(
                "{} is compressed or encrypted; a mirror that follows its database must be a plain SQLite file",
                path.display()
            )));
        }
        // One thread uses the connection: SQLite's per-call mutex is pure cost.
        Self::open_with(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<Self> {
        let shown = path.display().to_string();
        let context = || format!("opening mirror {shown}");
        if !path.is_file() {
            return Err(Error::new(context(), ErrorKind::Usage("no such file".into())));
        }
        let decrypted = crate::crypt::Plain::of(path)?;
        let plain = decrypted.path();
        let decompressed = if crate::compress::is_zstd(plain)? {
            Some(crate::compress::Decompressed::from(plain)?)
        } else {
            None
        };
        let file = decompressed.as_ref().map_or(plain, |d| d.path()).to_path_buf();
        // A compressed mirror is read from its decompression: the decrypted .zst can go.
        let decrypted = decompressed.is_none().then_some(decrypted);
        let file = file.as_path();
        let conn = Connection::open_with_flags(file, flags).with_context(context)?;
        let (application_id, version): (i32, i32) = conn
            .query_row(
                "SELECT * FROM pragma_application_id, pragma_user_version",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .with_context(|| format!("{}: not a readable SQLite file", context()))?;
        if application_id != APPLICATION_ID {
            return Err(Error::unsupported(
                context(),
                "not a pgmirror mirror (its application_id is not PGMR)",
            ));
        }
        if version > FORMAT_VERSION {
            return Err(Error::unsupported(
                context(),
                format!("mirror format {version} is newer than this pgmirror understands ({FORMAT_VERSION}); upgrade pgmirror"),
            ));
        }
        let tables = read_tables(&conn).with_context(|| format!("reading the metadata of {shown}"))?;
        let sequences = read_sequences(&conn).with_context(|| format!("reading the metadata of {shown}"))?;
        let types = read_types(&conn).with_context(|| format!("reading the metadata of {shown}"))?;
        let views = read_views(&conn).with_context(|| format!("reading the metadata of {shown}"))?;
        let objects = read_objects(&conn).with_context(|| format!("reading the metadata of {shown}"))?;
        Ok(Mirror {
            conn,
            _decompressed: decompressed,
            _decrypted: decrypted,
            path: shown,
            tables,
            sequences,
            types,
            views,
            objects,
        })
    }

    /// The recorded objects of one kind, in creation order; with `table`, only its own.
    pub fn objects_of<'m>(
        &'m self,
        kind: super::ObjectKind,
        table: Option<&'m MirrorTable>,
    ) -> impl Iterator<Item = &'m MirrorObject> + 'm {
        self.objects.iter().filter(move |o| {
            o.kind == kind && table.is_none_or(|t| o.sqlite_table.as_deref() == Some(t.sqlite_name.as_str()))
        })
    }

    /// A `_pgmirror_meta` value; `None` when the mirror does not record it.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.conn
            .query_row("SELECT value FROM _pgmirror_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .ok()
    }

    /// The recorded definition of a mirror table that is a materialized view.
    pub fn materialized_view(&self, table: &MirrorTable) -> Option<&MirrorView> {
        self.views.iter().find(|v| {
            v.kind == RelationKind::MaterializedView && v.schema == table.schema && v.name == table.name
        })
    }

    pub fn table(&self, sqlite_name: &str) -> Option<&MirrorTable> {
        self.tables.iter().find(|t| t.sqlite_name == sqlite_name)
    }
}

/// A recorded kind, parsed by `from_name`; an unknown one is an error naming the value.
fn recorded_kind<K>(
    row: &rusqlite::Row<'_>,
    index: usize,
    what: &str,
    from_name: impl Fn(&str) -> Option<K>,
) -> rusqlite::Result<K> {
    let name: String = row.get(index)?;
    from_name(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown {what} {name:?}").into(),
        )
    })
}

fn relation_kind(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<RelationKind> {
    recorded_kind(row, index, "relation kind", RelationKind::from_name)
}

fn read_tables(conn: &Connection) -> rusqlite::Result<Vec<MirrorTable>> {
    let mut tables: Vec<MirrorTable> = conn
        .prepare("SELECT sqlite_name, schema_name, table_name, kind, row_count FROM _pgmirror_tables ORDER BY sqlite_name")?
        .query_map([], |r| {
            Ok(MirrorTable {
                sqlite_name: r.get(0)?,
                schema: r.get(1)?,
                name: r.get(2)?,
                kind: relation_kind(r, 3)?,
                row_count: r.get(4)?,
                columns: Vec::new(),
                indexes: Vec::new(),
                constraints: Vec::new(),
                curation: Vec::new(),
                partitions: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut columns = conn.prepare(
        "SELECT column_name, pg_type, type_oid, not_null, default_expr, identity, generated, codec, typmod \
         FROM _pgmirror_columns WHERE sqlite_table = ?1 ORDER BY ordinal",
    )?;
    let mut indexes = conn.prepare(
        "SELECT index_name, definition, is_primary FROM _pgmirror_indexes WHERE sqlite_table = ?1",
    )?;
    // Format 1 did not record whether a constraint is the table's own.
    let local = if has_column(conn, "_pgmirror_constraints", "is_local")? {
        "is_local"
    } else {
        "1"
    };
    let mut constraints = conn.prepare(&format!(
        "SELECT constraint_name, kind, definition, {local} FROM _pgmirror_constraints WHERE sqlite_table = ?1"
    ))?;
    // Mirrors written before curated exports have no _pgmirror_curation table.
    let has_curation: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_pgmirror_curation'",
        [],
        |r| r.get(0),
    )?;
    let has_partitions: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_pgmirror_partitions'",
        [],
        |r| r.get(0),
    )?;
    for table in &mut tables {
        if has_partitions {
            table.partitions = conn
                .prepare_cached(
                    "SELECT schema_name, relation_name, parent_schema, parent_name, bound, partition_key \
                     FROM _pgmirror_partitions WHERE sqlite_table = ?1 ORDER BY position",
                )?
                .query_map([&table.sqlite_name], |r| {
                    Ok(MirrorPartition {
                        schema: r.get(0)?,
                        name: r.get(1)?,
                        parent_schema: r.get(2)?,
                        parent_name: r.get(3)?,
                        bound: r.get(4)?,
                        partition_key: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
        }
        if has_curation {
            table.curation = conn
                .prepare_cached("SELECT kind, detail FROM _pgmirror_curation WHERE sqlite_table = ?1")?
                .query_map([&table.sqlite_name], |r| {
                    Ok((
                        recorded_kind(r, 0, "curation kind", super::CurationKind::from_name)?,
                        r.get(1)?,
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
        }
        table.columns = columns
            .query_map([&table.sqlite_name], |r| {
                Ok(MirrorColumn {
                    name: r.get(0)?,
                    pg_type: r.get(1)?,
                    type_oid: r.get::<_, i64>(2)? as u32,
                    not_null: r.get(3)?,
                    default: r.get(4)?,
                    identity: r.get(5)?,
                    generated: r.get(6)?,
                    codec: r.get(7)?,
                    typmod: r.get(8)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        table.indexes = indexes
            .query_map([&table.sqlite_name], |r| {
                Ok(MirrorIndex {
                    name: r.get(0)?,
                    definition: r.get(1)?,
                    is_primary: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        table.constraints = constraints
            .query_map([&table.sqlite_name], |r| {
                Ok(MirrorConstraint {
                    name: r.get(0)?,
                    kind: r.get(1)?,
                    definition: r.get(2)?,
                    is_local: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(tables)
}

fn read_sequences(conn: &Connection) -> rusqlite::Result<Vec<MirrorSequence>> {
    conn.prepare(
        "SELECT schema_name, sequence_name, data_type, start_value, increment, min_value, max_value, cycle, \
                last_value, owner_schema, owner_table, owner_column, is_identity FROM _pgmirror_sequences",
    )?
    .query_map([], |r| {
        Ok(MirrorSequence {
            schema: r.get(0)?,
            name: r.get(1)?,
            data_type: r.get(2)?,
            start: r.get(3)?,
            increment: r.get(4)?,
            min: r.get(5)?,
            max: r.get(6)?,
            cycle: r.get(7)?,
            last_value: r.get(8)?,
            owner_schema: r.get(9)?,
            owner_table: r.get(10)?,
            owner_column: r.get(11)?,
            is_identity: r.get(12)?,
        })
    })?
    .collect()
}

fn read_types(conn: &Connection) -> rusqlite::Result<Vec<MirrorType>> {
    // Mirrors written before types were recorded have no _pgmirror_types table.
    let present: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_pgmirror_types'",
        [],
        |r| r.get(0),
    )?;
    if !present {
        return Ok(Vec::new());
    }
    conn.prepare("SELECT schema_name, type_name, kind, create_sql FROM _pgmirror_types")?
        .query_map([], |r| {
            Ok(MirrorType {
                schema: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                create_sql: r.get(3)?,
            })
        })?
        .collect()
}

fn read_views(conn: &Connection) -> rusqlite::Result<Vec<MirrorView>> {
    // Format 1 recorded neither options nor whether a materialized view held data.
    let extra = if has_column(conn, "_pgmirror_views", "populated")? {
        "options, populated"
    } else {
        "NULL, 1"
    };
    conn.prepare(&format!(
        "SELECT schema_name, view_name, kind, definition, {extra} FROM _pgmirror_views"
    ))?
    .query_map([], |r| {
        Ok(MirrorView {
            schema: r.get(0)?,
            name: r.get(1)?,
            kind: relation_kind(r, 2)?,
            definition: r.get(3)?,
            options: r.get(4)?,
            populated: r.get(5)?,
        })
    })?
    .collect()
}

pub(super) fn has_table(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |r| r.get(0),
    )
}

fn read_objects(conn: &Connection) -> rusqlite::Result<Vec<MirrorObject>> {
    if !has_table(conn, "_pgmirror_objects")? {
        return Ok(Vec::new());
    }
    conn.prepare(
        "SELECT kind, schema_name, object_name, sqlite_table, create_sql FROM _pgmirror_objects ORDER BY position",
    )?
    .query_map([], |r| {
        Ok(MirrorObject {
            kind: recorded_kind(r, 0, "object kind", super::ObjectKind::from_name)?,
            schema: r.get(1)?,
            name: r.get(2)?,
            sqlite_table: r.get(3)?,
            create_sql: r.get(4)?,
        })
    })?
    .collect()
}
