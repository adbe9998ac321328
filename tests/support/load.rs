//! A steady stream of requests for fault and lifecycle tests: one task per lane sends
//! requests back to back (kept-alive connections, a short pause between them) and records
//! every outcome with its start time, latency, status and whether an error answer was
//! gatehouse's own page. The report then says what happened before, during and after a
//! fault, and how long recovery took.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

/// Longest a single request of the stream may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// One stream of requests: the same request again and again.
#[derive(Clone)]
pub struct Lane {
    pub name: String,
    pub url: String,
    /// Extra request headers (Accept…).
    pub headers: Vec<(String, String)>,
    /// Cookie header values used in turn, one per request (none: no Cookie header).
    pub cookies: Vec<String>,
    /// Pause between the end of one request and the start of the next.
    pub pause: Duration,
}

/// What one request got.
#[derive(Debug, Clone)]
pub struct Sample {
    pub lane: usize,
    /// Start, since the load started.
    pub start: Duration,
    pub latency: Duration,
    pub outcome: Outcome,
}

/// A response (its body read to the end), or the error that ended the exchange.
#[derive(Debug, Clone)]
pub enum Outcome {
    Response {
        status: u16,
        /// For 4xx/5xx: the body is gatehouse's error page (JSON with status, reason and
        /// request id, or HTML with the status heading and request id) matching the
        /// `Accept` sent. For 3xx: a Location is present. Always true for 2xx.
        page_ok: bool,
        /// Whether the response set or cleared a cookie.
        set_cookie: bool,
        body_len: usize,
    },
    Error(String),
}

/// A running load; [`Load::stop`] ends it and returns the report.
pub struct Load {
    t0: Instant,
    stop: Arc<AtomicBool>,
    lanes: Vec<Lane>,
    tasks: Vec<JoinHandle<Vec<Sample>>>,
}

/// Every sample of a finished load.
pub struct Report {
    pub lanes: Vec<Lane>,
    pub samples: Vec<Sample>,
    /// How long the load ran.
    pub duration: Duration,
}

// === impl Lane ===

impl Lane {
    /// A lane GETting `url` with `Accept: application/json`, a cookie header if given, and a
    /// 20 ms pause between requests.
    pub fn json(name: &str, url: &str, cookie: Option<&str>) -> Lane {
        Self::with_accept(name, url, cookie, "application/json")
    }

    /// Like [`Lane::json`], as a browser (`Accept: text/html…`).
    pub fn html(name: &str, url: &str, cookie: Option<&str>) -> Lane {
        Self::with_accept(
            name,
            url,
            cookie,
            "text/html,application/xhtml+xml,*/*;q=0.8",
        )
    }

    fn with_accept(name: &str, url: &str, cookie: Option<&str>, accept: &str) -> Lane {
        Lane {
            name: name.to_owned(),
            url: url.to_owned(),
            headers: vec![("accept".to_owned(), accept.to_owned())],
            cookies: cookie.into_iter().map(str::to_owned).collect(),
            pause: Duration::from_millis(20),
        }
    }

    /// The same lane sending these cookies in turn (say, sessions this instance has not seen
    /// yet, one per request).
    pub fn cycling(mut self, cookies: &[String]) -> Lane {
        self.cookies = cookies.to_vec();
        self
    }

    /// The same lane with another pause between requests.
    pub fn paced(mut self, pause: Duration) -> Lane {
        self.pause = pause;
        self
    }

    fn wants_html(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n == "accept" && v.starts_with("text/html"))
    }
}

// === impl Outcome ===

impl Outcome {
    /// The status, if a response came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Response { status, .. } => Some(*status),
            Outcome::Error(_) => None,
        }
    }

    /// `"200"`, `"503"`, or `"error"`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Response { status, .. } => status.to_string(),
            Outcome::Error(_) => "error".to_owned(),
        }
    }
}

// === impl Load ===

impl Load {
    /// Starts one task per lane; each lane has its own client and kept-alive connections.
    /// `resolve` maps host names of the lanes' URLs to an address (may be empty).
    pub fn start(lanes: Vec<Lane>, resolve: &[(&str, std::net::SocketAddr)]) -> Load {
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = lanes
            .iter()
            .enumerate()
            .map(|(index, lane)| {
                let mut builder = super::http_client_builder().timeout(REQUEST_TIMEOUT);
                for (host, addr) in resolve {
                    builder = builder.resolve(host, *addr);
                }
                let client = builder.build().expect("load client");
                let (lane, stop) = (lane.clone(), Arc::clone(&stop));
                tokio::spawn(run_lane(index, lane, client, t0, stop))
            })
            .collect();
        Load {
            t0,
            stop,
            lanes,
            tasks,
        }
    }

    /// Time since the load started (to mark when a fault began or ended).
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Stops every lane (each finishes its current request) and returns the report.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for task in self.tasks {
            samples.extend(task.await.expect("load lane"));
        }
        samples.sort_by_key(|s| s.start);
        Report {
            lanes: self.lanes,
            samples,
            duration: self.t0.elapsed(),
        }
    }
}

async fn run_lane(
    index: usize,
    lane: Lane,
    client: reqwest::Client,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Sample> {
    let html = lane.wants_html();
    let mut samples = Vec::new();
    let mut cookies = lane.cookies.iter().cycle();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut request = client.get(&lane.url);
        for (name, value) in &lane.headers {
            request = request.header(name, value);
        }
        if let Some(cookie) = cookies.next() {
            request = request.header("cookie", cookie);
        }
        let outcome = match request.send().await {
            Ok(response) => read_outcome(response, html).await,
            Err(e) => Outcome::Error(error_chain(&e)),
        };
        samples.push(Sample {
            lane: index,
            start: started - t0,
            latency: started.elapsed(),
            outcome,
        });
        tokio::time::sleep(lane.pause).await;
    }
    samples
}

async fn read_outcome(response: reqwest::Response, html: bool) -> Outcome {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Error(format!("{status} then body: {}", error_chain(&e))),
    };
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let page_ok = match status {
        200..=299 => true,
        300..=399 => headers.contains_key("location"),
        _ if html => {
            let text = String::from_utf8_lossy(&body);
            content_type.starts_with("text/html")
                && !request_id.is_empty()
                && text.contains(&format!("<h1>{status} "))
                && text.contains(request_id)
        }
        _ => {
            content_type.starts_with("application/json")
                && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| {
                    v["status"] == status
                        && v["error"].is_string()
                        && !request_id.is_empty()
                        && v["request_id"] == request_id
                })
        }
    };
    Outcome::Response {
        status,
        page_ok,
        set_cookie: headers.contains_key("set-cookie"),
        body_len: body.len(),
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

// === impl Report ===

impl Report {
    fn lane_index(&self, name: &str) -> usize {
        self.lanes
            .iter()
            .position(|l| l.name == name)
            .unwrap_or_else(|| panic!("no lane {name}"))
    }

    /// One report of two loads (their times stay relative to their own start: for counts
    /// and latencies, not for timelines).
    pub fn merge(first: Report, second: Report) -> Report {
        let offset = first.lanes.len();
        let mut lanes = first.lanes;
        lanes.extend(second.lanes);
        let mut samples = first.samples;
        samples.extend(second.samples.into_iter().map(|mut s| {
            s.lane += offset;
            s
        }));
        Report {
            lanes,
            samples,
            duration: first.duration.max(second.duration),
        }
    }

    /// Samples of the lanes named.
    pub fn of<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a Sample> + 'a {
        let lanes: Vec<usize> = names.iter().map(|n| self.lane_index(n)).collect();
        self.samples.iter().filter(move |s| lanes.contains(&s.lane))
    }

    /// Counts of outcome labels (`"200"`, `"503"`, `"error"`) over the lanes named.
    pub fn status_counts(&self, names: &[&str]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for s in self.of(names) {
            *counts.entry(s.outcome.label()).or_insert(0) += 1;
        }
        counts
    }

    /// Samples of the lanes named that did not get one of `ok` statuses.
    pub fn failed(&self, names: &[&str], ok: &[u16]) -> usize {
        self.of(names)
            .filter(|s| !s.outcome.status().is_some_and(|st| ok.contains(&st)))
            .count()
    }

    /// Longest latency over the lanes named.
    pub fn max_latency(&self, names: &[&str]) -> Duration {
        self.of(names).map(|s| s.latency).max().unwrap_or_default()
    }

    /// Time from `restored` until the end of the last request of the lanes named that started
    /// after `restored` and did not get one of `ok` (zero when none failed after it).
    pub fn recovery(&self, names: &[&str], ok: &[u16], restored: Duration) -> Duration {
        self.of(names)
            .filter(|s| s.start >= restored)
            .filter(|s| !s.outcome.status().is_some_and(|st| ok.contains(&st)))
            .map(|s| (s.start + s.latency).saturating_sub(restored))
            .max()
            .unwrap_or_default()
    }

    /// Asserts that every sample of lane `name` got one of `allowed` statuses, with a correct
    /// page (see [`Outcome::Response`]) and, unless `cookies_ok`, no Set-Cookie.
    pub fn assert_lane(&self, name: &str, allowed: &[u16], cookies_ok: bool) {
        let index = self.lane_index(name);
        for s in self.samples.iter().filter(|s| s.lane == index) {
            match &s.outcome {
                Outcome::Response {
                    status,
                    page_ok,
                    set_cookie,
                    ..
                } => {
                    assert!(
                        allowed.contains(status),
                        "lane {name}: {status} at {:?} (allowed {allowed:?}); {}",
                        s.start,
                        self.summary(&[name])
                    );
                    assert!(
                        page_ok,
                        "lane {name}: {status} at {:?} is not gatehouse's page",
                        s.start
                    );
                    assert!(
                        cookies_ok || !set_cookie,
                        "lane {name}: the cookie was touched at {:?} ({status})",
                        s.start
                    );
                }
                Outcome::Error(e) => panic!(
                    "lane {name}: request at {:?} failed after {:?}: {e}; {}",
                    s.start,
                    s.latency,
                    self.summary(&[name])
                ),
            }
        }
        assert!(
            self.samples.iter().any(|s| s.lane == index),
            "lane {name} sent nothing"
        );
    }

    /// Asserts that the lanes named got only `ok` from `after` on (and at least one sample).
    pub fn assert_ok_after(&self, names: &[&str], ok: &[u16], after: Duration) {
        for name in names {
            let index = self.lane_index(name);
            let late: Vec<&Sample> = self
                .samples
                .iter()
                .filter(|s| s.lane == index && s.start >= after)
                .collect();
            assert!(!late.is_empty(), "lane {name}: no request after {after:?}");
            for s in late {
                assert!(
                    s.outcome.status().is_some_and(|st| ok.contains(&st)),
                    "lane {name}: {:?} at {:?}, after recovery at {after:?}",
                    s.outcome,
                    s.start
                );
            }
        }
    }

    /// One line: per-lane counts.
    pub fn summary(&self, names: &[&str]) -> String {
        let mut out = String::new();
        for name in names {
            let _ = write!(out, "{name}={:?} ", self.status_counts(&[name]));
        }
        out.trim_end().to_owned()
    }

    /// Prints the measured line of a fault test:
    /// `FAULT name: requests=…, failed=…, status_counts={…}, recovery_ms=…, max_latency_ms=…`
    /// over the lanes named (`ok`: the statuses that count as success there).
    pub fn print_fault(
        &self,
        fault: &str,
        names: &[&str],
        ok: &[u16],
        recovery: Duration,
    ) -> String {
        let counts = self
            .status_counts(names)
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let line = format!(
            "FAULT {fault}: requests={}, failed={}, status_counts={{{counts}}}, recovery_ms={}, max_latency_ms={}",
            self.of(names).count(),
            self.failed(names, ok),
            recovery.as_millis(),
            self.max_latency(names).as_millis(),
        );
        println!("{line}");
        line
    }
}
