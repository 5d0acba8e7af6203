//! The catalog model: what pgmirror needs to know about the source database, read once
//! inside the exported snapshot.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::field;
use crate::convert::TypeInfo;
use crate::error::{Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    PartitionedTable,
    MaterializedView,
    View,
    /// Not a relation: the result of a `--query`, exported as a table.
    Query,
}

impl RelationKind {
    fn from_relkind(relkind: &str) -> Option<Self> {
        Some(match relkind {
            "r" => RelationKind::Table,
            "p" => RelationKind::PartitionedTable,
            "m" => RelationKind::MaterializedView,
            "v" => RelationKind::View,
            _ => return None,
        })
    }

    /// The kind a [`RelationKind::name`] names, as the mirror stores it.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            RelationKind::Table,
            RelationKind::PartitionedTable,
            RelationKind::MaterializedView,
            RelationKind::View,
            RelationKind::Query,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::PartitionedTable => "partitioned table",
            RelationKind::MaterializedView => "materialized view",
            RelationKind::View => "view",
            RelationKind::Query => "query",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// For a partition: the root of its partition tree.
    pub partition_root: Option<u32>,
    /// For a partition: its immediate parent and its bound (`FOR VALUES ...`).
    pub partition_parent: Option<u32>,
    pub partition_bound: Option<String>,
    /// For a partitioned table: its key (`RANGE (taken)`).
    pub partition_key: Option<String>,
    pub populated: bool,
    pub estimated_rows: f64,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    pub constraints: Vec<Constraint>,
    /// Inheritance parents (not a partition's parent), in `INHERITS` order.
    pub inherits: Vec<u32>,
    /// The table access method (`heap` for most; None for views and partitioned tables).
    pub access_method: Option<String>,
    pub triggers: Vec<Trigger>,
    /// `COMMENT ON` statements for it and its columns, constraints, indexes and triggers.
    pub comments: Vec<String>,
}

impl Relation {
    pub fn qualified_name(&self) -> String {
        super::qualified(&self.schema, &self.name)
    }

    /// `schema.name` as a user writes it, for messages.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub attnum: i16,
    pub name: String,
    /// `format_type(atttypid, atttypmod)`, e.g. `character varying(255)`.
    pub type_text: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub not_null: bool,
    pub default: Option<String>,
    /// pg_attribute.attidentity: "" or "a" (ALWAYS) or "d" (BY DEFAULT).
    pub identity: String,
    /// pg_attribute.attgenerated: "" or "s" (stored).
    pub generated: String,
    /// Defined by the relation itself, not (only) inherited from a parent.
    pub is_local: bool,
    /// `schema.collation` when the column's collation is not its type's default.
    pub collation: Option<String>,
    pub type_info: TypeInfo,
}

#[derive(Debug, Clone)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    pub primary: bool,
    pub definition: String,
    pub method: String,
    pub has_expressions: bool,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub name: String,
    /// pg_constraint.contype: p, u, f, c, x, t.
    pub kind: String,
    pub definition: String,
    pub columns: Vec<String>,
    pub referenced_relation: Option<u32>,
    pub referenced_columns: Vec<String>,
    /// Defined by the relation itself, not (only) inherited from a parent.
    pub is_local: bool,
}

/// A user trigger of a relation.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    /// `pg_get_triggerdef`.
    pub definition: String,
    /// pg_trigger.tgenabled: O (origin), D (disabled), R (replica), A (always).
    pub enabled: String,
}

/// A user function that a default, check, generated column, index, trigger, view or type
/// of the database calls.
#[derive(Debug, Clone)]
pub struct Function {
    pub schema: String,
    /// Name and identity arguments: `norm(text)`.
    pub signature: String,
    /// `pg_get_functiondef` without its `OR REPLACE`.
    pub definition: String,
}

/// An access method made with `CREATE ACCESS METHOD`.
#[derive(Debug, Clone)]
pub struct AccessMethod {
    pub name: String,
    /// The statement that creates it.
    pub create_sql: String,
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub schema: String,
    pub name: String,
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cycle: bool,
    pub last_value: Option<i64>,
    pub owner_relation: Option<u32>,
    pub owner_column: Option<String>,
    pub is_identity: bool,
}

#[derive(Debug, Clone)]
pub struct ViewDefinition {
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    pub definition: String,
    /// `reloptions` as `WITH (...)` takes them (`check_option=local, security_barrier=true`).
    pub options: Option<String>,
    /// False for a materialized view made or refreshed WITH NO DATA.
    pub populated: bool,
}

/// A type a restore with `--create` may have to make: an enum, a domain, a standalone
/// composite, a range or a base type, or an extension.
#[derive(Debug, Clone)]
pub struct UserType {
    pub schema: String,
    pub name: String,
    /// "enum", "domain", "composite", "range", "base" or "extension".
    pub kind: String,
    /// The statement that creates it.
    pub create_sql: String,
}

#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: i32,
    pub database: String,
    /// Bytes per heap page (8192 unless compiled otherwise).
    pub block_size: i64,
    /// The locale money was printed in; `csv export` from a mirror prints it the same way.
    pub lc_monetary: String,
    /// Fraction digits of money in that locale: the scale of `money::numeric`.
    pub money_scale: u16,
    /// When the snapshot's transaction started, UTC, RFC 3339.
    pub snapshot_time: String,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub server: ServerInfo,
    pub relations: Vec<Relation>,
    pub sequences: Vec<Sequence>,
    pub views: Vec<ViewDefinition>,
    pub types: TypeResolver,
    pub user_types: Vec<UserType>,
    pub functions: Vec<Function>,
    pub access_methods: Vec<AccessMethod>,
}

impl Catalog {
    pub fn relation(&self, oid: u32) -> Option<&Relation> {
        self.relations.iter().find(|r| r.oid == oid)
    }

    /// Every partition below a partitioned table (leaves and partitioned children), each
    /// after its parent.
    pub fn partition_tree(&self, root: u32) -> Vec<&Relation> {
        let mut ordered: Vec<&Relation> = Vec::new();
        let mut parents = vec![root];
        while let Some(parent) = parents.pop() {
            for child in self
                .relations
                .iter()
                .filter(|r| r.partition_parent == Some(parent))
            {
                ordered.push(child);
                parents.push(child.oid);
            }
        }
        ordered
    }

    /// The partitions (leaves with data) of a partitioned table.
    pub fn partition_leaves(&self, root: u32) -> impl Iterator<Item = &Relation> {
        self.relations
            .iter()
            .filter(move |r| r.partition_root == Some(root) && r.kind == RelationKind::Table)
    }
}

#[derive(Debug, Clone)]
struct TypeRow {
    typtype: u8,
    base: u32,
    /// A domain's type modifier on its base (`numeric(12,2)`); -1 for none.
    typmod: i32,
    element: u32,
    is_array: bool,
}

/// Resolves a type to what its codec depends on: domains to their base, arrays to their element.
#[derive(Debug, Clone)]
pub struct TypeResolver(HashMap<u32, TypeRow>);

impl TypeResolver {
    /// The base type under any domains, its typtype, and the first type modifier met on the
    /// way (starting with `typmod`, the column's own).
    fn base(&self, mut oid: u32, mut typmod: i32) -> (u32, u8, i32) {
        for _ in 0..32 {
            match self.0.get(&oid) {
                Some(row) if row.typtype == b'd' => {
                    if typmod < 0 {
                        typmod = row.typmod;
                    }
                    oid = row.base;
                }
                Some(row) => return (oid, row.typtype, typmod),
                None => break,
            }
        }
        (oid, b'b', typmod)
    }

    /// What the codec of a value of type `oid` with modifier `typmod` depends on.
    pub fn info(&self, oid: u32, typmod: i32) -> TypeInfo {
        let (base_oid, typtype, typmod) = self.base(oid, typmod);
        let element = self
            .0
            .get(&base_oid)
            .filter(|row| row.is_array && row.element != 0)
            .map(|row| {
                let (element, typtype, _) = self.base(row.element, -1);
                (element, typtype)
            });
        TypeInfo {
            base_oid,
            typmod,
            typtype,
            element,
        }
    }
}

fn first_byte(text: &str) -> u8 {
    text.bytes().next().unwrap_or(b'b')
}

/// Reads the whole catalog. Runs inside the snapshot transaction.
pub async fn load(client: &Client) -> Result<Catalog> {
    let row = client
        .query_one(include_str!("sql/server.sql"), &[])
        .await
        .context("reading the server version")?;
    let q = "the server settings";
    let server = ServerInfo {
        version: field(&row, q, "version")?,
        version_num: field(&row, q, "version_num")?,
        database: field(&row, q, "database")?,
        block_size: field(&row, q, "block_size")?,
        lc_monetary: field(&row, q, "lc_monetary")?,
        money_scale: u16::try_from(field::<i32>(&row, q, "money_scale")?).unwrap_or(2),
        snapshot_time: field(&row, q, "snapshot_time")?,
    };

    let q = "pg_type";
    let mut type_rows = HashMap::new();
    for row in client
        .query(include_str!("sql/types.sql"), &[])
        .await
        .context("reading pg_type")?
    {
        let typtype: String = field(&row, q, "typtype")?;
        let type_row = TypeRow {
            typtype: first_byte(&typtype),
            base: field(&row, q, "base")?,
            typmod: field(&row, q, "typmod")?,
            element: field(&row, q, "element")?,
            is_array: field(&row, q, "is_array")?,
        };
        type_rows.insert(field::<u32>(&row, q, "oid")?, type_row);
    }
    let types = TypeResolver(type_rows);

    let q = "the relations";
    let mut relations = Vec::new();
    for row in client
        .query(include_str!("sql/relations.sql"), &[])
        .await
        .context("listing relations")?
    {
        let relkind: String = field(&row, q, "relkind")?;
        let Some(kind) = RelationKind::from_relkind(&relkind) else {
            continue;
        };
        relations.push(Relation {
            oid: field(&row, q, "oid")?,
            schema: field(&row, q, "schema_name")?,
            name: field(&row, q, "name")?,
            kind,
            partition_root: field(&row, q, "partition_root")?,
            partition_key: field(&row, q, "partition_key")?,
            partition_bound: field(&row, q, "partition_bound")?,
            partition_parent: field(&row, q, "partition_parent")?,
            populated: field(&row, q, "populated")?,
            estimated_rows: field::<f64>(&row, q, "estimated_rows")?.max(0.0),
            columns: Vec::new(),
            indexes: Vec::new(),
            constraints: Vec::new(),
            inherits: field(&row, q, "inherits")?,
            access_method: field(&row, q, "access_method")?,
            triggers: Vec::new(),
            comments: Vec::new(),
        });
    }
    let position: HashMap<u32, usize> = relations.iter().enumerate().map(|(i, r)| (r.oid, i)).collect();

    let q = "the columns";
    for row in client
        .query(include_str!("sql/columns.sql"), &[])
        .await
        .context("reading columns")?
    {
        let Some(&at) = position.get(&field::<u32>(&row, q, "relation")?) else {
            continue;
        };
        let type_oid: u32 = field(&row, q, "type_oid")?;
        let typmod: i32 = field(&row, q, "typmod")?;
        relations[at].columns.push(Column {
            attnum: field(&row, q, "attnum")?,
            name: field(&row, q, "name")?,
            type_text: field(&row, q, "type_text")?,
            type_oid,
            typmod,
            not_null: field(&row, q, "not_null")?,
            default: field(&row, q, "default_expr")?,
            identity: field(&row, q, "identity")?,
            generated: field(&row, q, "generated")?,
            is_local: field(&row, q, "is_local")?,
            collation: field(&row, q, "collation")?,
            type_info: types.info(type_oid, typmod),
        });
    }

    let q = "the indexes";
    for row in client
        .query(include_str!("sql/indexes.sql"), &[])
        .await
        .context("reading indexes")?
    {
        let Some(&at) = position.get(&field::<u32>(&row, q, "relation")?) else {
            continue;
        };
        relations[at].indexes.push(Index {
            name: field(&row, q, "name")?,
            unique: field(&row, q, "is_unique")?,
            primary: field(&row, q, "is_primary")?,
            definition: field(&row, q, "definition")?,
            method: field(&row, q, "method")?,
            has_expressions: field(&row, q, "has_expressions")?,
            columns: field(&row, q, "columns")?,
        });
    }

    let q = "the constraints";
    for row in client
        .query(include_str!("sql/constraints.sql"), &[])
        .await
        .context("reading constraints")?
    {
        let Some(&at) = position.get(&field::<u32>(&row, q, "relation")?) else {
            continue;
        };
        let referenced: u32 = field(&row, q, "referenced_relation")?;
        relations[at].constraints.push(Constraint {
            name: field(&row, q, "name")?,
            kind: field(&row, q, "kind")?,
            definition: field(&row, q, "definition")?,
            referenced_relation: (referenced != 0).then_some(referenced),
            columns: field(&row, q, "columns")?,
            referenced_columns: field(&row, q, "referenced_columns")?,
            is_local: field(&row, q, "is_local")?,
        });
    }

    let q = "the triggers";
    for row in client
        .query(include_str!("sql/triggers.sql"), &[])
        .await
        .context("reading triggers")?
    {
        let Some(&at) = position.get(&field::<u32>(&row, q, "relation")?) else {
            continue;
        };
        relations[at].triggers.push(Trigger {
            name: field(&row, q, "name")?,
            definition: field(&row, q, "definition")?,
            enabled: field(&row, q, "enabled")?,
        });
    }

    let q = "the comments";
    for row in client
        .query(include_str!("sql/comments.sql"), &[])
        .await
        .context("reading comments")?
    {
        let Some(&at) = position.get(&field::<u32>(&row, q, "relation")?) else {
            continue;
        };
        relations[at].comments.push(field(&row, q, "statement")?);
    }

    let q = "the sequences";
    let mut sequences = Vec::new();
    for row in client
        .query(include_str!("sql/sequences.sql"), &[])
        .await
        .context("reading sequences")?
    {
        sequences.push(Sequence {
            schema: field(&row, q, "schema_name")?,
            name: field(&row, q, "name")?,
            data_type: field(&row, q, "data_type")?,
            start: field(&row, q, "start_value")?,
            increment: field(&row, q, "increment")?,
            min: field(&row, q, "min_value")?,
            max: field(&row, q, "max_value")?,
            cycle: field(&row, q, "cycle")?,
            last_value: field(&row, q, "last_value")?,
            owner_relation: field(&row, q, "owner_relation")?,
            owner_column: field(&row, q, "owner_column")?,
            is_identity: field::<Option<bool>>(&row, q, "is_identity")?.unwrap_or(false),
        });
    }

    let q = "the view definitions";
    let mut views = Vec::new();
    for row in client
        .query(include_str!("sql/views.sql"), &[])
        .await
        .context("reading view definitions")?
    {
        let Some(kind) = RelationKind::from_relkind(&field::<String>(&row, q, "relkind")?) else {
            continue;
        };
        views.push(ViewDefinition {
            schema: field(&row, q, "schema_name")?,
            name: field(&row, q, "name")?,
            kind,
            definition: field(&row, q, "definition")?,
            options: field(&row, q, "options")?,
            populated: field(&row, q, "populated")?,
        });
    }

    let mut user_types = Vec::new();
    for row in client
        .query(
            "SELECT extname::text AS name FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname",
            &[],
        )
        .await
        .context("reading extensions")?
    {
        let name: String = field(&row, "the extensions", "name")?;
        user_types.push(UserType {
            schema: String::new(),
            create_sql: format!("CREATE EXTENSION IF NOT EXISTS {}", super::quote_ident(&name)),
            name,
            kind: "extension".to_owned(),
        });
    }
    let q = "the user-defined types";
    for row in client
        .query(include_str!("sql/user_types.sql"), &[])
        .await
        .context("reading user-defined types")?
    {
        let schema: String = field(&row, q, "schema_name")?;
        let name: String = field(&row, q, "name")?;
        let typtype: String = field(&row, q, "typtype")?;
        let body: String = field::<Option<String>>(&row, q, "body")?.unwrap_or_default();
        let qualified = super::qualified(&schema, &name);
        let (kind, create_sql) = match typtype.as_str() {
            "e" => ("enum", format!("CREATE TYPE {qualified} AS ENUM ({body})")),
            "d" => ("domain", format!("CREATE DOMAIN {qualified} AS {body}")),
            "r" => ("range", format!("CREATE TYPE {qualified} AS RANGE ({body})")),
            // As pg_dump does: a shell type, its I/O functions, then the type.
            "b" => {
                let functions: String = field::<Option<String>>(&row, q, "io_functions")?.unwrap_or_default();
                (
                    "base",
                    format!("CREATE TYPE {qualified};\n{functions};\nCREATE TYPE {qualified} ({body})"),
                )
            }
            _ => ("composite", format!("CREATE TYPE {qualified} AS ({body})")),
        };
        user_types.push(UserType {
            schema,
            name,
            kind: kind.to_owned(),
            create_sql,
        });
    }
    let q = "the functions the schema calls";
    let mut functions = Vec::new();
    for row in client
        .query(include_str!("sql/functions.sql"), &[])
        .await
        .context("reading the functions the schema calls")?
    {
        functions.push(Function {
            schema: field(&row, q, "schema_name")?,
            signature: field(&row, q, "signature")?,
            definition: field(&row, q, "definition")?,
        });
    }
    let q = "the access methods";
    let mut access_methods = Vec::new();
    for row in client
        .query(include_str!("sql/access_methods.sql"), &[])
        .await
        .context("reading access methods")?
    {
        let name: String = field(&row, q, "name")?;
        let kind = match field::<String>(&row, q, "amtype")?.as_str() {
            "i" => "INDEX",
            _ => "TABLE",
        };
        let handler: String = field(&row, q, "handler")?;
        access_methods.push(AccessMethod {
            create_sql: format!(
                "CREATE ACCESS METHOD {} TYPE {kind} HANDLER {handler}",
                super::quote_ident(&name)
            ),
            name,
        });
    }
    Ok(Catalog {
        server,
        relations,
        sequences,
        views,
        types,
        user_types,
        functions,
        access_methods,
    })
}

/// Size in bytes of each relation; call after the relations are locked.
pub async fn relation_sizes(client: &Client, oids: &[u32]) -> Result<HashMap<u32, i64>> {
    let mut sizes = HashMap::new();
    for row in client
        .query(include_str!("sql/sizes.sql"), &[&oids])
        .await
        .context("reading relation sizes")?
    {
        sizes.insert(
            field(&row, "the relation sizes", "oid")?,
            field(&row, "the relation sizes", "size_bytes")?,
        );
    }
    Ok(sizes)
}
