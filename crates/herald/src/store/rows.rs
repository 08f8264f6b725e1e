//! The statements of one model's rows, with no signal: read, insert or update, insert many, update
//! fields, delete by key. The lifecycle (`lifecycle.rs`) sends the signals around them.
//!
//! Every value is a bound parameter; table and column names come from the derive, which checked
//! them at compile time.

use std::sync::Arc;

use crate::error::{DbError, DbErrorKind, Error, Result, Target};
use crate::model::{Dialect, Model, column_list, placeholder, quote, sql_type_name};
use crate::store::backend::InsertAuto;
use crate::store::conn::{Conn, UPDATE_SHAPES, lock};
use crate::value::{SqlType, Value};

pub(crate) fn target<M: Model>(instance: &M) -> Target {
    Target {
        model: M::NAME,
        key: instance.pk_string(),
    }
}

/// The row with this key, or `None`.
pub(crate) fn get<M: Model>(conn: &Conn, key: Value) -> Result<Option<M>> {
    select_one(conn, &M::statements().get(conn.dialect()).select, key)
}

/// The row with this key as it is now, locked until the transaction ends (PostgreSQL's `FOR
/// UPDATE`), or `None`: what an update is about to change.
pub(crate) fn get_locked<M: Model>(conn: &Conn, key: Value) -> Result<Option<M>> {
    select_one(
        conn,
        &M::statements().get(conn.dialect()).select_locked,
        key,
    )
}

fn select_one<M: Model>(conn: &Conn, sql: &str, key: Value) -> Result<Option<M>> {
    let row =
        conn.statement(|b| b.query_first(sql, std::slice::from_ref(&key), column_types::<M>()));
    // The model and key, named only when something failed (a read by key is on the hot path).
    let target = || Target {
        model: M::NAME,
        key: Some(key.to_string()),
    };
    let row = row.map_err(|e| Error::write("reading", target(), e))?;
    // A row that does not decode is named by its own key column (the key asked for).
    let named_by_row = Target {
        model: M::NAME,
        key: None,
    };
    row.map(|row| decode::<M>(row, &named_by_row)).transpose()
}

/// Every row of `M`'s table, in key order.
pub(crate) fn all<M: Model>(conn: &Conn) -> Result<Vec<M>> {
    let sql = format!(
        "{} ORDER BY {}",
        M::statements().get(conn.dialect()).select_all,
        quote(M::COLUMNS[M::PK].name)
    );
    let target = Target {
        model: M::NAME,
        key: None,
    };
    let rows = conn.statement(|b| b.query(&sql, &[], column_types::<M>()));
    let rows = rows.map_err(|source| Error::Query {
        op: "listing",
        model: M::NAME,
        source,
    })?;
    rows.into_iter()
        .map(|row| decode::<M>(row, &target))
        .collect()
}

/// INSERT or UPDATE one row (only `fields`, when given); true when it inserted. An instance with
/// no key is inserted and gets the key the database assigned; one whose UPDATE matches nothing is
/// inserted with its key (Django's rule), unless only some fields were asked for
/// ([`Error::NotFound`]).
pub(crate) fn write_row<M: Model>(
    conn: &Conn,
    instance: &mut M,
    fields: Option<&[&str]>,
) -> Result<bool> {
    storable(conn.dialect(), "saving", instance)?;
    let sql = M::statements().get(conn.dialect());
    let fail = |source: DbError, instance: &M| Error::write("saving", target(instance), source);
    let Some(key) = instance.pk_value() else {
        if !M::AUTO_PK {
            return Err(Error::Database {
                op: "saving",
                target: target(instance),
                source: DbError::new(
                    DbErrorKind::Other,
                    "the primary key is not set, and the database does not assign this model's keys",
                ),
            });
        }
        if conn.pipelines_inserts() {
            let reserved = conn.statement(|b| b.reserve_key(M::TABLE, M::COLUMNS[M::PK].name));
            if let Some(key) = reserved.map_err(|e| fail(e, instance))? {
                set_key(instance, key)?;
                let params: Vec<Value> = (0..M::COLUMNS.len()).map(|i| instance.value(i)).collect();
                let held = conn.statement(|b| b.execute_held(&sql.insert, params));
                held.map_err(|e| fail(e, instance))?;
                return Ok(true);
            }
        }
        let params: Vec<Value> = non_pk_values(instance);
        let insert = InsertAuto {
            table: M::TABLE,
            key: M::COLUMNS[M::PK].name,
            returning: &sql.insert_auto,
            plain: &sql.insert_plain,
        };
        let key = conn.statement(|b| b.insert_auto(&insert, &params));
        let key = key.map_err(|e| fail(e, instance))?;
        set_key(instance, key)?;
        return Ok(true);
    };
    let changed = match fields {
        Some(fields) => {
            let mut params = field_values(instance, fields);
            params.push(key);
            let update = update_fields_sql::<M>(conn.dialect(), fields);
            conn.statement(|b| b.execute(&update, &params))
        }
        None => {
            let mut params = non_pk_values(instance);
            params.push(key);
            conn.statement(|b| b.execute(&sql.update, &params))
        }
    };
    if changed.map_err(|e| fail(e, instance))? > 0 {
        return Ok(false);
    }
    if fields.is_some() {
        return Err(Error::NotFound {
            target: target(instance),
        });
    }
    let params: Vec<Value> = (0..M::COLUMNS.len()).map(|i| instance.value(i)).collect();
    let inserted = conn.statement(|b| b.execute(&sql.insert, &params));
    inserted.map_err(|e| fail(e, instance))?;
    Ok(true)
}

/// Give a new instance the key the database assigned (or reserved) for it.
fn set_key<M: Model>(instance: &mut M, key: Value) -> Result<()> {
    instance.set_pk_value(key).map_err(|reason| {
        Error::write(
            "saving",
            target(instance),
            DbError::new(
                DbErrorKind::Other,
                format!("the returned key does not fit: {reason}"),
            ),
        )
    })
}

/// UPDATE `fields` of rows that exist; a row that is gone is [`Error::NotFound`] naming it. The
/// caller runs this in a transaction, so that on an error nothing of the call is kept.
///
/// PostgreSQL: one statement per batch of rows (`UPDATE .. FROM (VALUES ..)`, see
/// [`update_batch_sql`]), its count of updated rows compared with the batch's keys; when they
/// differ, one query finds the missing key. An instance given twice is written once, with its last
/// values, as two UPDATEs in a row would leave it. SQLite: one UPDATE per row, the statement
/// prepared once (SQLite runs a prepared statement without a round trip, so a row costs a step of
/// its virtual machine, not a message).
///
/// A statement that fails names the first instance of its batch on PostgreSQL; the database's
/// message names the row.
pub(crate) fn update_rows<M: Model>(conn: &Conn, instances: &[M], fields: &[&str]) -> Result<()> {
    let mut keys = Vec::with_capacity(instances.len());
    for instance in instances {
        storable(conn.dialect(), "bulk-updating", instance)?;
        let Some(key) = instance.pk_value() else {
            return Err(Error::NotFound {
                target: target(instance),
            });
        };
        keys.push(key);
    }
    match conn.dialect() {
        Dialect::Sqlite => update_each(conn, instances, keys, fields),
        Dialect::Postgres => update_batches(conn, instances, keys, fields),
    }
}

/// One UPDATE per row, through one prepared statement (the backend's statement cache).
fn update_each<M: Model>(
    conn: &Conn,
    instances: &[M],
    keys: Vec<Value>,
    fields: &[&str],
) -> Result<()> {
    let sql = update_fields_sql::<M>(conn.dialect(), fields);
    for (instance, key) in instances.iter().zip(keys) {
        let mut params = field_values(instance, fields);
        params.push(key);
        let changed = conn.statement(|b| b.execute(&sql, &params));
        if changed.map_err(|e| Error::write("bulk-updating", target(instance), e))? == 0 {
            return Err(Error::NotFound {
                target: target(instance),
            });
        }
    }
    Ok(())
}

/// PostgreSQL's limit on a statement's parameters.
const POSTGRES_MAX_PARAMS: usize = 65_535;

/// One `UPDATE .. FROM (VALUES ..)` per batch of at most 1000 rows and
/// [`POSTGRES_MAX_PARAMS`] parameters.
fn update_batches<M: Model>(
    conn: &Conn,
    instances: &[M],
    keys: Vec<Value>,
    fields: &[&str],
) -> Result<()> {
    // The last instance of each key, in the order of those last occurrences.
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    let mut rows: Vec<(usize, Value)> = Vec::with_capacity(keys.len());
    for (i, key) in keys.into_iter().enumerate().rev() {
        if seen.insert(key.to_string()) {
            rows.push((i, key));
        }
    }
    rows.reverse();
    let columns: Vec<usize> = fields
        .iter()
        .map(|f| M::column_index(f).expect("fields were checked"))
        .collect();
    let per_row = columns.len() + 1;
    let per_statement = (POSTGRES_MAX_PARAMS / per_row).clamp(1, 1000);
    for batch in rows.chunks(per_statement) {
        let shape = (std::any::TypeId::of::<M>(), columns.clone(), batch.len());
        let sql: Arc<str> = {
            let mut texts = lock(&conn.update_many);
            if texts.len() >= UPDATE_SHAPES && !texts.contains_key(&shape) {
                texts.clear();
            }
            texts
                .entry(shape)
                .or_insert_with(|| update_batch_sql::<M>(&columns, batch.len()).into())
                .clone()
        };
        let mut params = Vec::with_capacity(batch.len() * per_row);
        for (i, key) in batch {
            params.push(key.clone());
            params.extend(columns.iter().map(|c| instances[*i].value(*c)));
        }
        let first = &instances[batch[0].0];
        let changed = conn.statement(|b| b.execute(&sql, &params));
        let changed = changed.map_err(|e| Error::write("bulk-updating", target(first), e))?;
        if changed != batch.len() as u64 {
            return Err(missing(conn, instances, batch));
        }
    }
    Ok(())
}

/// The error for a batch that updated fewer rows than it has keys: [`Error::NotFound`] naming the
/// first instance whose key no row has (found with one query).
fn missing<M: Model>(conn: &Conn, instances: &[M], batch: &[(usize, Value)]) -> Error {
    let first = &instances[batch[0].0];
    let list = (1..=batch.len())
        .map(|n| placeholder(conn.dialect(), n))
        .collect::<Vec<_>>()
        .join(", ");
    let pk = quote(M::COLUMNS[M::PK].name);
    let sql = format!(
        "SELECT {pk} FROM {} WHERE {pk} IN ({list})",
        quote(M::TABLE)
    );
    let keys: Vec<Value> = batch.iter().map(|(_, key)| key.clone()).collect();
    let found = conn.statement(|b| b.query(&sql, &keys, &[M::COLUMNS[M::PK].sql_type]));
    let found: Vec<Value> = match found {
        Ok(rows) => rows.into_iter().flatten().collect(),
        Err(e) => return Error::write("bulk-updating", target(first), e),
    };
    let gone = batch
        .iter()
        .find(|(_, key)| !found.contains(key))
        .map_or(first, |(i, _)| &instances[*i]);
    Error::NotFound {
        target: target(gone),
    }
}

/// `UPDATE t SET a = v.c0, .. FROM (VALUES ($1::BIGINT, $2::TEXT, ..), ..) AS v(k, c0, ..) WHERE
/// t.pk = v.k` for `rows` rows of the key then `columns`. Every placeholder is cast to its column's
/// type, so that PostgreSQL knows the parameters' types (a VALUES list of bare parameters would be
/// text) and a NULL is a NULL of that type. The alias's columns are numbered, so that no field
/// name can clash with the key's.
fn update_batch_sql<M: Model>(columns: &[usize], rows: usize) -> String {
    let dialect = Dialect::Postgres;
    let types: Vec<&str> = std::iter::once(M::PK)
        .chain(columns.iter().copied())
        .map(|c| sql_type_name(dialect, M::COLUMNS[c].sql_type))
        .collect();
    let mut n = 0;
    let tuples = (0..rows)
        .map(|_| {
            let row = types
                .iter()
                .map(|ty| {
                    n += 1;
                    format!("{}::{ty}", placeholder(dialect, n))
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sets = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = \"herald_v\".\"c{i}\"", quote(M::COLUMNS[*c].name)))
        .collect::<Vec<_>>()
        .join(", ");
    let names = (0..columns.len())
        .map(|i| format!(", \"c{i}\""))
        .collect::<String>();
    let table = quote(M::TABLE);
    format!(
        "UPDATE {table} SET {sets} FROM (VALUES {tuples}) AS \"herald_v\"(\"k\"{names}) \
         WHERE {table}.{} = \"herald_v\".\"k\"",
        quote(M::COLUMNS[M::PK].name)
    )
}

/// DELETE the row of `instance`; true if there was one.
pub(crate) fn delete_row<M: Model>(conn: &Conn, instance: &M) -> Result<bool> {
    let Some(key) = instance.pk_value() else {
        return Err(Error::NotFound {
            target: target(instance),
        });
    };
    let sql = &M::statements().get(conn.dialect()).delete;
    let deleted = conn.statement(|b| b.execute(sql, std::slice::from_ref(&key)));
    Ok(deleted.map_err(|e| Error::write("deleting", target(instance), e))? > 0)
}

/// DELETE the rows of `instances` with as few statements as the database allows; returns how many
/// went. Every instance must have its key.
pub(crate) fn delete_rows<M: Model>(conn: &Conn, instances: &[M]) -> Result<u64> {
    let mut keys = Vec::with_capacity(instances.len());
    for instance in instances {
        let Some(key) = instance.pk_value() else {
            return Err(Error::NotFound {
                target: target(instance),
            });
        };
        keys.push(key);
    }
    let mut deleted = 0;
    for chunk in keys.chunks(1000) {
        let list = (1..=chunk.len())
            .map(|i| placeholder(conn.dialect(), i))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "DELETE FROM {} WHERE {} IN ({list})",
            quote(M::TABLE),
            quote(M::COLUMNS[M::PK].name)
        );
        let changed = conn.statement(|b| b.execute(&sql, chunk));
        deleted += changed.map_err(|e| Error::write("deleting", target(&instances[0]), e))?;
    }
    Ok(deleted)
}

/// INSERT every instance with as few statements as the database allows; instances without a key
/// get the keys the database assigned, in order.
pub(crate) fn insert_many<M: Model>(conn: &Conn, instances: &mut [M]) -> Result<()> {
    for instance in instances.iter() {
        storable(conn.dialect(), "bulk-creating", instance)?;
    }
    let auto: Vec<usize> = (0..instances.len())
        .filter(|i| M::AUTO_PK && instances[*i].pk_value().is_none())
        .collect();
    let keyed: Vec<usize> = (0..instances.len())
        .filter(|i| !(M::AUTO_PK && instances[*i].pk_value().is_none()))
        .collect();
    let columns_auto: Vec<usize> = (0..M::COLUMNS.len()).filter(|c| *c != M::PK).collect();
    let columns_all: Vec<usize> = (0..M::COLUMNS.len()).collect();
    let dialect = conn.dialect();
    let limit = match dialect {
        Dialect::Sqlite => 32_766,
        Dialect::Postgres => 65_535,
    };
    for (rows, columns, returning) in [(&auto, &columns_auto, true), (&keyed, &columns_all, false)]
    {
        let per_statement = (limit / columns.len().max(1)).clamp(1, 1000);
        for chunk in rows.chunks(per_statement) {
            let sql: Arc<str> = lock(&conn.insert_many)
                .entry((std::any::TypeId::of::<M>(), chunk.len(), returning))
                .or_insert_with(|| {
                    insert_many_sql::<M>(dialect, columns, chunk.len(), returning).into()
                })
                .clone();
            let params: Vec<Value> = chunk
                .iter()
                .flat_map(|i| columns.iter().map(|c| instances[*i].value(*c)))
                .collect();
            let first = &instances[chunk[0]];
            let fail = |e| Error::write("bulk-creating", target(first), e);
            if !returning {
                let inserted = conn.statement(|b| b.execute(&sql, &params));
                inserted.map_err(fail)?;
                continue;
            }
            let keys = conn.statement(|b| b.query(&sql, &params, &[SqlType::Int]));
            let keys = keys.map_err(fail)?;
            if keys.len() != chunk.len() {
                return Err(fail(DbError::new(
                    DbErrorKind::Other,
                    "INSERT returned a different number of keys",
                )));
            }
            for (i, key) in chunk.iter().zip(keys) {
                let key = key.into_iter().next().unwrap_or(Value::Null);
                instances[*i].set_pk_value(key).map_err(|reason| {
                    Error::write(
                        "bulk-creating",
                        target(&instances[*i]),
                        DbError::new(DbErrorKind::Other, reason),
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// Whether every value of `instance` can be stored, checked before any statement: PostgreSQL text
/// (and JSON) cannot hold a NUL character, and a statement carrying one fails with an encoding
/// error that names neither the field nor the row. SQLite stores it.
pub(crate) fn storable<M: Model>(dialect: Dialect, op: &'static str, instance: &M) -> Result<()> {
    if dialect != Dialect::Postgres {
        return Ok(());
    }
    for (i, column) in M::COLUMNS.iter().enumerate() {
        let nul = match instance.value(i) {
            Value::Text(text) => text.contains('\0'),
            Value::Json(json) => json.to_string().contains("\\u0000"),
            _ => false,
        };
        if nul {
            return Err(Error::Invalid {
                op,
                target: target(instance),
                field: column.name,
                reason: "holds a NUL character (\\0), which PostgreSQL cannot store in text"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

/// An unknown name in `fields` is [`Error::UnknownField`], naming the model's fields.
pub(crate) fn check_fields<M: Model>(fields: &[&str]) -> Result<()> {
    for field in fields {
        if M::column_index(field).is_none() {
            return Err(Error::UnknownField {
                model: M::NAME,
                field: (*field).to_owned(),
                known: M::COLUMNS
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}

fn field_values<M: Model>(instance: &M, fields: &[&str]) -> Vec<Value> {
    fields
        .iter()
        .map(|f| instance.value(M::column_index(f).expect("fields were checked")))
        .collect()
}

fn non_pk_values<M: Model>(instance: &M) -> Vec<Value> {
    (0..M::COLUMNS.len())
        .filter(|i| *i != M::PK)
        .map(|i| instance.value(i))
        .collect()
}

/// Each column's SQL type, in `M::COLUMNS` order (built once per model).
pub(crate) fn column_types<M: Model>() -> &'static [SqlType] {
    &M::statements().types
}

pub(crate) fn decode<M: Model>(row: Vec<Value>, target: &Target) -> Result<M> {
    // Only a failure names the key: a clone of an integer key allocates nothing.
    let key = row.get(M::PK).cloned();
    M::from_values(row).map_err(|(column, reason)| Error::Decode {
        target: Target {
            model: target.model,
            key: key
                .map(|key| key.to_string())
                .or_else(|| target.key.clone()),
        },
        column: M::COLUMNS[column].name,
        reason,
    })
}

/// PostgreSQL: UPDATE the row (only `fields`, when given) and answer the row as it was just
/// before, in one statement: `WITH old AS (SELECT .. FOR UPDATE) UPDATE .. FROM old RETURNING old.*`.
/// `None` when no row has the instance's key (nothing was written). For a save that reads what
/// it changes and has no `in_transaction` receiver: one round trip instead of a transaction of
/// three statements.
pub(crate) fn update_returning_previous<M: Model>(
    conn: &Conn,
    instance: &M,
    fields: Option<&[&str]>,
) -> Result<Option<M>> {
    storable(conn.dialect(), "saving", instance)?;
    let Some(key) = instance.pk_value() else {
        return Ok(None);
    };
    let dialect = Dialect::Postgres;
    let written: Vec<&str> = match fields {
        Some(fields) => fields.to_vec(),
        None => M::COLUMNS
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != M::PK)
            .map(|(_, c)| c.name)
            .collect(),
    };
    let mut params = field_values(instance, &written);
    params.push(key);
    let (table, pk) = (quote(M::TABLE), quote(M::COLUMNS[M::PK].name));
    let sets = written
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} = {}", quote(f), placeholder(dialect, i + 1)))
        .collect::<Vec<_>>()
        .join(", ");
    let old = M::COLUMNS
        .iter()
        .map(|c| format!("\"herald_old\".{}", quote(c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH \"herald_old\" AS (SELECT {} FROM {table} WHERE {pk} = {} FOR UPDATE) \
         UPDATE {table} SET {sets} FROM \"herald_old\" \
         WHERE {table}.{pk} = \"herald_old\".{pk} RETURNING {old}",
        column_list(M::COLUMNS),
        placeholder(dialect, written.len() + 1),
    );
    let rows = conn.statement(|b| b.query(&sql, &params, column_types::<M>()));
    let rows = rows.map_err(|e| Error::write("saving", target(instance), e))?;
    rows.into_iter()
        .next()
        .map(|row| decode::<M>(row, &target(instance)))
        .transpose()
}

fn update_fields_sql<M: Model>(dialect: Dialect, fields: &[&str]) -> String {
    let sets = fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} = {}", quote(f), placeholder(dialect, i + 1)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE {} SET {sets} WHERE {} = {}",
        quote(M::TABLE),
        quote(M::COLUMNS[M::PK].name),
        placeholder(dialect, fields.len() + 1)
    )
}

fn insert_many_sql<M: Model>(
    dialect: Dialect,
    columns: &[usize],
    rows: usize,
    returning: bool,
) -> String {
    let names = columns
        .iter()
        .map(|c| quote(M::COLUMNS[*c].name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut n = 0;
    let tuples = (0..rows)
        .map(|_| {
            let row = columns
                .iter()
                .map(|_| {
                    n += 1;
                    placeholder(dialect, n)
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("INSERT INTO {} ({names}) VALUES {tuples}", quote(M::TABLE));
    if returning {
        sql.push_str(" RETURNING ");
        sql.push_str(&quote(M::COLUMNS[M::PK].name));
    }
    sql
}
