//! Vigil's jobs: work that runs to completion as Kubernetes Jobs and CronJobs, never inside a
//! recorder.
//!
//! - [`backfill`]: fetch a window of a camera's footage from its edge storage (SD card) into the
//!   store — only what the store lacks, verified, retried; a Job per `Backfill`.
//! - [`audit`]: the coverage audit of a pool's cameras (CronJob `vigil-audit-<pool>`).
//! - [`retention`]: delete footage older than each camera's retention (CronJob
//!   `vigil-retention-<pool>`).

pub mod audit;
pub mod backfill;
pub mod content;
pub mod error;
pub mod retention;

pub use error::{Error, Result};
