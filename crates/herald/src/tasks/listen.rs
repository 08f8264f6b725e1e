//! PostgreSQL `LISTEN`: wakes this process's workers when another process commits tasks. One
//! thread per `Db`, started by the first worker that runs on it and stopped when the `Db` goes.
//!
//! A notification only wakes a worker; workers poll as well, because notifications sent while the
//! listener reconnects are lost. The channel is per schema (`herald_tasks_<schema>`), so databases
//! in different schemas do not wake each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use crate::store::pg_config::PgConfig;

/// The channel workers listen on and enqueueing transactions notify, for `schema`: cut to 63
/// bytes, PostgreSQL's longest identifier, as the enqueueing side cuts it (`store/outbox.rs`).
pub(crate) fn channel(schema: &str) -> String {
    let mut channel = format!("herald_tasks_{schema}");
    let mut end = channel.len().min(MAX_CHANNEL_LEN);
    while !channel.is_char_boundary(end) {
        end -= 1;
    }
    channel.truncate(end);
    channel
}

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`).
const MAX_CHANNEL_LEN: usize = 63;

/// The LISTEN thread of one `Db`, kept as the `Db`'s extension: started once, stopped when the
/// `Db` (and so this) drops.
#[derive(Debug, Default)]
pub(crate) struct Listening {
    stop: Arc<AtomicBool>,
    started: std::sync::OnceLock<()>,
}

impl Listening {
    /// Start listening for `db` (PostgreSQL only), once.
    pub(crate) fn start(&self, db: &crate::Db) {
        let Some((config, schema)) = db.postgres_session() else {
            return;
        };
        self.started.get_or_init(|| {
            spawn(config, schema, db.tasks_added(), self.stop.clone());
        });
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Listens on its own connection and thread until `stop` is set.
fn spawn(
    config: PgConfig,
    schema: Option<String>,
    wake: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
) {
    let spawned = std::thread::Builder::new().name("herald-listen".to_owned()).spawn(move || {
        let channel = channel(schema.as_deref().unwrap_or("public"));
        while !stop.load(Ordering::Relaxed) {
            match listen(&config, &channel, &wake, &stop) {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(target: "herald::listen", %error, "LISTEN connection lost; reconnecting (workers keep polling meanwhile)");
                    // A notification may have been lost while disconnected: wake the workers to look.
                    wake.notify_one();
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(target: "herald::listen", %error, "cannot start the LISTEN thread; workers will poll");
    }
}

fn listen(
    config: &PgConfig,
    channel: &str,
    wake: &tokio::sync::Notify,
    stop: &AtomicBool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut client = crate::store::postgres::client(config)?;
    client.batch_execute(&format!("LISTEN \"{channel}\""))?;
    while !stop.load(Ordering::Relaxed) {
        {
            let mut notifications = client.notifications();
            let mut waiting = notifications.timeout_iter(Duration::from_millis(500));
            while let Some(_notification) = waiting.next()? {
                wake.notify_one();
            }
        }
        if client.is_closed() {
            // Fails on a closed connection, which sends us back to reconnect.
            client.execute("SELECT 1", &[])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_cut_to_postgresqls_longest_identifier() {
        assert_eq!(channel("shop"), "herald_tasks_shop");
        let long = channel(&"s".repeat(63));
        assert_eq!(long.len(), MAX_CHANNEL_LEN);
        assert!(long.starts_with("herald_tasks_sss"), "{long}");
    }
}
