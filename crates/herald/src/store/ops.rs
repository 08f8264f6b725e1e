//! The typed operations `Db`, `Tx` and `Quiet` share: each moves its arguments into one job for a
//! connection thread and brings the results back, so that each is written once whatever queue it
//! goes to (autocommit writer, reader, or a pinned transaction).

use crate::error::Result;
use crate::model::Model;
use crate::store::conn::{Conn, SaveOptions, Saved};
use crate::store::pool::{Job, call, write};

/// How a save runs, owned so it can cross to the connection thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct Save {
    pub(crate) fields: Option<Vec<String>>,
    pub(crate) raw: bool,
    pub(crate) quiet: bool,
}

impl Save {
    pub(crate) fn fields(fields: &[&str]) -> Self {
        Self {
            fields: Some(fields.iter().map(|s| (*s).to_owned()).collect()),
            ..Self::default()
        }
    }

    pub(crate) fn quiet() -> Self {
        Self {
            quiet: true,
            ..Self::default()
        }
    }
}

/// Save `instance` on `jobs`' connection; the instance comes back with its key and what `pre_save`
/// receivers changed.
pub(crate) async fn save<M: Model>(
    jobs: &flume::Sender<Job>,
    instance: &mut M,
    how: Save,
) -> Result<Saved> {
    let mut copy = instance.clone();
    let (copy, saved) = write(jobs, move |conn| {
        let names: Option<Vec<&str>> = how
            .fields
            .as_ref()
            .map(|f| f.iter().map(String::as_str).collect());
        let options = SaveOptions {
            fields: names.as_deref(),
            raw: how.raw,
            quiet: how.quiet,
        };
        let saved = conn.save_with(&mut copy, options)?;
        Ok((copy, saved))
    })
    .await?;
    *instance = copy;
    Ok(saved)
}

/// Run `f` over a copy of `instances` on `jobs`' connection and move the copies back (bulk writes
/// assign keys and let `pre_save` receivers change the instances).
pub(crate) async fn bulk<M: Model, R: Send + 'static>(
    jobs: &flume::Sender<Job>,
    instances: &mut [M],
    f: impl FnOnce(&Conn, &mut [M]) -> Result<R> + Send + 'static,
) -> Result<R> {
    let mut copies = instances.to_vec();
    let (copies, result) = call(jobs, move |conn| {
        let result = f(conn, &mut copies)?;
        Ok((copies, result))
    })
    .await?;
    for (instance, copy) in instances.iter_mut().zip(copies) {
        *instance = copy;
    }
    Ok(result)
}

/// Run the write `f` with a copy of `instance` on `jobs`' connection (deletes).
pub(crate) async fn with<M: Model, R: Send + 'static>(
    jobs: &flume::Sender<Job>,
    instance: &M,
    f: impl FnOnce(&Conn, &M) -> Result<R> + Send + 'static,
) -> Result<R> {
    let copy = instance.clone();
    write(jobs, move |conn| f(conn, &copy)).await
}
