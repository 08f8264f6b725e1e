//! Fixtures: Django's JSON format (`[{"model": "Book", "pk": 1, "fields": {..}}]`), turned into
//! instances that the store saves with `raw = true`. Every failure names the row and the field.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::value::Value;

/// The instances of `M` that `json` holds, in order.
pub(crate) fn parse<M: Model>(json: &str) -> Result<Vec<M>> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| Error::Fixture {
        what: "file".to_owned(),
        reason: format!("not a JSON list of rows: {e}"),
    })?;
    rows.iter()
        .enumerate()
        .map(|(i, row)| instance::<M>(i + 1, row))
        .collect()
}

fn instance<M: Model>(number: usize, row: &serde_json::Value) -> Result<M> {
    let model = row
        .get("model")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    if !model.eq_ignore_ascii_case(M::NAME)
        && !model.ends_with(&format!(".{}", M::NAME.to_lowercase()))
    {
        return Err(Error::Fixture {
            what: format!("row {number}"),
            reason: format!("model `{model}` is not {}", M::NAME),
        });
    }
    let empty = serde_json::Map::new();
    let fields = match row.get("fields") {
        None => &empty,
        Some(serde_json::Value::Object(fields)) => fields,
        Some(_) => {
            return Err(Error::Fixture {
                what: format!("row {number}"),
                reason: "`fields` must be an object".to_owned(),
            });
        }
    };
    let pk = row.get("pk");
    let what = format!(
        "row {number} ({} {})",
        M::NAME,
        pk.map_or_else(|| "(no pk)".to_owned(), |p| p.to_string())
    );
    if let Some(unknown) = fields.keys().find(|k| M::column_index(k).is_none()) {
        return Err(Error::Fixture {
            what,
            reason: format!("{} has no field `{unknown}`", M::NAME),
        });
    }
    let mut values = Vec::with_capacity(M::COLUMNS.len());
    for (i, column) in M::COLUMNS.iter().enumerate() {
        let json = if i == M::PK {
            pk.or_else(|| fields.get(column.name))
        } else {
            fields.get(column.name)
        };
        let value = match json {
            Some(json) => {
                Value::from_json(column.sql_type, json).map_err(|reason| Error::Fixture {
                    what: what.clone(),
                    reason: format!("field `{}`: {reason}", column.name),
                })?
            }
            None => Value::Null,
        };
        values.push(value);
    }
    M::from_values(values).map_err(|(column, reason)| Error::Fixture {
        what,
        reason: format!("field `{}`: {reason}", M::COLUMNS[column].name),
    })
}
