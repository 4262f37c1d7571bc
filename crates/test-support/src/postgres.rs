//! A fresh Postgres database per test, created through the admin URL and named uniquely.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

use crate::{Endpoints, Result, SupportError, unique_name};

/// A database that exists only for one test. Dropping it does not remove the database (async
/// drop is not available); [`TestDatabase::drop_database`] does, and `scripts/dev down` removes
/// the throwaway cluster as a whole.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
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
        })
    }

    /// Closes the pool and drops the database.
    pub async fn drop_database(self) -> Result<()> {
        self.pool.close().await;
        let mut admin = PgConnection::connect(&self.admin_url).await.map_err(|e| {
            SupportError::Unreachable {
                server: "postgres",
                endpoint: self.admin_url.clone(),
                source: Box::new(e),
            }
        })?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .map_err(|e| SupportError::Create {
            server: "postgres",
            what: "database (drop)",
            name: self.name.clone(),
            message: e.to_string(),
        })?;
        let _ = admin.close().await;
        Ok(())
    }
}
