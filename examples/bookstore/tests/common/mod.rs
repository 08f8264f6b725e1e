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
        Server { child, addr, dir }
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, None)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        request(&self.addr, "POST", path, Some(body.to_string()))
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
    let mut stream = TcpStream::connect(addr).expect("connect to the bookstore");
    let body = json.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
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
