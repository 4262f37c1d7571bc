//! Helpers shared by the integration tests that run the `kafka-consumer` binary: finding its
//! admin port in its log, scraping `/metrics`, and showing the log's tail on failure.

// Each test binary compiles this module on its own and uses a different subset of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// The admin address the service logs once its port is bound.
pub(crate) async fn admin_addr(log: &Path) -> std::net::SocketAddr {
    admin_addrs(log, 1).await[0]
}

/// The admin addresses of the first `count` instances that logged one into `log`.
pub(crate) async fn admin_addrs(log: &Path, count: usize) -> Vec<std::net::SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found: Vec<std::net::SocketAddr> = text
            .lines()
            .filter(|l| l.contains("admin server listening"))
            .filter_map(|line| {
                let rest = line.split("admin_addr").nth(1)?;
                let addr: String = rest
                    .trim_start_matches(['"', ':', '='])
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                addr.parse().ok()
            })
            .take(count)
            .collect();
        if found.len() == count {
            return found;
        }
        assert!(Instant::now() < deadline, "no admin address logged: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("admin port answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Scrapes `/metrics` until `done` holds (or 15 s), returning the last scrape.
pub(crate) async fn scrape_until(
    addr: std::net::SocketAddr,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, text) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the first sample of `name` carrying every `labels` pair.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let Some(rest) = line.strip_prefix(name) else {
                return false;
            };
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().rev().take(30).collect::<Vec<_>>().join("\n")
}

/// A running service process, killed when the test ends early (a failed assertion).
pub(crate) struct Service(pub(crate) Child);

impl std::ops::Deref for Service {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Service {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
