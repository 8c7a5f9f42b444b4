//! PostgreSQL, the system of record: a connection pool with bounded waits that fails fast
//! at start, and the migration runner for `sql/migrations`.

mod migrate;
mod pool;

pub use migrate::{embedded_migrations, migrate, Migration, MigrationError, MigrationReport};
pub use pool::{connect, describe, pg_config, DbError};

/// The pool type every role uses.
pub type Pool = deadpool_postgres::Pool;
