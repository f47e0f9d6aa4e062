//! Free space on the data directory's filesystem, and the refusal of appends while it is
//! low.
//!
//! The writer asks [`DiskSpace::admit`] before each group: below the configured minimum
//! the whole group is refused with [`StoreError::DiskFull`] and nothing is written, so the
//! disk does not fill under RocksDB in the middle of a write. If a write fails for want of
//! space anyway (another process filled the disk, or the minimum is 0), RocksDB stops
//! accepting writes and recovers by itself once enough space is free; until a probe sees
//! that, appends stay refused. Reads never depend on any of this.
//!
//! Each change between accepting and refusing is logged once, not once per request: a
//! full disk must not also flood the log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rocksdb::{WriteBatch, DB};

use super::StoreError;

/// The data directory's free space and whether appends are refused for want of it.
#[derive(Debug)]
pub struct DiskSpace {
    path: PathBuf,
    minimum: AtomicU64,
    refusing: AtomicBool,
}

impl DiskSpace {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            minimum: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
        }
    }

    /// Keeps at least `bytes` free: appends are refused below it. 0 turns the check off.
    pub fn keep_free(&self, bytes: u64) {
        self.minimum.store(bytes, Ordering::Relaxed);
    }

    /// The minimum kept free, in bytes.
    pub fn minimum(&self) -> u64 {
        self.minimum.load(Ordering::Relaxed)
    }

    /// Bytes an unprivileged writer may still use on the data directory's filesystem.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.path)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Whether appends are being refused for want of space.
    pub fn is_refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// Before a group: `DiskFull` if the free space is below the minimum.
    pub(super) fn admit(&self) -> Result<(), StoreError> {
        let minimum = self.minimum();
        if minimum == 0 {
            return Ok(());
        }
        match self.free_bytes() {
            Ok(free) if free < minimum => {
                let err = StoreError::DiskFull { free, minimum };
                self.refuse(&err);
                Err(err)
            }
            Ok(_) => Ok(()),
            // Cannot tell: let the write itself decide.
            Err(e) => {
                tracing::debug!(cause = %e, "cannot read the data directory's free space");
                Ok(())
            }
        }
    }

    /// Appends are refused from now on (a group was refused, or failed for want of space).
    pub(super) fn refuse(&self, why: &StoreError) {
        if !self.refusing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                cause = %why,
                "appends refused: the data directory's disk is full or below its minimum free space; reads and eligibility go on, and appends resume by themselves once space is freed"
            );
        }
    }

    /// A group was written: appends are accepted again.
    pub(super) fn accepted(&self) {
        if self.refusing.swap(false, Ordering::Relaxed) {
            tracing::info!("disk space available again: appends resumed");
        }
    }

    /// While refusing: whether appends could resume now, that is, the free space is at the
    /// minimum and RocksDB accepts a write again (an empty batch: it answers with its
    /// stored error while stopped, and writes nothing otherwise). Clears the refusal if so.
    pub(super) fn probe(&self, db: &DB) -> bool {
        if !self.is_refusing() {
            return true;
        }
        if self.admit().is_err() {
            return false;
        }
        match db.write(WriteBatch::default()) {
            Ok(()) => {
                self.accepted();
                true
            }
            Err(_) => false,
        }
    }
}
