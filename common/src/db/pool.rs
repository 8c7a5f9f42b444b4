//! Building the deadpool-postgres pool from config, with wait, create and recycle timeouts,
//! and a first connection taken at once so an unreachable database is a clear error at
//! start rather than a hang at the first task.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

use crate::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot build the PostgreSQL pool for {target}: {message}")]
    Build { target: String, message: String },
    #[error("cannot connect to PostgreSQL at {target}: {message}")]
    Unreachable { target: String, message: String },
    #[error("PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// `user@host:port/dbname`, never with the password.
pub fn describe(settings: &DatabaseSettings) -> String {
    format!(
        "{}@{}:{}/{}",
        settings.user, settings.host, settings.port, settings.dbname
    )
}

/// The connection settings every connection of ours uses, the pool's and the puller's
/// listening one.
pub fn pg_config(settings: &DatabaseSettings) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&settings.host)
        .port(settings.port)
        .user(&settings.user)
        .dbname(&settings.dbname)
        .application_name("splatfleet")
        .connect_timeout(Duration::from_millis(settings.create_timeout_ms));
    if let Some(password) = &settings.password {
        pg.password(password.expose_secret());
    }
    pg
}

/// Builds the pool and checks that one connection can be made.
pub async fn connect(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    let target = describe(settings);
    let create_timeout = Duration::from_millis(settings.create_timeout_ms);
    let manager = Manager::from_config(
        pg_config(settings),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(settings.pool_max_size)
        .wait_timeout(Some(Duration::from_millis(settings.wait_timeout_ms)))
        .create_timeout(Some(create_timeout))
        .recycle_timeout(Some(Duration::from_millis(settings.recycle_timeout_ms)))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| DbError::Build {
            target: target.clone(),
            message: err.to_string(),
        })?;
    let client = pool.get().await.map_err(|err| DbError::Unreachable {
        target: target.clone(),
        message: pool_error_message(&err),
    })?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|err| DbError::Unreachable {
            target: target.clone(),
            message: err.to_string(),
        })?;
    tracing::info!(database = %target, "connected to PostgreSQL");
    Ok(pool)
}

/// deadpool's messages hide the cause one level down; bring it up.
fn pool_error_message(err: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::PoolError;
    match err {
        PoolError::Backend(pg) => match std::error::Error::source(pg) {
            Some(cause) => format!("{pg}: {cause}"),
            None => pg.to_string(),
        },
        PoolError::Timeout(kind) => format!("timed out ({kind:?}) waiting for a connection"),
        other => other.to_string(),
    }
}
