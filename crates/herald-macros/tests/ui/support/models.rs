// Models for the background `#[receiver]` compile-fail cases (`include!`d, so each case stays one
// file): a background receiver's task rebuilds an instance, so its sender is a `herald::Model`.

#[derive(herald::Model, Clone, Debug)]
pub struct Book {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub title: String,
}

#[derive(herald::Model, Clone, Debug)]
pub struct Author {
    #[model(primary_key)]
    pub id: Option<i64>,
    pub name: String,
}
