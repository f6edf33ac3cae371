//! Shared library of gaze: the study config, the vignettes and their sample
//! plan, the Parquet tables, the object store and the job queue.
//!
//! Each concept lives in its own folder so that a reader finds it by name.

pub mod config;
pub mod error_report;
pub mod layout;
pub mod plan;
pub mod queue;
pub mod store;
pub mod study;
pub mod tables;
pub mod vignettes;
