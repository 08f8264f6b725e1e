//! Column values: what Herald binds as parameters and decodes from rows, and the Rust field types a
//! model may have.

use std::fmt;

use chrono::{DateTime, Utc};

/// A column value. Every value Herald sends to a database is bound as a parameter of this type.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (SQLite INTEGER, PostgreSQL BIGINT; INT/SMALLINT columns are read and written too).
    Int(i64),
    /// A float (REAL / DOUBLE PRECISION).
    Float(f64),
    /// A boolean (SQLite stores 0/1).
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes (BLOB / BYTEA).
    Bytes(Vec<u8>),
    /// A UTC timestamp (SQLite: RFC 3339 text with microseconds, which sorts; PostgreSQL: TIMESTAMPTZ).
    Timestamp(DateTime<Utc>),
    /// A JSON document (SQLite: text; PostgreSQL: JSONB).
    Json(serde_json::Value),
}

impl Value {
    /// The value as JSON, as `AnyModel::to_json` and fixtures show it.
    pub fn to_json(&self) -> serde_json::Value {
        self.clone().into_json()
    }

    /// The value as JSON, as [`to_json`](Self::to_json), moving its text instead of copying it.
    pub fn into_json(self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Int(i) => J::from(i),
            Value::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            Value::Bool(b) => J::Bool(b),
            Value::Text(s) => J::String(s),
            Value::Bytes(b) => J::Array(b.into_iter().map(J::from).collect()),
            Value::Timestamp(t) => J::String(format_timestamp(&t)),
            Value::Json(j) => j,
        }
    }

    /// A value of type `ty` from JSON (fixtures, task payloads).
    pub fn from_json(ty: SqlType, json: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value as J;
        Ok(match (ty, json) {
            (_, J::Null) => Value::Null,
            (SqlType::Int, J::Number(n)) => {
                Value::Int(n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?)
            }
            (SqlType::Float, J::Number(n)) => {
                Value::Float(n.as_f64().ok_or_else(|| format!("{n} is not a number"))?)
            }
            (SqlType::Bool, J::Bool(b)) => Value::Bool(*b),
            (SqlType::Text, J::String(s)) => Value::Text(s.clone()),
            (SqlType::Bytes, J::Array(items)) => Value::Bytes(
                items
                    .iter()
                    .map(|i| i.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<_>>()
                    .ok_or("bytes must be an array of numbers 0..=255")?,
            ),
            (SqlType::Timestamp, J::String(s)) => Value::Timestamp(parse_timestamp(s)?),
            (SqlType::Json, j) => Value::Json(j.clone()),
            (ty, j) => return Err(format!("expected {ty}, got JSON {j}")),
        })
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v.into())
            }
        }
    )*};
}
value_from!(i64 => Int, i32 => Int, u32 => Int, f64 => Float, bool => Bool, String => Text, &str => Text, Vec<u8> => Bytes, DateTime<Utc> => Timestamp, serde_json::Value => Json);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Text(s) => f.write_str(s),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::Timestamp(t) => f.write_str(&format_timestamp(t)),
            Value::Json(j) => write!(f, "{j}"),
        }
    }
}

/// Timestamps as SQLite stores them: RFC 3339, UTC, microseconds, `Z`; lexical order is time order.
pub(crate) fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp: {e}"))
}

/// The SQL type of a column, as the schema helper creates it and rows are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqlType {
    /// Integer.
    Int,
    /// Float.
    Float,
    /// Boolean.
    Bool,
    /// Text.
    Text,
    /// Bytes.
    Bytes,
    /// UTC timestamp.
    Timestamp,
    /// JSON.
    Json,
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SqlType::Int => "an integer",
            SqlType::Float => "a float",
            SqlType::Bool => "a boolean",
            SqlType::Text => "text",
            SqlType::Bytes => "bytes",
            SqlType::Timestamp => "a timestamp",
            SqlType::Json => "JSON",
        })
    }
}

/// A Rust type a model field may have. `#[derive(Model)]` uses it for every field, so an unsupported
/// type is a compile error at that field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a model field",
    note = "supported: integers, f32/f64, bool, String, Vec<u8>, chrono::DateTime<Utc>, serde_json::Value, and Option of these"
)]
pub trait Field: Sized {
    /// The column's SQL type.
    const SQL_TYPE: SqlType;
    /// Whether the column accepts NULL (`Option<T>`).
    const NULLABLE: bool = false;
    /// The value to bind.
    fn to_value(&self) -> Value;
    /// The field from a decoded column; `Err` says why it does not fit.
    fn from_value(value: Value) -> Result<Self, String>;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const SQL_TYPE: SqlType = SqlType::Int;
            fn to_value(&self) -> Value {
                Value::Int(i64::from(*self))
            }
            fn from_value(value: Value) -> Result<Self, String> {
                match value {
                    Value::Int(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} does not fit in {}", stringify!($t))),
                    other => Err(mismatch(Self::SQL_TYPE, &other)),
                }
            }
        }
    )*};
}
int_field!(i64, i32, i16, u32, u16, u8, i8);

fn mismatch(expected: SqlType, got: &Value) -> String {
    match got {
        Value::Null => {
            format!("expected {expected}, got NULL (use Option<T> for a nullable column)")
        }
        other => format!("expected {expected}, got {other:?}"),
    }
}

impl Field for f64 {
    const SQL_TYPE: SqlType = SqlType::Float;
    fn to_value(&self) -> Value {
        Value::Float(*self)
    }
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Float(x) => Ok(x),
            Value::Int(i) => Ok(i as f64),
            other => Err(mismatch(Self::SQL_TYPE, &other)),
        }
    }
}

impl Field for f32 {
    const SQL_TYPE: SqlType = SqlType::Float;
    fn to_value(&self) -> Value {
        Value::Float(f64::from(*self))
    }
    fn from_value(value: Value) -> Result<Self, String> {
        f64::from_value(value).map(|x| x as f32)
    }
}

impl Field for bool {
    const SQL_TYPE: SqlType = SqlType::Bool;
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Bool(b) => Ok(b),
            Value::Int(i) => Ok(i != 0),
            other => Err(mismatch(Self::SQL_TYPE, &other)),
        }
    }
}

impl Field for String {
    const SQL_TYPE: SqlType = SqlType::Text;
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s),
            other => Err(mismatch(Self::SQL_TYPE, &other)),
        }
    }
}

impl Field for Vec<u8> {
    const SQL_TYPE: SqlType = SqlType::Bytes;
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Bytes(b) => Ok(b),
            other => Err(mismatch(Self::SQL_TYPE, &other)),
        }
    }
}

impl Field for DateTime<Utc> {
    const SQL_TYPE: SqlType = SqlType::Timestamp;
    fn to_value(&self) -> Value {
        Value::Timestamp(*self)
    }
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Timestamp(t) => Ok(t),
            Value::Text(s) => parse_timestamp(&s),
            other => Err(mismatch(Self::SQL_TYPE, &other)),
        }
    }
}

impl Field for serde_json::Value {
    const SQL_TYPE: SqlType = SqlType::Json;
    fn to_value(&self) -> Value {
        Value::Json(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Json(j) => Ok(j),
            Value::Text(s) => serde_json::from_str(&s).map_err(|e| format!("invalid JSON: {e}")),
            other => Err(mismatch(Self::SQL_TYPE, &other)),
        }
    }
}

impl<T: Field> Field for Option<T> {
    const SQL_TYPE: SqlType = T::SQL_TYPE;
    const NULLABLE: bool = true;
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_value)
    }
    fn from_value(value: Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_values_and_json() {
        let t = parse_timestamp("2026-11-24T07:01:51.123456Z").unwrap();
        assert_eq!(DateTime::<Utc>::from_value(t.to_value()).unwrap(), t);
        assert_eq!(format_timestamp(&t), "2026-11-24T07:01:51.123456Z");
        assert_eq!(Option::<i32>::from_value(Value::Null).unwrap(), None);
        assert_eq!(
            i16::from_value(Value::Int(70_000)).unwrap_err(),
            "70000 does not fit in i16"
        );
        assert!(
            String::from_value(Value::Null)
                .unwrap_err()
                .contains("Option<T>")
        );
        for (ty, v) in [
            (SqlType::Int, Value::Int(-3)),
            (SqlType::Text, Value::Text("é".into())),
            (SqlType::Bytes, Value::Bytes(vec![0, 255])),
            (SqlType::Timestamp, Value::Timestamp(t)),
            (SqlType::Json, Value::Json(serde_json::json!({"a": [1]}))),
            (SqlType::Bool, Value::Bool(true)),
        ] {
            assert_eq!(Value::from_json(ty, &v.to_json()).unwrap(), v);
        }
        assert_eq!(
            Value::from_json(SqlType::Int, &serde_json::json!("x")).unwrap_err(),
            r#"expected an integer, got JSON "x""#
        );
    }
}
