//! The shop's HTTP side: a JSON API, a small HTML interface, the lab, the dashboard and
//! `/metrics`.

mod lab;
mod list;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald::Store;
use herald::{Db, Model};
use herald_axum::{
    DashboardOptions, SameOriginLayer, ServerTimingLayer, dashboard, metrics_router, validate_token,
};
use serde::Deserialize;
use serde_json::json;

use crate::shop::{AuditEntry, Author, Book, EmailSent, PriceChange, SearchEntry, cache};
use list::{BadRequest, Page, Params, page};

/// The stylesheet of the shop's pages and the lab (the dashboard's look), served as it is.
const SHOP_CSS: &str = include_str!("../static/shop.css");
/// The lab page's script.
const LAB_JS: &str = include_str!("../static/lab.js");

/// The whole application: the shop's routes and the lab (`/lab`) with Server-Timing on every
/// response, their stylesheet and script under `/static`, `/metrics`, and the dashboard under
/// `/_herald` (read-only unless `HERALD_DASHBOARD_TOKEN` is set).
///
/// Every route of the shop that changes state (the HTML forms, the JSON API and the lab's POSTs)
/// refuses requests another site makes in a visitor's browser ([`SameOriginLayer`]: 403 naming
/// that site); the dashboard applies the same rules to its own actions.
pub(crate) fn router(db: Db, dashboard_token: Option<String>) -> Router {
    let shop = Router::new()
        .route("/", get(home))
        .route("/authors", get(authors_page))
        .route("/books", post(html_create))
        .route("/books/{id}", get(book_page).post(html_update))
        .route("/books/{id}/edit", get(html_edit))
        .route("/books/{id}/delete", post(html_delete))
        .route("/api/books", get(list_books).post(create_book))
        .route(
            "/api/books/{id}",
            get(read_book).put(update_book).delete(delete_book),
        )
        .route("/api/books/{id}/search", get(read_index))
        .route("/api/books/{id}/prices", get(list_prices))
        .route("/api/authors", get(list_authors))
        .route("/api/audit", get(list_audit))
        .route("/api/emails", get(list_emails))
        .route("/api/tasks", get(list_tasks))
        .with_state(db.clone())
        .merge(lab::routes(crate::lab::Lab::new(db.clone())))
        .route(
            "/static/shop.css",
            get(|| async { asset("text/css", SHOP_CSS) }),
        )
        .route(
            "/static/lab.js",
            get(|| async { asset("text/javascript", LAB_JS) }),
        )
        .layer(SameOriginLayer::new());
    shop.merge(metrics_router(db.clone()))
        .nest(
            DASHBOARD_PATH,
            dashboard(
                db,
                DashboardOptions {
                    token: dashboard_token,
                    ..Default::default()
                },
            ),
        )
        .layer(ServerTimingLayer::new())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Where [`router`] mounts the dashboard.
pub(crate) const DASHBOARD_PATH: &str = "/_herald";
/// Where [`router`] serves the Prometheus metrics (`herald_axum::metrics_router`'s path).
pub(crate) const METRICS_PATH: &str = "/metrics";

/// The environment variable the dashboard's token comes from.
const TOKEN_ENV: &str = "HERALD_DASHBOARD_TOKEN";

/// The dashboard's token, from `HERALD_DASHBOARD_TOKEN`: `None` (a read-only dashboard) when it
/// is unset or empty; an error naming the variable when it is set to something that is not a
/// usable token (blank, shorter than 16 characters, or not visible ASCII). `main` checks it
/// before serving, so that a bad token is one `error:` line, not a panic after the URL.
pub(crate) fn dashboard_token() -> Result<Option<String>, String> {
    let token = match std::env::var(TOKEN_ENV) {
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!(
                "{TOKEN_ENV} is not valid UTF-8; the dashboard token must be visible ASCII"
            ));
        }
        Ok(token) if token.is_empty() => return Ok(None),
        Ok(token) => token,
    };
    validate_token(&token)
        .map(|()| Some(token))
        .map_err(|why| format!("{TOKEN_ENV} is refused: {why}"))
}

/// What a handler fails with: a store error (see [`status_of`]), or a request the shop cannot
/// read (400).
enum ApiError {
    Store(herald::Error),
    BadRequest(BadRequest),
}

/// The status a store error answers with: a receiver's veto or a value the database cannot store
/// is the client's to fix (422); a COMMIT whose outcome is unknown is 503 with `"outcome":
/// "unknown"` (the book may exist: look before retrying); a receiver that failed after the write
/// is 500 with `"kept": true` (the book exists: do not retry); anything else 500.
fn status_of(error: &herald::Error) -> (StatusCode, serde_json::Value) {
    let message = error.to_string();
    match error {
        herald::Error::AfterWrite { error: failure, .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": message, "receiver": failure.receiver().name(), "kept": true }),
        ),
        herald::Error::Receiver(failure) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": message, "receiver": failure.receiver().name() }),
        ),
        herald::Error::Invalid { field, .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": message, "field": field }),
        ),
        herald::Error::CommitUnknown { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": message, "outcome": "unknown" }),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": message }),
        ),
    }
}

impl From<herald::Error> for ApiError {
    fn from(e: herald::Error) -> Self {
        Self::Store(e)
    }
}

impl From<BadRequest> for ApiError {
    fn from(e: BadRequest) -> Self {
        Self::BadRequest(e)
    }
}

impl ApiError {
    /// The status, and the message a page shows.
    fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            ApiError::Store(e) => (status_of(e).0, e.to_string()),
            ApiError::BadRequest(e) => (StatusCode::BAD_REQUEST, e.0.clone()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Store(e) => {
                let (status, body) = status_of(&e);
                (status, Json(body)).into_response()
            }
            ApiError::BadRequest(e) => e.into_response(),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not found" }))).into_response()
}

/// The fields a client may send for a book. A missing `author_id` means the first author.
#[derive(Deserialize)]
struct BookInput {
    title: String,
    price_cents: i64,
    #[serde(default)]
    author_id: Option<i64>,
    #[serde(default)]
    slug: Option<String>,
}

async fn default_author(db: &Db) -> herald::Result<i64> {
    Ok(Author::query()
        .first(db)
        .await?
        .and_then(|a| a.id)
        .unwrap_or_default())
}

/// The filters a list was asked for, by name, as its next page's URL repeats them.
type Filters = Vec<(&'static str, i64)>;

/// The book filters both the JSON list and the home page take: `author_id`, `min_price_cents`,
/// `max_price_cents` (inclusive). Returns the query and the filters given.
fn book_filters(params: &Params) -> Result<(herald::query::Query<Book>, Filters), BadRequest> {
    let mut query = Book::query();
    let mut given = Vec::new();
    if let Some(author) = params.int("author_id")? {
        query = query.filter(Book::AUTHOR_ID.eq(author));
        given.push(("author_id", author));
    }
    if let Some(min) = params.int("min_price_cents")? {
        query = query.filter(Book::PRICE_CENTS.ge(min));
        given.push(("min_price_cents", min));
    }
    if let Some(max) = params.int("max_price_cents")? {
        query = query.filter(Book::PRICE_CENTS.le(max));
        given.push(("max_price_cents", max));
    }
    Ok((query, given))
}

/// `GET /api/books`: a page of books in key order (at most 100; `after`, `limit`), filtered by
/// author and price range; the next page in the `Link` header.
async fn list_books(
    State(db): State<Db>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Page<Book>> {
    let params = Params(params);
    let (query, filters) = book_filters(&params)?;
    Ok(page(&db, query, params.window()?, "/api/books", &filters).await?)
}

/// `GET /api/authors`: a page of authors.
async fn list_authors(
    State(db): State<Db>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Page<Author>> {
    let params = Params(params);
    Ok(page(&db, Author::query(), params.window()?, "/api/authors", &[]).await?)
}

/// `GET /api/books/{id}/prices`: a page of the book's price changes, oldest first.
async fn list_prices(
    State(db): State<Db>,
    Path(id): Path<i64>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Page<PriceChange>> {
    let params = Params(params);
    let query = PriceChange::query().filter(PriceChange::BOOK_ID.eq(id));
    let path = format!("/api/books/{id}/prices");
    Ok(page(&db, query, params.window()?, &path, &[]).await?)
}

async fn create_book(State(db): State<Db>, Json(input): Json<BookInput>) -> ApiResult<Response> {
    let author_id = match input.author_id {
        Some(id) => id,
        None => default_author(&db).await?,
    };
    let mut book = Book {
        id: None,
        author_id,
        title: input.title,
        slug: input.slug.unwrap_or_default(),
        price_cents: input.price_cents,
    };
    db.save(&mut book).await?;
    Ok((StatusCode::CREATED, Json(book)).into_response())
}

async fn read_book(State(db): State<Db>, Path(id): Path<i64>) -> ApiResult<Response> {
    if let Some(book) = cache().get(&id).cloned() {
        return Ok(Json(book).into_response());
    }
    Ok(match db.get::<Book>(id).await? {
        Some(book) => {
            cache().insert(id, book.clone());
            Json(book).into_response()
        }
        None => not_found(),
    })
}

async fn update_book(
    State(db): State<Db>,
    Path(id): Path<i64>,
    Json(input): Json<BookInput>,
) -> ApiResult<Response> {
    let Some(mut book) = db.get::<Book>(id).await? else {
        return Ok(not_found());
    };
    book.title = input.title;
    book.price_cents = input.price_cents;
    book.slug = input.slug.unwrap_or_default();
    if let Some(author_id) = input.author_id {
        book.author_id = author_id;
    }
    db.save(&mut book).await?;
    Ok(Json(book).into_response())
}

async fn delete_book(State(db): State<Db>, Path(id): Path<i64>) -> ApiResult<Response> {
    let Some(book) = db.get::<Book>(id).await? else {
        return Ok(not_found());
    };
    db.delete(&book).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn read_index(State(db): State<Db>, Path(id): Path<i64>) -> ApiResult<Response> {
    Ok(match db.get::<SearchEntry>(id).await? {
        Some(entry) => Json(entry).into_response(),
        None => not_found(),
    })
}

/// `GET /api/audit`: a page of the audit log, oldest first.
async fn list_audit(
    State(db): State<Db>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Page<AuditEntry>> {
    let window = Params(params).window()?;
    Ok(page(&db, AuditEntry::query(), window, "/api/audit", &[]).await?)
}

/// `GET /api/emails`: a page of the emails sent, oldest first.
async fn list_emails(
    State(db): State<Db>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Page<EmailSent>> {
    let window = Params(params).window()?;
    Ok(page(&db, EmailSent::query(), window, "/api/emails", &[]).await?)
}

async fn list_tasks(State(db): State<Db>) -> ApiResult<Json<serde_json::Value>> {
    let counts: Vec<_> = db
        .tasks()
        .counts()
        .await?
        .into_iter()
        .map(|c| json!({ "queue": c.queue, "state": c.state.as_str(), "count": c.count }))
        .collect();
    let dead: Vec<_> = db
        .tasks()
        .dead(100)
        .await?
        .into_iter()
        .map(|t| json!({ "id": t.id, "kind": t.kind, "attempt": t.attempt, "error": t.last_error }))
        .collect();
    Ok(Json(json!({ "counts": counts, "dead": dead })))
}

// ---- the HTML interface ------------------------------------------------------------------------
// Pages are askama templates (`templates/`), which HTML-escape every value they write.

/// Where the pages link to the dashboard and the metrics (where [`router`] mounts them).
#[derive(Clone, Copy)]
struct Links {
    dashboard: &'static str,
    metrics: &'static str,
}

const LINKS: Links = Links {
    dashboard: DASHBOARD_PATH,
    metrics: METRICS_PATH,
};

/// The book form: a new book (empty) or an existing one.
struct BookForm {
    action: String,
    title: String,
    price_cents: String,
    button: &'static str,
    authors: Vec<AuthorChoice>,
}

/// One author in the form's list.
struct AuthorChoice {
    id: i64,
    name: String,
    selected: bool,
}

fn author_choices(authors: &[Author], selected: Option<i64>) -> Vec<AuthorChoice> {
    authors
        .iter()
        .enumerate()
        .map(|(n, a)| {
            let id = a.id.unwrap_or_default();
            AuthorChoice {
                id,
                name: a.name.clone(),
                selected: selected.map_or(n == 0, |s| s == id),
            }
        })
        .collect()
}

impl BookForm {
    fn new_book(authors: &[Author]) -> Self {
        Self {
            action: "/books".to_owned(),
            title: String::new(),
            price_cents: String::new(),
            button: "Create",
            authors: author_choices(authors, None),
        }
    }

    fn edit(id: i64, book: &Book, authors: &[Author]) -> Self {
        Self {
            action: format!("/books/{id}"),
            title: book.title.clone(),
            price_cents: book.price_cents.to_string(),
            button: "Save",
            authors: author_choices(authors, Some(book.author_id)),
        }
    }
}

/// One row of the authors page.
struct AuthorRow {
    id: i64,
    name: String,
    email: String,
}

/// One row of the shop's table.
struct BookRow {
    id: i64,
    title: String,
    author: String,
    slug: String,
    price: String,
}

/// The home page's filter form, as the request gave it (blank when not given).
struct BookFilter {
    authors: Vec<AuthorChoice>,
    min_price_cents: String,
    max_price_cents: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    title: &'static str,
    links: Links,
    books: Vec<BookRow>,
    next: Option<String>,
    filter: BookFilter,
    form: BookForm,
}

/// One price change on a book's page.
struct PriceRow {
    old: String,
    new: String,
}

#[derive(Template)]
#[template(path = "book.html")]
struct BookPage {
    title: String,
    links: Links,
    id: i64,
    author: String,
    author_id: i64,
    slug: String,
    price: String,
    prices: Vec<PriceRow>,
    more_prices: Option<String>,
}

#[derive(Template)]
#[template(path = "authors.html")]
struct AuthorsPage {
    title: &'static str,
    links: Links,
    authors: Vec<AuthorRow>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "edit.html")]
struct EditPage {
    title: String,
    links: Links,
    form: BookForm,
}

#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage {
    title: &'static str,
    links: Links,
    error: String,
}

fn html(page: &impl Template) -> Html<String> {
    Html(
        page.render()
            .expect("the pages' templates write into a String and call nothing that fails"),
    )
}

#[derive(Deserialize)]
struct BookFormInput {
    title: String,
    price_cents: i64,
    #[serde(default)]
    author_id: Option<i64>,
}

fn price(cents: i64) -> String {
    format!("{:.2}", cents as f64 / 100.0)
}

/// The authors the forms offer: the first page of them (a shop with more lists them on
/// `/authors`, and its forms take the first hundred).
async fn form_authors(db: &Db) -> herald::Result<Vec<Author>> {
    Author::query().limit(list::MAX_PAGE).all(db).await
}

/// The names of the authors of `books`, read in one query.
async fn author_names(db: &Db, books: &[Book]) -> herald::Result<Vec<(i64, String)>> {
    let mut ids: Vec<i64> = books.iter().map(|b| b.author_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let authors = Author::query().filter(Author::ID.in_(ids)).all(db).await?;
    Ok(authors
        .into_iter()
        .filter_map(|a| a.id.map(|id| (id, a.name)))
        .collect())
}

/// `GET /`: one page of books (at most 100, in key order), filtered by author and price range,
/// with a link to the next page; the new-book form.
async fn home(
    State(db): State<Db>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let shown = async {
        let params = Params(params);
        let (query, filters) = book_filters(&params)?;
        let books = page(&db, query, params.window()?, "/", &filters).await?;
        let names = author_names(&db, &books.rows).await?;
        let name_of = |id: i64| {
            names
                .iter()
                .find(|(a, _)| *a == id)
                .map_or_else(|| format!("author {id}"), |(_, name)| name.clone())
        };
        let authors = form_authors(&db).await?;
        let asked = |name: &str| filters.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let given = |name: &str| asked(name).map(|v| v.to_string()).unwrap_or_default();
        // The filter preselects no author unless one was asked for (keys are positive).
        let choices = author_choices(&authors, Some(asked("author_id").unwrap_or(-1)));
        let filter = BookFilter {
            authors: choices,
            min_price_cents: given("min_price_cents"),
            max_price_cents: given("max_price_cents"),
            active: !filters.is_empty(),
        };
        let book_rows = books
            .rows
            .into_iter()
            .map(|book| BookRow {
                id: book.id.unwrap_or_default(),
                author: name_of(book.author_id),
                price: price(book.price_cents),
                title: book.title,
                slug: book.slug,
            })
            .collect();
        Ok::<_, ApiError>(HomePage {
            title: "Bookstore",
            links: LINKS,
            books: book_rows,
            next: books.next,
            filter,
            form: BookForm::new_book(&authors),
        })
    };
    shown_or_refused(shown.await)
}

/// `GET /books/{id}`: the book, its author, and its price history (oldest first, the first 100
/// changes; the rest through `/api/books/{id}/prices`).
async fn book_page(State(db): State<Db>, Path(id): Path<i64>) -> ApiResult<Response> {
    let Some(book) = db.get::<Book>(id).await? else {
        return Ok(not_found());
    };
    let author = db.get::<Author>(book.author_id).await?;
    let query = PriceChange::query().filter(PriceChange::BOOK_ID.eq(id));
    let path = format!("/api/books/{id}/prices");
    let changes = page(&db, query, Params::default().window()?, &path, &[]).await?;
    Ok(html(&BookPage {
        title: book.title.clone(),
        links: LINKS,
        id,
        author: author.map_or_else(|| format!("author {}", book.author_id), |a| a.name),
        author_id: book.author_id,
        slug: book.slug,
        price: price(book.price_cents),
        prices: changes
            .rows
            .iter()
            .map(|c| PriceRow {
                old: price(c.old_cents),
                new: price(c.new_cents),
            })
            .collect(),
        more_prices: changes.next,
    })
    .into_response())
}

/// `GET /authors`: a page of authors, each linking to the home page filtered to their books.
async fn authors_page(
    State(db): State<Db>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let shown = async {
        let window = Params(params).window()?;
        let authors = page(&db, Author::query(), window, "/authors", &[]).await?;
        Ok::<_, ApiError>(AuthorsPage {
            title: "Authors",
            links: LINKS,
            authors: authors
                .rows
                .into_iter()
                .map(|a| AuthorRow {
                    id: a.id.unwrap_or_default(),
                    name: a.name,
                    email: a.email,
                })
                .collect(),
            next: authors.next,
        })
    };
    shown_or_refused(shown.await)
}

/// A page, or the refusal page saying why it could not be shown.
fn shown_or_refused(page: Result<impl Template, ApiError>) -> Response {
    match page {
        Ok(page) => html(&page).into_response(),
        Err(e) => refused(e),
    }
}

fn refused(error: ApiError) -> Response {
    let (status, message) = error.status_and_message();
    let title = if status == StatusCode::BAD_REQUEST {
        "Bad request"
    } else {
        "Not saved"
    };
    let page = RefusedPage {
        title,
        links: LINKS,
        error: message,
    };
    (status, html(&page)).into_response()
}

async fn html_create(State(db): State<Db>, Form(input): Form<BookFormInput>) -> Response {
    let saved = async {
        let author_id = match input.author_id {
            Some(id) => id,
            None => default_author(&db).await?,
        };
        let mut book = Book {
            id: None,
            author_id,
            title: input.title,
            slug: String::new(),
            price_cents: input.price_cents,
        };
        db.save(&mut book).await?;
        Ok::<_, ApiError>(())
    };
    match saved.await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => refused(e),
    }
}

async fn html_edit(State(db): State<Db>, Path(id): Path<i64>) -> ApiResult<Response> {
    let authors = form_authors(&db).await?;
    Ok(match db.get::<Book>(id).await? {
        Some(book) => html(&EditPage {
            title: format!("Edit {}", book.title),
            links: LINKS,
            form: BookForm::edit(id, &book, &authors),
        })
        .into_response(),
        None => not_found(),
    })
}

async fn html_update(
    State(db): State<Db>,
    Path(id): Path<i64>,
    Form(input): Form<BookFormInput>,
) -> Response {
    let saved = async {
        let Some(mut book) = db.get::<Book>(id).await? else {
            return Ok(false);
        };
        book.title = input.title;
        book.price_cents = input.price_cents;
        if let Some(author_id) = input.author_id {
            book.author_id = author_id;
        }
        book.slug.clear();
        db.save(&mut book).await?;
        Ok::<_, ApiError>(true)
    };
    match saved.await {
        Ok(true) => Redirect::to(&format!("/books/{id}")).into_response(),
        Ok(false) => not_found(),
        Err(e) => refused(e),
    }
}

async fn html_delete(State(db): State<Db>, Path(id): Path<i64>) -> ApiResult<Response> {
    if let Some(book) = db.get::<Book>(id).await? {
        db.delete(&book).await?;
    }
    Ok(Redirect::to("/").into_response())
}
