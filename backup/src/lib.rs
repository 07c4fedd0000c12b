//! Backups (issue 17; PITR and seeding build on it): one streaming pipeline from a database
//! tool's output to one or more repositories, and back.
//!
//! - [`pipeline`]: SHA-256 of the plain stream → zstd → age encryption → chunked objects, and
//!   the reverse with every check (bounded memory whatever the data size).
//! - [`repo`]: repositories — a local directory or S3-compatible object storage, both through
//!   `object_store` — and the object layout every backup uses.
//! - [`manifest`]: the self-describing manifest written beside each backup's data, so a
//!   repository and the key are enough to list and restore every backup.
//! - [`keys`]: age recipients and identities as the configuration names them.
//! - [`verify`]: re-reading a stored backup against its manifest, with or without the key.
//! - [`catalog`]: the node's local record of backups, jobs and runs (SQLite), which works
//!   while etcd and the coordinator are down.

pub mod archive;
pub mod catalog;
pub mod instructions;
pub mod keys;
pub mod manifest;
pub mod pipeline;
pub mod placement;
pub mod repo;
pub mod retention;
pub mod schedule;
pub mod verify;
