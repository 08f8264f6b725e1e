//! Helpers shared by the bookstore's tests: the binary started on a fresh database and a free
//! port, and a minimal HTTP/1.1 client over a loopback socket.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bookstore");

/// A running `bookstore serve` on its own temporary database; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub addr: String,
    /// The line `serve` printed first (its URLs).
    pub url_line: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Start `bookstore serve --port 0` with `env` set; wait for the URL line.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Self::start_with(env, &[])
    }

    /// [`Server::start`] with more `serve` arguments (e.g. `--no-worker`).
    pub fn start_with(env: &[(&str, &str)], args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = database_url(&dir);
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--port", "0", "--database", &url])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("bookstore starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the URL line");
        let start = line.find("http://").expect("a URL in the first line") + "http://".len();
        let addr = line[start..]
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        Server {
            child,
            addr,
            url_line: line.trim_end().to_owned(),
            dir,
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, None)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        request(&self.addr, "POST", path, Some(body.to_string()))
    }

    /// `method path` with these headers and body (see [`request_with`]).
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        request_with(&self.addr, method, path, headers, body)
    }

    /// Poll `check` on `path` until it returns `Some`, for at most 10 seconds.
    pub fn wait_for<T>(&self, path: &str, mut check: impl FnMut(&Response) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = self.get(path);
            if let Some(value) = check(&response) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting on {path}: last answer {} {}",
                response.status,
                response.body
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn database_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("bookstore.db").display())
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub fn request(addr: &str, method: &str, path: &str, json: Option<String>) -> Response {
    let body = json.unwrap_or_default();
    request_with(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        &body,
    )
}

/// [`request`] with these headers (besides `Host`, `Connection` and `Content-Length`) and body.
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the bookstore");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write request");
    stream.write_all(body.as_bytes()).expect("write body");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bound on every wait for the bookstore: generous, because the machine is small and shared.
pub const BOUND: Duration = Duration::from_secs(60);

/// A port that was free a moment ago: bind 127.0.0.1:0, read the port, drop the listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Check `check` every 20 ms until it returns `Some`, for at most `within`; `None` if it never did.
pub fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `host:port` of the first `http://` URL in `line`.
pub fn addr_in(line: &str) -> String {
    let start = line.find("http://").expect("a URL in the line") + "http://".len();
    line[start..]
        .split('/')
        .next()
        .expect("host:port")
        .to_owned()
}

/// What a child has written to stdout so far, and whether it has closed it.
#[derive(Debug, Default)]
struct Stdout {
    lines: Vec<String>,
    closed: bool,
}

/// A child process with stdin null, stdout read line by line on a thread (and copied to
/// `NAME.stdout.log`) and stderr in `NAME.stderr.log`. Dropping it kills it (or its process
/// group, see [`Proc::spawn_group`]); if the test is failing, the tails of both logs are printed
/// first.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    group: bool,
    stdout: std::sync::Arc<std::sync::Mutex<Stdout>>,
    logs: std::path::PathBuf,
}

impl Proc {
    /// Spawn `command` as `name`, its logs in the directory `logs`.
    pub fn spawn(name: &str, command: Command, logs: &std::path::Path) -> Proc {
        Self::start(name, command, logs, false)
    }

    /// [`Proc::spawn`] in a process group of its own, killed as a whole when dropped: for a
    /// command that starts others (`sh -c ..`, `cargo run`'s program), which killing the child
    /// alone would leave running. (A Ctrl-C at the terminal does not reach that group.)
    pub fn spawn_group(name: &str, command: Command, logs: &std::path::Path) -> Proc {
        Self::start(name, command, logs, true)
    }

    fn start(name: &str, mut command: Command, logs: &std::path::Path, group: bool) -> Proc {
        use std::os::unix::process::CommandExt as _;
        if group {
            command.process_group(0);
        }
        let stderr = std::fs::File::create(logs.join(format!("{name}.stderr.log")))
            .expect("create the stderr log");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Stdout::default()));
        let pipe = child.stdout.take().expect("piped stdout");
        let copy = std::fs::File::create(logs.join(format!("{name}.stdout.log")))
            .expect("create the stdout log");
        let shared = stdout.clone();
        std::thread::spawn(move || read_lines(pipe, copy, &shared));
        Proc {
            name: name.to_owned(),
            child,
            group,
            stdout,
            logs: logs.to_owned(),
        }
    }

    /// The first stdout line containing `needle`, waiting at most `within`; panics (with the
    /// logs' tails, printed on drop) if the process closes stdout first or time runs out.
    pub fn line_with(&mut self, needle: &str, within: Duration) -> String {
        let found = poll(within, || {
            let stdout = self.stdout.lock().expect("stdout lines");
            let line = stdout.lines.iter().find(|l| l.contains(needle)).cloned();
            // Closed without the line: stop waiting, the answer is no.
            line.map(Some).or(stdout.closed.then_some(None))
        });
        match found {
            Some(Some(line)) => line,
            Some(None) => {
                let status = self.status();
                panic!(
                    "{} closed its stdout without a line containing `{needle}` ({status})",
                    self.name
                )
            }
            None => panic!(
                "{} printed no line containing `{needle}` within {within:?}",
                self.name
            ),
        }
    }

    /// Wait at most `within` for the process to exit; panics if it does not.
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        poll(within, || self.child.try_wait().expect("try_wait"))
            .unwrap_or_else(|| panic!("{} did not finish within {within:?}", self.name))
    }

    fn status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            _ => "still running".to_owned(),
        }
    }

    /// The last `n` lines of each of its logs, under headings naming the files.
    pub fn tails(&self, n: usize) -> String {
        ["stdout", "stderr"]
            .iter()
            .map(|stream| {
                let path = self.logs.join(format!("{}.{stream}.log", self.name));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(n)..].join("\n");
                format!("---- last {n} lines of {} ----\n{tail}\n", path.display())
            })
            .collect()
    }
}

fn read_lines(
    pipe: std::process::ChildStdout,
    mut copy: std::fs::File,
    shared: &std::sync::Mutex<Stdout>,
) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(copy, "{line}");
        shared.lock().expect("stdout lines").lines.push(line);
    }
    shared.lock().expect("stdout lines").closed = true;
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.tails(60));
        }
        if self.group {
            // The whole group: `kill -KILL -- -PGID` (std signals only the child itself).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
