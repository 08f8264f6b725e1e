use herald::Model;

#[derive(Model, Clone)]
struct Book {
    id: Option<i64>,
    title: String,
    metadata: std::collections::HashMap<String, String>,
}

fn main() {}
