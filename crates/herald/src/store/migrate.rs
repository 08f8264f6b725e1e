//! Herald's own tables, created by versioned migrations that run once per database.

use crate::error::Result;
use crate::model::Dialect;
use crate::store::conn::Conn;
use crate::value::{SqlType, Value};

/// One migration: a version, a name, and its SQL for a dialect.
#[derive(Debug)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: fn(Dialect) -> String,
}

/// Herald's migrations, in order. A database made by an earlier version gets the ones it lacks
/// at its next connect (version 2 adds the outbox beside the tasks table; tasks already in
/// `herald_tasks` stay there and run as before).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "herald_tasks",
        sql: crate::store::outbox::tasks_migration,
    },
    Migration {
        version: 2,
        name: "herald_outbox",
        sql: crate::store::outbox::outbox_migration,
    },
];

/// Apply the migrations `conn`'s database has not seen, each in its own transaction with its row
/// in `herald_migrations`. Concurrent processes serialise on the table (SQLite: the write lock;
/// PostgreSQL: an advisory lock while the table is created, then `LOCK TABLE`), so each migration
/// runs once.
pub(crate) fn apply(conn: &Conn, migrations: &[Migration]) -> Result<()> {
    let dialect = conn.dialect();
    conn.atomic(|conn| {
        if dialect == Dialect::Postgres {
            // Two `CREATE TABLE IF NOT EXISTS` at once may both find no table, and the second
            // then fails on the catalog's unique index: processes connecting at once take turns.
            conn.batch(
                "SELECT pg_advisory_xact_lock(hashtext('herald_migrations.' || current_schema()))",
            )?;
        }
        conn.batch(
            "CREATE TABLE IF NOT EXISTS herald_migrations (\
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
    })?;
    let (version_param, name_param, at_param) = match dialect {
        Dialect::Postgres => ("$1", "$2", "$3"),
        Dialect::Sqlite => ("?1", "?2", "?3"),
    };
    for migration in migrations {
        conn.atomic(|conn| {
            if dialect == Dialect::Postgres {
                conn.batch("LOCK TABLE herald_migrations IN EXCLUSIVE MODE")?;
            }
            let seen = conn.query(
                &format!("SELECT version FROM herald_migrations WHERE version = {version_param}"),
                &[Value::Int(migration.version)],
                &[SqlType::Int],
            )?;
            if !seen.is_empty() {
                return Ok(());
            }
            conn.batch(&(migration.sql)(dialect))?;
            conn.execute(
                &format!(
                    "INSERT INTO herald_migrations (version, name, applied_at) VALUES ({version_param}, {name_param}, {at_param})"
                ),
                &[
                    Value::Int(migration.version),
                    Value::Text(migration.name.to_owned()),
                    Value::Text(crate::value::format_timestamp(&chrono::Utc::now())),
                ],
            )?;
            tracing::info!(target: "herald::migrate", version = migration.version, name = migration.name, "applied migration");
            Ok(())
        })?;
    }
    Ok(())
}
