//! Integration tests against a real PostgreSQL (see support.rs for the throwaway cluster).

mod compare;
mod consistency;
mod datasets;
mod failures;
mod reader;
mod relations;
mod support;
mod types;
