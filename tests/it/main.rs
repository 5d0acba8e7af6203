//! Integration tests against a real PostgreSQL (see support.rs for the throwaway cluster).

mod archive;
mod backup_db;
mod backupset;
mod cancel;
mod cluster;
mod compare;
mod connection;
mod consistency;
mod csv;
mod curation;
mod datasets;
mod encryption;
mod failures;
mod offsite;
mod oracle;
mod output;
mod properties;
mod queryable;
mod reader;
mod recovery;
mod relations;
mod restore;
mod serve;
mod support;
mod sync;
mod types;
