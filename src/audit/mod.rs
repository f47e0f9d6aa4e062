//! Integrity structures shared by the writer and by verifiers. Pure: no I/O.

pub mod chain;
pub mod merkle;
