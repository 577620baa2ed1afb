//! Processors. `batch` configures how exporters group spooled items (it runs after the spool,
//! so batching never holds acknowledged data only in memory).

pub mod batch;
