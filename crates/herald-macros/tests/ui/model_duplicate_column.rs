use herald::Model;

#[derive(Model, Clone)]
struct Book {
    id: Option<i64>,
    slug: String,
    #[model(column = "slug")]
    url: String,
}

fn main() {}
