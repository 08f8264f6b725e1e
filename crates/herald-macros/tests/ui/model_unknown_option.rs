use herald::Model;

#[derive(Model, Clone)]
#[model(table = "books", tabel = "book")]
struct Book {
    id: Option<i64>,
    #[model(primary)]
    title: String,
}

fn main() {}
