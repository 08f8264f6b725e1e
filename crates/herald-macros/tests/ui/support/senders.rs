// Senders for the `#[receiver]` compile-fail cases (`include!`d, so each case stays one file).

#[derive(Debug)]
pub struct Book;

impl herald_dispatch::AnyModel for Book {
    fn model_name(&self) -> &'static str {
        "Book"
    }
    fn pk_string(&self) -> Option<String> {
        None
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
herald_dispatch::sender!(Book);

#[derive(Debug)]
pub struct Author;

impl herald_dispatch::AnyModel for Author {
    fn model_name(&self) -> &'static str {
        "Author"
    }
    fn pk_string(&self) -> Option<String> {
        None
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
herald_dispatch::sender!(Author);
