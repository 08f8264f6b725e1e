//! Models and recorders shared by the dispatcher's tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use herald_dispatch::AnyModel;

#[derive(Debug, Clone, Default)]
pub struct Book {
    pub id: Option<i64>,
    pub title: String,
    pub slug: String,
}

impl AnyModel for Book {
    fn model_name(&self) -> &'static str {
        "Book"
    }
    fn pk_string(&self) -> Option<String> {
        self.id.map(|id| id.to_string())
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "title": self.title, "slug": self.slug })
    }
}
herald_dispatch::sender!(Book);

#[derive(Debug, Clone, Default)]
pub struct Author {
    pub id: Option<i64>,
    pub name: String,
}

impl AnyModel for Author {
    fn model_name(&self) -> &'static str {
        "Author"
    }
    fn pk_string(&self) -> Option<String> {
        self.id.map(|id| id.to_string())
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "name": self.name })
    }
}
herald_dispatch::sender!(Author);

pub fn book(id: i64, title: &str) -> Book {
    Book {
        id: Some(id),
        title: title.to_owned(),
        slug: String::new(),
    }
}

pub fn author(id: i64) -> Author {
    Author {
        id: Some(id),
        name: format!("author {id}"),
    }
}

/// What receivers saw, in order.
#[derive(Clone, Default, Debug)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}
