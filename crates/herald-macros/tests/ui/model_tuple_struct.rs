use herald::Model;

#[derive(Model, Clone)]
struct Book(Option<i64>, String);

fn main() {}
