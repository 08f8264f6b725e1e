use herald::Model;

#[derive(Model, Clone)]
struct Row<T> {
    id: Option<i64>,
    value: T,
}

fn main() {}
