//! The shop's HTTP side: a JSON API, a small HTML interface, the lab, the dashboard and
//! `/metrics`.

mod lab;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald::Db;
use herald::Store;
use herald_axum::{
    DashboardOptions, SameOriginLayer, ServerTimingLayer, dashboard, metrics_router, validate_token,
};
use serde::Deserialize;
use serde_json::json;

use crate::shop::{AuditEntry, Author, Book, EmailSent, SearchEntry, cache};

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
        .route("/books", post(html_create))
        .route("/books/{id}", post(html_update))
        .route("/books/{id}/edit", get(html_edit))
        .route("/books/{id}/delete", post(html_delete))
        .route("/api/books", get(list_books).post(create_book))
        .route(
            "/api/books/{id}",
            get(read_book).put(update_book).delete(delete_book),
        )
        .route("/api/books/{id}/search", get(read_index))
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

/// A store error as a response; see [`status_of`].
struct ApiError(herald::Error);

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
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = status_of(&self.0);
        (status, Json(body)).into_response()
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
    Ok(db
        .all::<Author>()
        .await?
        .first()
        .and_then(|a| a.id)
        .unwrap_or_default())
}

async fn list_books(State(db): State<Db>) -> ApiResult<Json<Vec<Book>>> {
    Ok(Json(db.all::<Book>().await?))
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

async fn list_audit(State(db): State<Db>) -> ApiResult<Json<Vec<AuditEntry>>> {
    Ok(Json(db.all::<AuditEntry>().await?))
}

async fn list_emails(State(db): State<Db>) -> ApiResult<Json<Vec<EmailSent>>> {
    Ok(Json(db.all::<EmailSent>().await?))
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

/// One row of the shop's authors.
struct AuthorRow {
    name: String,
    email: String,
    books: usize,
}

/// One row of the shop's table.
struct BookRow {
    id: i64,
    title: String,
    author: String,
    slug: String,
    price: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    title: &'static str,
    links: Links,
    books: Vec<BookRow>,
    authors: Vec<AuthorRow>,
    form: BookForm,
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

async fn home(State(db): State<Db>) -> ApiResult<Html<String>> {
    let authors = db.all::<Author>().await?;
    let books = db.all::<Book>().await?;
    let name_of = |id: i64| {
        authors
            .iter()
            .find(|a| a.id == Some(id))
            .map_or_else(|| format!("author {id}"), |a| a.name.clone())
    };
    let author_rows = authors
        .iter()
        .map(|a| AuthorRow {
            name: a.name.clone(),
            email: a.email.clone(),
            books: books.iter().filter(|b| Some(b.author_id) == a.id).count(),
        })
        .collect();
    let book_rows = books
        .into_iter()
        .map(|book| BookRow {
            id: book.id.unwrap_or_default(),
            author: name_of(book.author_id),
            price: format!("{:.2}", book.price_cents as f64 / 100.0),
            title: book.title,
            slug: book.slug,
        })
        .collect();
    Ok(html(&HomePage {
        title: "Bookstore",
        links: LINKS,
        books: book_rows,
        authors: author_rows,
        form: BookForm::new_book(&authors),
    }))
}

fn refused(error: ApiError) -> Response {
    let (status, _) = status_of(&error.0);
    let page = RefusedPage {
        title: "Not saved",
        links: LINKS,
        error: error.0.to_string(),
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
    let authors = db.all::<Author>().await?;
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
        Ok(true) => Redirect::to("/").into_response(),
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
