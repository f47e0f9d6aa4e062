//! Integrity structures shared by the writer and by verifiers. Pure: no I/O.

pub mod backup;
pub mod bundle;
pub mod chain;
pub mod checkpoint;
pub mod merkle;
pub mod proof;
