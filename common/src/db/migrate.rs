//! Applies `sql/migrations/NNNN_name.sql` in order, each exactly once, recording version,
//! name and SHA-256. Several processes may start at once: a transaction-scoped advisory lock
//! serialises them, and all pending migrations apply in one transaction or not at all. A
//! migration that changed after it was applied is refused, since the database no longer
//! matches what the code expects.

use sha2::{Digest, Sha256};

use super::pool::DbError;

/// Advisory lock key: "splatfle" in ASCII, so it is recognisable in `pg_locks`.
const LOCK_KEY: i64 = 0x7370_6c61_7466_6c65;

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// The migrations compiled into this binary, in version order.
pub fn embedded_migrations() -> &'static [Migration] {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"))
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration {version} ({name}) was changed after it was applied: the database has checksum {applied}, this build has {built}; write a new migration instead of editing an applied one")]
    Changed {
        version: u32,
        name: String,
        applied: String,
        built: String,
    },
    #[error("the database has migration {version} ({name}), which this build does not know; is an older binary running against a newer database?")]
    Unknown { version: u32, name: String },
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: u32,
        name: String,
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for MigrationError {
    fn from(err: tokio_postgres::Error) -> Self {
        MigrationError::Db(DbError::Query(err))
    }
}

impl From<deadpool_postgres::PoolError> for MigrationError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        MigrationError::Db(DbError::Pool(err))
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    pub applied: Vec<u32>,
    pub already_applied: Vec<u32>,
}

/// Applies every pending migration of `migrations` (sorted by version).
pub async fn migrate(
    pool: &super::Pool,
    migrations: &[Migration],
) -> Result<MigrationReport, MigrationError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS splatfleet_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let rows = tx
        .query(
            "SELECT version, name, checksum FROM splatfleet_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut report = MigrationReport::default();
    for row in rows {
        let version = u32::try_from(row.get::<_, i32>(0)).unwrap_or(u32::MAX);
        let name: String = row.get(1);
        let applied: String = row.get(2);
        let Some(known) = migrations.iter().find(|m| m.version == version) else {
            return Err(MigrationError::Unknown { version, name });
        };
        let built = known.checksum();
        if built != applied {
            return Err(MigrationError::Changed {
                version,
                name,
                applied,
                built,
            });
        }
        report.already_applied.push(version);
    }
    for migration in migrations {
        if report.already_applied.contains(&migration.version) {
            continue;
        }
        let failed = |source| MigrationError::Failed {
            version: migration.version,
            name: migration.name.to_owned(),
            source,
        };
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        let version = i32::try_from(migration.version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO splatfleet_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&version, &migration.name, &migration.checksum()],
        )
        .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        report.applied.push(migration.version);
    }
    tx.commit().await?;
    Ok(report)
}
