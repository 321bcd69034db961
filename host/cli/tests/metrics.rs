//! A real havend with `[metrics]`: scraped with a real HTTP client (Python's urllib) and parsed
//! by the Prometheus project's own parsers (`prometheus_client`, OpenMetrics and text 0.0.4),
//! after a failover decided in monitor mode; and hostile clients (silent, oversized, wrong
//! method or path) are answered or dropped within bounds while scrapes go on.

mod common;

use common::{Havend, Setup, monitor_config, poll_until};
use haven_test_artifacts::support::hastctl_list;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(20);
const MASTER: &str = r#"{"carp-changed":{"vhid":1,"interface":"em0","state":"master"}}"#;
const SCRAPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/scrape_metrics.py");

/// A havend with metrics on a port of the system's choosing, and the page's URL.
fn start() -> (Setup, Havend, String) {
    let setup = Setup::in_tmp("metrics-");
    setup.install_hastctl(&hastctl_list("test", "secondary", "complete", "0"));
    let config = monitor_config(&setup, "[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(setup.config(), config).unwrap();
    let mut daemon = Havend::launch(&setup, &[], setup.path("havend.stderr"), POLL, Some(60));
    daemon.wait_ready();
    let url = daemon
        .status()
        .metrics
        .expect("status names the metrics listener");
    (setup, daemon, url)
}

/// Every sample of both formats, as the parsers read them.
fn scrape(url: &str) -> Value {
    let output = Command::new("python3")
        .arg(SCRAPER)
        .arg(url)
        .output()
        .expect("running python3");
    match output.status.code() {
        Some(0) => serde_json::from_slice(&output.stdout).expect("the scraper prints JSON"),
        Some(2) => panic!(
            "the Prometheus parser is missing: pip install prometheus-client \
             (scripts/test and .ci/run install it)"
        ),
        _ => panic!(
            "the scrape failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The value of the sample `name` whose labels include `labels`, in `format`.
fn sample(page: &Value, format: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page[format]["samples"]
        .as_array()?
        .iter()
        .find(|sample| {
            sample[0] == name
                && labels
                    .iter()
                    .all(|(key, value)| sample[1][key].as_str() == Some(value))
        })
        .and_then(|sample| sample[2].as_f64())
}

#[test]
fn a_scrape_parses_in_both_formats_and_counts_what_the_daemon_did() {
    let (_setup, daemon, url) = start();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"));
    let status_text = common::stdout_text(&daemon.havenctl(&["status"]));
    assert!(
        status_text.contains(&format!("Metrics: {url}")),
        "{status_text}"
    );

    assert!(daemon.havenctl(&["notify", MASTER]).status.success());
    poll_until(POLL, || {
        let status = daemon.status();
        (status.last_plan_end.is_some()).then_some(())
    })
    .unwrap_or_else(|| panic!("no plan ran\n{}", daemon.diagnostics()));

    let page = scrape(&url);
    assert!(
        page["openmetrics"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{page}"
    );
    assert!(
        page["text"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{page}"
    );
    for format in ["openmetrics", "text"] {
        let value = |name: &str, labels: &[(&str, &str)]| {
            sample(&page, format, name, labels)
                .unwrap_or_else(|| panic!("{format}: no {name} {labels:?} in {page}"))
        };
        assert!(
            value(
                "haven_events_total",
                &[("source", "notify"), ("kind", "carp-changed")]
            ) >= 1.0
        );
        assert!(
            value(
                "haven_decisions_total",
                &[("policy", "mysql"), ("outcome", "plan")]
            ) >= 1.0
        );
        assert!(
            value(
                "haven_decision_duration_seconds_count",
                &[("policy", "mysql")]
            ) >= 1.0
        );
        assert!(
            value(
                "haven_steps_total",
                &[("kind", "hast-role"), ("outcome", "ok")]
            ) >= 1.0
        );
        assert!(
            value(
                "haven_step_duration_seconds_count",
                &[("kind", "hast-role")]
            ) >= 1.0
        );
        assert_eq!(
            value("haven_carp_state", &[("vhid", "1"), ("state", "master")]),
            1.0
        );
        assert_eq!(
            value("haven_carp_state", &[("vhid", "1"), ("state", "backup")]),
            0.0
        );
        let roles: f64 = ["init", "primary", "secondary"]
            .iter()
            .map(|role| value("haven_hast_role", &[("resource", "test"), ("state", role)]))
            .sum();
        assert_eq!(roles, 1.0, "one role at a time");
        assert_eq!(value("haven_queue_dropped_total", &[]), 0.0);
        assert_eq!(value("haven_journal_errors_total", &[]), 0.0);
        assert_eq!(
            value("haven_reloads_total", &[("outcome", "rejected")]),
            0.0
        );
        assert_eq!(
            value("haven_bad_input_total", &[("source", "hastctl")]),
            0.0
        );
        assert_eq!(value("haven_policy_loaded", &[("policy", "mysql")]), 1.0);
        assert_eq!(
            value(
                "haven_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );
    }

    // Prometheus's own linter on the page: names, units, suffixes, help.
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let answer = raw(address, b"GET /metrics HTTP/1.1\r\n\r\n");
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    if let Some(output) = promtool(&["check", "metrics"], body.as_bytes()) {
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "promtool check metrics: {output:?}\n{body}"
        );
    }
}

/// Run Prometheus's `promtool` with `args` and `input`; `None`, said, when it is not
/// installed (`.ci/run` and `scripts/test` install it from Debian's `prometheus` package).
fn promtool(args: &[&str], input: &[u8]) -> Option<std::process::Output> {
    use std::process::Stdio;
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            eprintln!("skipped: promtool {args:?}: {error} (scripts/test installs it)");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(input).unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/prometheus/haven-alerts.yml"
    );
    if let Some(output) = promtool(&["check", "rules", rules], b"") {
        assert!(output.status.success(), "promtool check rules: {output:?}");
    }
}

/// Send `request` raw and read the whole answer (the server closes the connection).
fn raw(address: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer (and close) before it has read everything; that is its right.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn hostile_clients_are_refused_within_bounds_and_scrapes_go_on() {
    let (_setup, daemon, url) = start();
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();

    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(raw(&address, huge.as_bytes()).starts_with("HTTP/1.1 431 "));
    assert!(raw(&address, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    assert!(raw(&address, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(
        raw(&address, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n").starts_with("HTTP/1.1 400 ")
    );
    let head = raw(&address, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"),
        "{head}"
    );

    // A client that connects and says nothing is dropped after the request timeout; the
    // scrape behind it is answered.
    let silent = TcpStream::connect(&address).unwrap();
    let page = scrape(&url);
    assert!(
        sample(&page, "text", "haven_uptime_seconds", &[]).is_some(),
        "{page}"
    );
    drop(silent);
    // The daemon answered status all along.
    assert!(daemon.havenctl(&["status"]).status.success());
}
