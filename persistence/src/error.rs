//! The crate's errors: one enum, with variants an operator (or the node) can act on.
//!
//! Connection errors carry the URL with its password replaced by `***`, and a hint that names
//! the likely cause (wrong credentials, server not reachable), so a bad `--database-url` fails
//! the node's start-up with a sentence, not a panic.

use std::time::Duration;

use kuku_journal::StateError;

/// Errors of the database writer, the schema, the history queries and reconciliation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistenceError {
    /// The database URL is malformed or names an unsupported database.
    #[error(
        "invalid database URL {url:?}: {reason} (expected mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE or sqlite:PATH)"
    )]
    InvalidUrl { url: String, reason: String },

    /// The server could not be reached, refused the credentials, or the file could not be
    /// opened.
    #[error("cannot connect to the database at {url}: {hint}: {error}")]
    Connect {
        /// The URL with its password masked.
        url: String,
        hint: &'static str,
        error: sqlx::Error,
    },

    /// Creating or upgrading the schema failed.
    #[error("cannot migrate the schema of the database at {url}: {error}")]
    Migrate {
        url: String,
        error: sqlx::migrate::MigrateError,
    },

    /// A statement failed (the operation names what the writer or query was doing).
    #[error("database error while {op}: {error}")]
    Database {
        op: &'static str,
        error: sqlx::Error,
    },

    /// A database operation took longer than the configured timeout.
    #[error("database operation {op} did not finish within {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },

    /// The database has written further than the journal holds: it belongs to another data
    /// directory (or the journal lost its tail).
    #[error(
        "the database checkpoint (epoch {db_epoch}, seq {db_seq}) is ahead of the journal (epoch {journal_epoch}, last seq {journal_seq}): either the journal lost frames (restore them) or this database was written from another data directory (point --database-url at this node's own database, or an empty one)"
    )]
    CheckpointAhead {
        db_epoch: u64,
        db_seq: u64,
        journal_epoch: u64,
        journal_seq: u64,
    },

    /// The checkpoint row changed underneath the writer: another writer uses this database.
    #[error(
        "the database checkpoint moved underneath the writer (expected seq {expected}): is another node writing to the same database?"
    )]
    CheckpointConflict { expected: u64 },

    /// A row read back from the database does not hold what the schema promises.
    #[error("unexpected value in the database: {0}")]
    Corrupt(String),

    /// Rebuilding events or state from the journal failed.
    #[error("cannot re-derive from the journal: {0}")]
    Journal(#[from] StateError),

    /// The journal's frames could not be read.
    #[error("cannot read the journal: {0}")]
    JournalRead(#[from] kuku_journal::JournalError),

    /// The writer thread or its runtime could not be started.
    #[error("cannot start the database writer: {0}")]
    Start(String),

    /// A value to be written is not valid (reference data an operator typed, a mapping to an
    /// unregistered symbol): nothing was written.
    #[error("refused: {0}")]
    Invalid(String),
}

impl PersistenceError {
    /// Wraps a statement error with what was being done.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> PersistenceError {
        move |error| PersistenceError::Database { op, error }
    }

    /// True for errors that retrying cannot fix without an operator (constraint violations,
    /// schema mismatches, a foreign checkpoint); false for connection trouble and timeouts.
    pub fn needs_operator(&self) -> bool {
        match self {
            PersistenceError::Database { error, .. } => matches!(
                error,
                sqlx::Error::Database(e) if !is_transient_db_error(e.as_ref())
            ),
            PersistenceError::CheckpointConflict { .. }
            | PersistenceError::CheckpointAhead { .. }
            | PersistenceError::Corrupt(_)
            | PersistenceError::Invalid(_)
            | PersistenceError::Journal(_)
            | PersistenceError::JournalRead(_) => true,
            _ => false,
        }
    }
}

/// The MySQL / MariaDB error number of a database error (e.g. 1213 for a deadlock), if it is
/// one (`code()` is the SQLSTATE there, which groups many numbers).
pub(crate) fn mysql_error_number(error: &dyn sqlx::error::DatabaseError) -> Option<u16> {
    error
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number())
}

/// Database errors that a retry can fix: MySQL deadlock (1213, SQLSTATE 40001), lock wait
/// timeout (1205), server shutdown or gone (1053, 2006, 2013), too many connections (1040),
/// a killed query or connection (1317, 1927); SQLite busy and locked (5, 6).
fn is_transient_db_error(error: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(number) = mysql_error_number(error) {
        return matches!(
            number,
            1213 | 1205 | 1053 | 2006 | 2013 | 1040 | 1317 | 1927
        );
    }
    matches!(error.code().as_deref(), Some("5" | "6" | "40001"))
}

/// A short, human hint for a connection error.
pub(crate) fn connect_hint(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Database(e) => match (mysql_error_number(e.as_ref()), e.code().as_deref()) {
            (Some(1045), _) | (_, Some("28000")) => "wrong user name or password",
            (Some(1044), _) => "the user may not use this database",
            (Some(1049), _) => "no such database",
            _ => "the server refused the connection",
        },
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing listens at that host and port (is the server running?)"
        }
        sqlx::Error::Io(_) => "network error",
        sqlx::Error::PoolTimedOut => "no connection within the connect timeout",
        sqlx::Error::Configuration(_) => "the URL's options are not valid",
        sqlx::Error::Tls(_) => "TLS failed",
        _ => "connection failed",
    }
}
