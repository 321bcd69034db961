//! The metrics listener: just enough HTTP/1.1 for Prometheus to scrape `GET /metrics`.
//!
//! A whole web framework would be most of havend's dependencies for one page, so this is a
//! small server on a thread of its own, built to be left open on a network:
//!
//! - it reads at most [`MAX_REQUEST_BYTES`] of request head, within [`REQUEST_TIMEOUT`], and
//!   never a body; anything else gets a 4xx and the connection is closed;
//! - it serves one connection at a time, each bounded in time, so a client that dawdles holds
//!   up other scrapes for at most a few seconds and never the event loop, which it never waits
//!   for: the page is built from the status board;
//! - every answer closes the connection (`Connection: close`), so nothing is kept per client.
//!
//! It answers `Accept: application/openmetrics-text` (what Prometheus asks for first) with
//! OpenMetrics text, and anything else with Prometheus's text format 0.0.4.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most bytes of request line and headers read from one client.
pub const MAX_REQUEST_BYTES: usize = 8192;

/// How long one client has to send its request head, and then to take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds the page: `(body, content type)`, OpenMetrics when asked with `true`.
pub type PageFn = dyn Fn(bool) -> (String, &'static str) + Send + Sync;

/// Requests served and refused since start, for tests and the curious.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    pub served: AtomicU64,
    pub refused: AtomicU64,
}

/// A running listener; [`MetricsListener::stop`] ends its thread.
#[derive(Debug)]
pub struct MetricsListener {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    counters: Arc<ListenerCounters>,
    thread: JoinHandle<()>,
}

impl MetricsListener {
    /// Serve `page` on `socket` (bound by the caller, so that a port in use is reported at
    /// startup with the rest).
    pub fn start(socket: TcpListener, page: Box<PageFn>) -> io::Result<MetricsListener> {
        let address = socket.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(ListenerCounters::default());
        let (stop, count) = (Arc::clone(&stopping), Arc::clone(&counters));
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for stream in socket.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    match stream {
                        Ok(stream) => {
                            let counter = match serve(stream, &*page) {
                                Ok(true) => &count.served,
                                Ok(false) | Err(_) => &count.refused,
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "metrics listener: accept failed");
                            // EMFILE and the like: do not spin.
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(MetricsListener {
            address,
            stopping,
            counters,
            thread,
        })
    }

    /// Where it listens (the port the system chose, if the config said 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Requests served, and refused (malformed, too big, too slow, not `GET /metrics`).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counters.served.load(Ordering::Relaxed),
            self.counters.refused.load(Ordering::Relaxed),
        )
    }

    /// Stop serving and join the thread.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the blocking accept with a connection of our own.
        let wake = match self.address {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            address => address,
        };
        let _ = TcpStream::connect_timeout(&wake, REQUEST_TIMEOUT);
        if self.thread.join().is_err() {
            tracing::error!("the metrics listener's thread panicked");
        }
    }
}

/// Answer one connection: `Ok(true)` for a page served, `Ok(false)` for a request refused
/// with its reason.
fn serve(mut stream: TcpStream, page: &PageFn) -> io::Result<bool> {
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let head = match read_head(&mut stream) {
        Ok(head) => head,
        Err(HeadError::TooBig) => {
            answer(&mut stream, "431 Request Header Fields Too Large", "", "")?;
            return Ok(false);
        }
        Err(HeadError::Io(error)) => return Err(error),
    };
    let request = match parse_head(&head) {
        Ok(request) => request,
        Err(status) => {
            answer(&mut stream, status, "text/plain; charset=utf-8", "")?;
            return Ok(false);
        }
    };
    if request.path != "/metrics" {
        let body = "havend serves its metrics at /metrics\n";
        answer(
            &mut stream,
            "404 Not Found",
            "text/plain; charset=utf-8",
            body,
        )?;
        return Ok(false);
    }
    let (body, content_type) = page(request.openmetrics);
    let body = if request.head_only { "" } else { &body };
    answer(&mut stream, "200 OK", content_type, body)?;
    Ok(true)
}

enum HeadError {
    TooBig,
    Io(io::Error),
}

/// Read up to the blank line that ends the head, within the size and time bounds.
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Io(io::ErrorKind::TimedOut.into()));
        }
        stream.set_read_timeout(Some(left)).map_err(HeadError::Io)?;
        let read = stream.read(&mut chunk).map_err(HeadError::Io)?;
        if read == 0 {
            return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = find_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_REQUEST_BYTES {
            return Err(HeadError::TooBig);
        }
    }
}

/// Where the head ends (`\r\n\r\n`, or a bare `\n\n` from a lenient client).
fn find_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .filter(|&end| end <= MAX_REQUEST_BYTES)
}

/// What the server needs from a request head.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    path: String,
    head_only: bool,
    openmetrics: bool,
}

/// Parse a request head; `Err` is the status line to answer with.
fn parse_head(head: &[u8]) -> Result<Request, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "400 Bad Request")?;
    let mut lines = text.lines();
    let request_line = lines.next().ok_or("400 Bad Request")?;
    let mut words = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err("400 Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("505 HTTP Version Not Supported");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err("405 Method Not Allowed"),
    };
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let mut openmetrics = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err("400 Bad Request");
        };
        if name.trim().eq_ignore_ascii_case("accept") {
            openmetrics |= value.contains("application/openmetrics-text");
        }
    }
    Ok(Request {
        path,
        head_only,
        openmetrics,
    })
}

fn answer(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        response.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_request_is_read_with_what_it_accepts() {
        let head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
        let request = parse_head(head).unwrap();
        assert_eq!(request.path, "/metrics");
        assert!(request.openmetrics && !request.head_only);
        let plain = parse_head(b"HEAD /metrics HTTP/1.0").unwrap();
        assert!(plain.head_only && !plain.openmetrics);
    }

    #[test]
    fn anything_but_a_get_of_a_page_is_refused_with_its_reason() {
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1"),
            Err("405 Method Not Allowed")
        );
        assert_eq!(parse_head(b"GET /metrics"), Err("400 Bad Request"));
        assert_eq!(
            parse_head(b"GET /metrics HTTP/2"),
            Err("505 HTTP Version Not Supported")
        );
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nno colon"),
            Err("400 Bad Request")
        );
        assert_eq!(parse_head(&[0xff, 0xfe]), Err("400 Bad Request"));
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line_within_the_bound() {
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(14));
        assert_eq!(find_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n"), None);
        let mut long = vec![b'a'; MAX_REQUEST_BYTES + 1];
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(find_end(&long), None);
    }
}
