//! The worker's maintenance: heartbeats for the tasks it holds, the rescue of tasks whose worker
//! stopped (their lease expired; on PostgreSQL also their worker's session ended: see
//! `presence.rs`), and the pruning of old completed tasks. Each on a timer of its own; a failure
//! is a warning and the next turn tries again.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::db::Db;
use crate::store::ops::Store;
#[cfg(feature = "postgres")]
use crate::tasks::presence::{self, Presence};
use crate::tasks::queue;

/// How often completed tasks older than the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The maintenance timers of one running worker.
pub(crate) struct Maintenance {
    lease: Duration,
    retention: Duration,
    #[cfg(feature = "postgres")]
    name: String,
    /// PostgreSQL: this worker's presence lock (held while this lives) and its schema.
    #[cfg(feature = "postgres")]
    presence: Option<(Presence, Option<String>)>,
    next_heartbeat: Instant,
    next_rescue: Instant,
    #[cfg(feature = "postgres")]
    next_look: Instant,
    next_prune: Instant,
}

/// What a maintenance turn found.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    /// Tasks it put back to run: the worker should look for work at once.
    pub(crate) rescued: u64,
}

impl Maintenance {
    /// Start maintenance for the worker `name` on `db`: on PostgreSQL, first take its presence
    /// lock (before its first claim, so no task is ever held under a name without a presence).
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub(crate) async fn start(db: &Db, name: &str, lease: Duration, retention: Duration) -> Self {
        #[cfg(feature = "postgres")]
        let presence = match db.postgres_session() {
            Some((config, schema)) => {
                let key = presence::key(schema.as_deref(), name);
                let held_name = name.to_owned();
                tokio::task::spawn_blocking(move || Presence::hold(config, key, &held_name))
                    .await
                    .ok()
                    .flatten()
                    .map(|held| (held, schema))
            }
            None => None,
        };
        let now = Instant::now();
        Self {
            lease,
            retention,
            #[cfg(feature = "postgres")]
            name: name.to_owned(),
            #[cfg(feature = "postgres")]
            presence,
            next_heartbeat: now + lease / 3,
            next_rescue: now,
            #[cfg(feature = "postgres")]
            next_look: now + presence::LOOK_EVERY,
            next_prune: now + PRUNE_EVERY,
        }
    }

    /// When the next piece of maintenance is due.
    pub(crate) fn due(&self) -> Instant {
        let due = self
            .next_heartbeat
            .min(self.next_rescue)
            .min(self.next_prune);
        #[cfg(feature = "postgres")]
        if self.presence.is_some() {
            return due.min(self.next_look);
        }
        due
    }

    /// Do what is due: renew the leases of `held` (task id → attempt) every third of a lease;
    /// rescue expired leases every half lease; on PostgreSQL look for gone workers twice a second;
    /// prune every minute.
    pub(crate) async fn turn(&mut self, db: &Db, held: &HashMap<i64, u32>) -> Turn {
        let now = Instant::now();
        let mut turn = Turn::default();
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.lease / 3;
            let ids: Vec<(i64, u32)> = held.iter().map(|(k, v)| (*k, *v)).collect();
            let lease = self.lease;
            if let Err(error) = db
                .run(move |conn| queue::heartbeat(conn, &ids, lease))
                .await
            {
                tracing::warn!(target: "herald::worker", %error, "heartbeat failed");
            }
        }
        if now >= self.next_rescue {
            self.next_rescue = now + (self.lease / 2).max(Duration::from_millis(20));
            match db.run(queue::rescue).await {
                Ok(0) => {}
                Ok(n) => {
                    turn.rescued += n;
                    tracing::warn!(target: "herald::worker", rescued = n, "rescued tasks whose worker stopped (lease expired)");
                }
                Err(error) => tracing::warn!(target: "herald::worker", %error, "rescue failed"),
            }
        }
        #[cfg(feature = "postgres")]
        if let Some((_, schema)) = &self.presence
            && now >= self.next_look
        {
            self.next_look = now + presence::LOOK_EVERY;
            let (schema, me) = (schema.clone(), self.name.clone());
            match db
                .run(move |conn| presence::rescue_gone(conn, schema.as_deref(), &me))
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    turn.rescued += n;
                    tracing::warn!(target: "herald::worker", rescued = n, "rescued tasks whose worker is gone (its database session ended)");
                }
                Err(error) => {
                    tracing::warn!(target: "herald::worker", %error, "looking for gone workers failed");
                }
            }
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_EVERY;
            let retention = self.retention;
            if let Err(error) = db.run(move |conn| queue::prune(conn, retention)).await {
                tracing::warn!(target: "herald::worker", %error, "pruning failed");
            }
        }
        turn
    }
}
