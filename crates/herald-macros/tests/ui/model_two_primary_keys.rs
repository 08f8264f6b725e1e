use herald::Model;

#[derive(Model, Clone)]
struct Edition {
    #[model(primary_key)]
    id: i64,
    #[model(primary_key)]
    isbn: String,
}

fn main() {}
