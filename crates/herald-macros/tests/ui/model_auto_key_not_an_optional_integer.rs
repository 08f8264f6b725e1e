use herald::Model;

#[derive(Model, Clone)]
struct Edition {
    #[model(primary_key, auto)]
    isbn: Option<String>,
    title: String,
}

fn main() {}
