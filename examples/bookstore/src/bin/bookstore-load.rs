//! `bookstore-load`: book creations over HTTP, as many clients as asked, for a fixed time.
//!
//! ```text
//! cargo run --release -p bookstore --bin bookstore-load                  # starts its own bookstore
//! cargo run --release -p bookstore --bin bookstore-load -- --url http://127.0.0.1:8000
//! cargo run --release -p bookstore --bin bookstore-load -- --clients 64 --seconds 10 --json out.json
//! cargo run --release -p bookstore --bin bookstore-load -- --database postgres://postgres@127.0.0.1/test \
//!     --serve-arg=--schema=load --drain
//! ```
//!
//! Each client holds one HTTP/1.1 keep-alive connection and sends `POST /api/books` one after the
//! other, timing each from the first byte sent to the whole response read. Without `--url` it
//! starts `bookstore serve` (the binary beside this one) on `--database`, by default a fresh SQLite
//! file in a temporary folder, with its embedded worker and every receiver, and stops it at the
//! end; after the load it reports how far the background tasks the creations enqueued have got.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// Book creations per second over HTTP, with their latency.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The bookstore to load (default: start one on a fresh SQLite file).
    #[arg(long)]
    url: Option<String>,
    /// Concurrent clients, each on its own connection.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// How long to send before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The database of the bookstore this starts (default: a fresh SQLite file in a temporary
    /// folder). A PostgreSQL one wants a schema of its own: `--serve-arg=--schema=NAME`.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Extra arguments for the bookstore this starts (e.g. `--serve-arg=--no-worker`).
    #[arg(long = "serve-arg", value_name = "ARG", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// After the load, wait until the bookstore this started has run every background task the
    /// creations enqueued, and report how long that took.
    #[arg(long)]
    drain: bool,
    /// Write the result as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Serialize, Debug)]
struct Report {
    clients: usize,
    seconds: f64,
    creations: u64,
    per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    /// The server's task counts right after the load, when this started the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks_after: Option<serde_json::Value>,
    /// With `--drain`: seconds from the end of the load until no task was left to run, and the
    /// task counts then.
    #[serde(skip_serializing_if = "Option::is_none")]
    drained_after_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks_drained: Option<serde_json::Value>,
}

/// What one client saw while measuring.
struct ClientResult {
    latencies: Histogram<u64>,
    errors: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let folder = tempfile::tempdir().context("creating a temporary folder")?;
    let mut server = None;
    let url = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let database = args
                .database
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", folder.path().join("load.db").display()));
            let (child, url) = start_bookstore(&database, &args.serve_args)?;
            server = Some(ServerGuard(child));
            url
        }
    };
    let result = runtime.block_on(load(&args, &url));
    let mut report = result?;
    if server.is_some() {
        report.tasks_after = runtime.block_on(get_json(&url, "/api/tasks")).ok();
        if args.drain {
            let (seconds, counts) = runtime.block_on(drain(&url))?;
            report.drained_after_s = Some(seconds);
            report.tasks_drained = Some(counts);
        }
    }
    drop(server);
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Kills the bookstore this started, however the run ends.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `bookstore serve` on a free port and `database`; returns once it prints its URL.
fn start_bookstore(database: &str, extra: &[String]) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let bookstore = exe.with_file_name(format!("bookstore{}", std::env::consts::EXE_SUFFIX));
    if !bookstore.exists() {
        bail!(
            "{} is missing: build it first (cargo build --release -p bookstore)",
            bookstore.display()
        );
    }
    let mut child = Command::new(&bookstore)
        .args(["serve", "--database", database])
        .args(extra)
        .env("BOOKSTORE_EMAIL_FAIL_EVERY", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bookstore.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("reading the bookstore's output")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let url = loop {
        match lines.next() {
            Some(line) => {
                let line = line.context("reading the bookstore's output")?;
                if let Some(at) = line.find("http://") {
                    let url: String = line[at..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    break url.trim_end_matches('/').to_owned();
                }
            }
            None => {
                let _ = child.kill();
                bail!("the bookstore exited before printing its URL");
            }
        }
    };
    // Keep draining its output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((child, url))
}

async fn load(args: &Args, url: &str) -> anyhow::Result<Report> {
    let authority = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?
        .to_owned();
    let author_id = first_author(url).await?;
    let start = Instant::now() + Duration::from_secs_f64(args.warmup);
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut clients = Vec::with_capacity(args.clients);
    for client in 0..args.clients {
        let authority = authority.clone();
        clients.push(tokio::spawn(async move {
            run_client(&authority, client, author_id, start, end).await
        }));
    }
    let mut latencies = histogram()?;
    let mut errors = 0;
    for client in clients {
        let result = client.await.context("a client panicked")??;
        latencies
            .add(&result.latencies)
            .context("merging latencies")?;
        errors += result.errors;
    }
    let creations = latencies.len();
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1_000.0;
    Ok(Report {
        clients: args.clients,
        seconds: args.seconds,
        creations,
        per_second: creations as f64 / args.seconds,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: latencies.max() as f64 / 1_000.0,
        errors,
        tasks_after: None,
        drained_after_s: None,
        tasks_drained: None,
    })
}

/// One client: create books until `end`, timing those that start after `start`.
async fn run_client(
    authority: &str,
    client: usize,
    author_id: i64,
    start: Instant,
    end: Instant,
) -> anyhow::Result<ClientResult> {
    let mut sender = connect(authority).await?;
    let mut latencies = histogram()?;
    let mut errors = 0;
    for n in 0u64.. {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let body = format!(
            r#"{{"title":"Load test {client}-{n}: a book about signals","price_cents":{},"author_id":{author_id}}}"#,
            1_000 + n % 1_000
        );
        let request = hyper::Request::post("/api/books")
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("building a request")?;
        let response = sender.send_request(request).await;
        let ok = match response {
            Ok(response) => {
                let status = response.status();
                response.into_body().collect().await.is_ok() && status.as_u16() == 201
            }
            Err(_) => false,
        };
        if began < start {
            continue;
        }
        if ok {
            let micros = began.elapsed().as_micros();
            latencies.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
        } else {
            errors += 1;
            sender = connect(authority).await?;
        }
    }
    Ok(ClientResult { latencies, errors })
}

/// Latencies in µs, from 1 µs to 10 minutes, 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 3).context("creating a histogram")
}

async fn connect(authority: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(connection);
    Ok(sender)
}

/// An author to create books for: the author of the shop's first book.
async fn first_author(url: &str) -> anyhow::Result<i64> {
    let books = get_json(url, "/api/books").await?;
    books
        .as_array()
        .and_then(|books| books.first())
        .and_then(|book| book["author_id"].as_i64())
        .with_context(|| format!("{url}/api/books lists no book to take an author from"))
}

/// The longest `--drain` waits for the background tasks.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// Poll the bookstore's task counts until none is waiting or running; returns the seconds that
/// took and the counts then.
async fn drain(url: &str) -> anyhow::Result<(f64, serde_json::Value)> {
    let began = Instant::now();
    loop {
        let tasks = get_json(url, "/api/tasks").await?;
        let busy = tasks["counts"].as_array().is_some_and(|counts| {
            counts.iter().any(|c| {
                c["count"].as_i64().unwrap_or(0) > 0
                    && matches!(
                        c["state"].as_str(),
                        Some("available" | "running" | "retryable")
                    )
            })
        });
        if !busy {
            return Ok((began.elapsed().as_secs_f64(), tasks));
        }
        if began.elapsed() > DRAIN_LIMIT {
            bail!("tasks still waiting after {DRAIN_LIMIT:?}: {tasks}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_json(url: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let authority = url.strip_prefix("http://").unwrap_or(url);
    let mut sender = connect(authority).await?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Full::new(Bytes::new()))
        .context("building a request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {url}{path}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("GET {url}{path}: {status}");
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {url}{path}: not JSON"))
}

fn print_report(report: &Report) {
    println!("| clients | seconds | creations | per second | p50 | p90 | p99 | max | errors |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {:.1} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
        report.clients,
        report.seconds,
        report.creations,
        report.per_second,
        report.p50_ms,
        report.p90_ms,
        report.p99_ms,
        report.max_ms,
        report.errors
    );
    if let Some(tasks) = &report.tasks_after {
        println!("\ntasks right after the load: {tasks}");
    }
    if let (Some(seconds), Some(tasks)) = (report.drained_after_s, &report.tasks_drained) {
        println!("every task had run {seconds:.1} s after the load: {tasks}");
    }
}
