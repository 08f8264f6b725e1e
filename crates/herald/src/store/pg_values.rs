//! PostgreSQL values: how a [`Value`] is bound to a statement's parameter ([`Param`]) and how a
//! column is decoded into the [`SqlType`] asked for ([`Decoder`]). A value or column that does not
//! fit is an error naming both sides, never a silent conversion.

use std::error::Error as StdError;

use chrono::{DateTime, NaiveDateTime, Utc};
// `private::BytesMut` is the `bytes` re-export that `to_sql_checked!` itself names; taking it from
// there keeps `bytes` out of the manifest and always the version the driver uses.
use postgres::types::{FromSql, IsNull, ToSql, Type, private::BytesMut, to_sql_checked};
use postgres::{Column, Row};

use crate::error::{DbError, DbErrorKind};
use crate::store::postgres::error_chain;
use crate::value::{SqlType, Value};

/// A [`Value`] bound as a statement parameter.
///
/// It accepts every parameter type and checks the pairing in `to_sql`, so that a mismatch names
/// the value and the column type:
///
/// | value | PostgreSQL types |
/// |---|---|
/// | `Null` | any (binds NULL) |
/// | `Int` | `int8`, `int4` and `int2` (an error when out of range), `float8` |
/// | `Float` | `float8`, `float4` |
/// | `Bool` | `bool` |
/// | `Text` | `text`, `varchar`, `bpchar`, `name` |
/// | `Bytes` | `bytea` |
/// | `Timestamp` | `timestamptz`, and `timestamp` as the UTC wall-clock time |
/// | `Json` | `jsonb`, `json` |
#[derive(Debug)]
pub(crate) struct Param<'a>(pub(crate) &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Int(i), &Type::INT4) => match i32::try_from(*i) {
                Ok(i) => i.to_sql(ty, out),
                Err(_) => {
                    Err(format!("integer {i} is out of range for PostgreSQL type int4").into())
                }
            },
            (Value::Int(i), &Type::INT2) => match i16::try_from(*i) {
                Ok(i) => i.to_sql(ty, out),
                Err(_) => {
                    Err(format!("integer {i} is out of range for PostgreSQL type int2").into())
                }
            },
            // Exact up to 2^53, as a DOUBLE PRECISION literal would be.
            (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Float(x), &Type::FLOAT8) => x.to_sql(ty, out),
            (Value::Float(x), &Type::FLOAT4) => (*x as f32).to_sql(ty, out),
            (Value::Bool(b), &Type::BOOL) => b.to_sql(ty, out),
            (Value::Text(s), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                s.as_str().to_sql(ty, out)
            }
            (Value::Bytes(b), &Type::BYTEA) => b.as_slice().to_sql(ty, out),
            (Value::Timestamp(t), &Type::TIMESTAMPTZ) => t.to_sql(ty, out),
            (Value::Timestamp(t), &Type::TIMESTAMP) => t.naive_utc().to_sql(ty, out),
            (Value::Json(j), &Type::JSONB | &Type::JSON) => j.to_sql(ty, out),
            (value, ty) => Err(format!(
                "cannot bind {} to a parameter of PostgreSQL type {ty}",
                describe(value)
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// `params` as the driver takes them.
pub(crate) fn param_refs<'a>(params: &'a [Param<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// A value for an error message: its kind and, shortened, itself.
pub(crate) fn describe(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    let kind = match value {
        Value::Null => return "NULL".to_owned(),
        Value::Int(_) => "integer",
        Value::Float(_) => "float",
        Value::Bool(_) => "boolean",
        Value::Text(_) => "text",
        Value::Bytes(_) => return value.to_string(),
        Value::Timestamp(_) => "timestamp",
        Value::Json(_) => "JSON",
    };
    let shown = value.to_string();
    if shown.chars().count() > MAX_CHARS {
        let cut: String = shown.chars().take(MAX_CHARS).collect();
        format!("{kind} `{cut}...`")
    } else {
        format!("{kind} `{shown}`")
    }
}

/// How one result column becomes a [`Value`]: chosen once per query from the column's PostgreSQL
/// type and the wanted [`SqlType`], then applied to every row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Decoder {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Int2AsFloat,
    Int4AsFloat,
    Int8AsFloat,
    Bool,
    Text,
    Bytes,
    TimestampTz,
    /// `timestamp` (without time zone), taken as UTC.
    Timestamp,
    Json,
}

/// The decoder of every column, or an error naming the first column that cannot be read as wanted.
pub(crate) fn decoders(columns: &[Column], types: &[SqlType]) -> Result<Vec<Decoder>, DbError> {
    if columns.len() != types.len() {
        return Err(DbError::new(
            DbErrorKind::Other,
            format!(
                "the query returns {} columns ({}), but {} types were given to decode them",
                columns.len(),
                columns
                    .iter()
                    .map(Column::name)
                    .collect::<Vec<_>>()
                    .join(", "),
                types.len()
            ),
        ));
    }
    columns
        .iter()
        .zip(types)
        .map(|(column, wanted)| Decoder::for_column(column, *wanted))
        .collect()
}

impl Decoder {
    fn for_column(column: &Column, wanted: SqlType) -> Result<Decoder, DbError> {
        let ty = column.type_();
        let decoder = match (wanted, ty) {
            (SqlType::Int, &Type::INT2) => Decoder::Int2,
            (SqlType::Int, &Type::INT4) => Decoder::Int4,
            (SqlType::Int, &Type::INT8) => Decoder::Int8,
            (SqlType::Float, &Type::FLOAT4) => Decoder::Float4,
            (SqlType::Float, &Type::FLOAT8) => Decoder::Float8,
            (SqlType::Float, &Type::INT2) => Decoder::Int2AsFloat,
            (SqlType::Float, &Type::INT4) => Decoder::Int4AsFloat,
            (SqlType::Float, &Type::INT8) => Decoder::Int8AsFloat,
            (SqlType::Bool, &Type::BOOL) => Decoder::Bool,
            (SqlType::Text, &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                Decoder::Text
            }
            (SqlType::Bytes, &Type::BYTEA) => Decoder::Bytes,
            (SqlType::Timestamp, &Type::TIMESTAMPTZ) => Decoder::TimestampTz,
            (SqlType::Timestamp, &Type::TIMESTAMP) => Decoder::Timestamp,
            (SqlType::Json, &Type::JSONB | &Type::JSON) => Decoder::Json,
            (wanted, ty) => {
                return Err(DbError::new(
                    DbErrorKind::Other,
                    format!(
                        "column `{}` has PostgreSQL type {ty}, which cannot be read as {wanted}",
                        column.name()
                    ),
                ));
            }
        };
        Ok(decoder)
    }

    /// Column `i` of `row`; NULL is `Value::Null`.
    pub(crate) fn decode(self, row: &Row, i: usize) -> Result<Value, DbError> {
        let value = match self {
            Decoder::Int2 => get::<i16>(row, i)?.map(|x| Value::Int(x.into())),
            Decoder::Int4 => get::<i32>(row, i)?.map(|x| Value::Int(x.into())),
            Decoder::Int8 => get::<i64>(row, i)?.map(Value::Int),
            Decoder::Float4 => get::<f32>(row, i)?.map(|x| Value::Float(x.into())),
            Decoder::Float8 => get::<f64>(row, i)?.map(Value::Float),
            Decoder::Int2AsFloat => get::<i16>(row, i)?.map(|x| Value::Float(x.into())),
            Decoder::Int4AsFloat => get::<i32>(row, i)?.map(|x| Value::Float(x.into())),
            Decoder::Int8AsFloat => get::<i64>(row, i)?.map(|x| Value::Float(x as f64)),
            Decoder::Bool => get::<bool>(row, i)?.map(Value::Bool),
            Decoder::Text => get::<String>(row, i)?.map(Value::Text),
            Decoder::Bytes => get::<Vec<u8>>(row, i)?.map(Value::Bytes),
            Decoder::TimestampTz => get::<DateTime<Utc>>(row, i)?.map(Value::Timestamp),
            Decoder::Timestamp => {
                get::<NaiveDateTime>(row, i)?.map(|t| Value::Timestamp(t.and_utc()))
            }
            Decoder::Json => get::<serde_json::Value>(row, i)?.map(Value::Json),
        };
        Ok(value.unwrap_or(Value::Null))
    }
}

/// Column `i` of `row` as `T`, or `None` for NULL; an error names the column.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<Option<T>, DbError> {
    row.try_get::<_, Option<T>>(i).map_err(|err| {
        let column = &row.columns()[i];
        DbError::new(
            DbErrorKind::Other,
            format!(
                "cannot decode column `{}` (PostgreSQL type {}): {}",
                column.name(),
                column.type_(),
                error_chain(&err)
            ),
        )
    })
}
