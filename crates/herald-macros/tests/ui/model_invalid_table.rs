use herald::Model;

#[derive(Model, Clone)]
#[model(table = "Books")]
struct Book {
    id: Option<i64>,
    title: String,
}

fn main() {}
