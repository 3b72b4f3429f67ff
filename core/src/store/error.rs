//! What can go wrong in the store, and what each failure means to the app.

use rusqlite::ErrorCode;

use crate::error::Error;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("the disk is full ({0})")]
    Full(String),
    #[error("the store file is damaged: {0}")]
    Corrupt(String),
    #[error(
        "the store was written by a newer Pulselink (schema {found}, this build reads up to {supported})"
    )]
    Incompatible { found: i32, supported: i32 },
    #[error("store error: {0}")]
    Io(String),
    /// The encryption key is missing or not the file's.
    #[error("outbox encryption: {0}")]
    Key(String),
}

impl StoreError {
    pub(super) fn from_sqlite(op: &str, e: rusqlite::Error) -> Self {
        let code = e.sqlite_error_code();
        let msg = format!("{op}: {e}");
        match code {
            Some(ErrorCode::DiskFull) => StoreError::Full(msg),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt(msg),
            _ => StoreError::Io(msg),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full(m) => Error::DiskFull(m),
            StoreError::Corrupt(m) => Error::StoreCorrupt(m),
            e @ StoreError::Incompatible { .. } => Error::Store(e.to_string()),
            StoreError::Io(m) => Error::Store(m),
            e @ StoreError::Key(_) => Error::InvalidConfig(e.to_string()),
        }
    }
}
