//! A fresh Postgres database per test, created through the admin URL and named uniquely.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

use crate::{Endpoints, Result, SupportError, unique_name};

/// A database that exists only for one test: it is dropped when the value is (also when the
/// test fails and unwinds), or earlier with [`TestDatabase::drop_database`], so a long-lived
/// shared server does not fill up with test databases.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates `<prefix>_<unique>` and connects a small pool to it.
    pub async fn create(endpoints: &Endpoints, prefix: &str) -> Result<Self> {
        let admin_url = endpoints.postgres_admin_url.clone();
        let name = unique_name(prefix).replace('-', "_");
        let unreachable = |e: sqlx::Error| SupportError::Unreachable {
            server: "postgres",
            endpoint: admin_url.clone(),
            source: Box::new(e),
        };
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .map_err(unreachable)?;
        // The name is ours (ASCII letters, digits, underscores), so quoting it is enough: it cannot
        // carry an injection, which is what AssertSqlSafe asserts.
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .map_err(|e| SupportError::Create {
                server: "postgres",
                what: "database",
                name: name.clone(),
                message: e.to_string(),
            })?;
        let _ = admin.close().await;

        let options: PgConnectOptions = admin_url
            .parse::<PgConnectOptions>()
            .map_err(unreachable)?
            .database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(unreachable)?;
        Ok(Self {
            name,
            url,
            pool,
            admin_url,
            dropped: false,
        })
    }

    /// Closes the pool and drops the database now, reporting a failure.
    pub async fn drop_database(mut self) -> Result<()> {
        self.pool.close().await;
        self.dropped = true;
        drop_named(&self.admin_url, &self.name).await
    }
}

impl Drop for TestDatabase {
    /// Drops the database on a thread of its own (no async drop; the test's runtime may be
    /// shutting down). `WITH (FORCE)` ends the pool's connections.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_named(&admin_url, &name))
                .map_err(|e| e.to_string())
        });
        if let Ok(Err(error)) = dropper.join() {
            eprintln!("test database {} not dropped: {error}", self.name);
        }
    }
}

async fn drop_named(admin_url: &str, name: &str) -> Result<()> {
    let mut admin =
        PgConnection::connect(admin_url)
            .await
            .map_err(|e| SupportError::Unreachable {
                server: "postgres",
                endpoint: admin_url.to_owned(),
                source: Box::new(e),
            })?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .map_err(|e| SupportError::Create {
        server: "postgres",
        what: "database (drop)",
        name: name.to_owned(),
        message: e.to_string(),
    })?;
    let _ = admin.close().await;
    Ok(())
}
