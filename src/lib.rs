//! pgmirror turns a PostgreSQL database into a portable SQLite mirror.
//!
//! ```text
//! coordinator: BEGIN REPEATABLE READ; pg_export_snapshot(); catalog  (pg::)
//!      │
//!      ▼
//! plan: tables → COPY tasks, largest first                           (plan::)
//!      │
//!      ▼
//! N source workers: SET TRANSACTION SNAPSHOT; COPY ... (FORMAT binary)  (source::)
//!      │  binary COPY reader (copy::) → column codecs (convert::) → RowBatch (batch::)
//!      ▼  bounded crossbeam channel
//! one SQLite writer: multi-row INSERTs in big transactions            (sink::)
//!      │
//!      ▼
//! finalize: indexes, _pgmirror_* metadata (mirror::), ANALYZE, fsync, rename
//! ```
//! `pipeline::export` wires it together; the CLI is a thin layer over it. Beside the flow:
//! `restore` and `csv` (loading through `load`), `archive` (pg_dump/pg_restore),
//! `backupset`; `sync` (a mirror that follows its database by logical decoding); `stop` (the stop request) and `publish` (atomic file publishing) are leaves
//! any layer may call.

pub mod archive;
pub mod backupset;
pub mod batch;
pub mod compress;
pub mod config;
pub mod convert;
pub mod copy;
pub mod crypt;
pub mod csv;
pub mod error;
pub mod failpoint;
pub mod load;
pub mod lock;
pub mod mirror;
pub mod offsite;
pub mod pg;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod publish;
pub mod recover;
pub mod restore;
pub mod service;
pub mod sink;
pub mod source;
pub mod stop;
pub mod sync;
pub mod tune;

pub use config::{ExportOptions, TableFilter};
pub use error::{Error, ErrorKind, Result};
pub use pipeline::{export, ExportSummary};
