//! A tiny token server for the tests: real HTTP/1.1 on 127.0.0.1, written by hand on a tokio
//! `TcpListener`, that records every request and answers with what the test tells it to.
#![allow(dead_code)] // Each test binary uses a different part of it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use identity::RetryPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The decoded fields of an `application/x-www-form-urlencoded` body, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        decode_pairs(&self.body)
    }

    pub fn form_field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn decode_pairs(encoded: &str) -> Vec<(String, String)> {
    let url =
        reqwest::Url::parse(&format!("http://decode.invalid/?{encoded}")).expect("decodable pairs");
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Never answer (the connection stays open until the client gives up).
    pub hang: bool,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
            hang: false,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn hang() -> Self {
        Reply {
            hang: true,
            ..Reply::json(200, "")
        }
    }
}

/// An IMDS-style success: every number is a JSON string.
pub fn imds_token(token: &str, expires_in: u64) -> Reply {
    let expires_on = unix_now() + expires_in;
    Reply::json(
        200,
        format!(
            r#"{{"access_token":"{token}","refresh_token":"","expires_in":"{expires_in}","expires_on":"{expires_on}","not_before":"{}","resource":"https://vault.azure.net","token_type":"Bearer"}}"#,
            unix_now()
        ),
    )
}

/// An Entra v2 success: `expires_in` is a number and there is no `expires_on`.
pub fn entra_token(token: &str, expires_in: u64) -> Reply {
    Reply::json(
        200,
        format!(
            r#"{{"token_type":"Bearer","expires_in":{expires_in},"ext_expires_in":{expires_in},"access_token":"{token}"}}"#
        ),
    )
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// A retry schedule for tests: `retries` waits of 10 ms and a 2 s timeout per request.
pub fn fast_retries(retries: usize) -> RetryPolicy {
    RetryPolicy {
        delays: vec![Duration::from_millis(10); retries],
        request_timeout: Duration::from_secs(2),
        max_retry_after: Duration::from_secs(5),
    }
}

type Responder = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

/// The server. It stops when dropped.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenServer {
    /// Starts a server that answers request number `n` (from 0) with `respond(n, &request)`.
    pub async fn start(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, recorded.clone(), respond.clone()));
            }
        });
        TokenServer {
            base,
            requests,
            task,
        }
    }

    /// Always answers with `reply`.
    pub async fn always(reply: Reply) -> Self {
        Self::start(move |_, _| reply.clone()).await
    }

    /// Answers with `replies` in turn, repeating the last one.
    pub async fn sequence(replies: Vec<Reply>) -> Self {
        Self::start(move |n, _| replies[n.min(replies.len() - 1)].clone()).await
    }

    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The IMDS path on this server.
    pub fn imds_url(&self) -> String {
        self.url("/metadata/identity/oauth2/token")
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("not poisoned").clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().expect("not poisoned").len()
    }
}

async fn serve(
    mut stream: TcpStream,
    requests: Arc<Mutex<Vec<Recorded>>>,
    respond: Arc<Responder>,
) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let n = {
        let mut requests = requests.lock().expect("not poisoned");
        requests.push(request.clone());
        requests.len() - 1
    };
    let reply = respond(n, &request);
    if reply.hang {
        // Keep the connection open, unanswered, until the client gives up and closes it.
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink).await, Ok(k) if k > 0) {}
        return;
    }
    tokio::time::sleep(reply.delay).await;
    let mut head = format!(
        "HTTP/1.1 {} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(reply.body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let k = stream.read(&mut buf).await.ok()?;
        if k == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..k]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        let k = stream.read(&mut buf).await.ok()?;
        if k == 0 {
            break;
        }
        data.extend_from_slice(&buf[..k]);
    }
    let body = String::from_utf8_lossy(&data[head_end..]).into_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Recorded {
        method,
        path: path.to_owned(),
        query: decode_pairs(query),
        headers,
        body,
        at,
    })
}
