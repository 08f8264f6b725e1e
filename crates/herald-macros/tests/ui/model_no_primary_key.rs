use herald::Model;

#[derive(Model, Clone)]
struct Edition {
    isbn: String,
    title: String,
}

fn main() {}
