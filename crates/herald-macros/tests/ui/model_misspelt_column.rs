use herald::prelude::*;

#[derive(herald::Model, Clone)]
struct Book {
    id: Option<i64>,
    title: String,
    price_cents: i64,
}

fn main() {
    let _cheap = Book::query().filter(Book::PRICE_CENT.lt(1000));
}
