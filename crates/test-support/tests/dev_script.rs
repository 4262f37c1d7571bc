//! `scripts/dev` itself (issue 2): starting twice is harmless, a port taken by a stranger stops
//! `up` naming the port and the variable that moves it, and `down` leaves none of the processes
//! it started. Runs the real script on a private state folder and free ports, with the tansu
//! broker (installed once, shared through the tool cache), so the suite's servers are untouched.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `scripts/dev ARGS` with its state in `dev_dir` and the broker on `port`. The tool cache
/// stays the one the suite uses (`SUMMIT_CACHE_DIR`, or the checkout's `.dev/cache`).
fn dev(dev_dir: &Path, port: u16, args: &[&str]) -> Output {
    let cache = std::env::var_os("SUMMIT_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".dev/cache"));
    Command::new(repo_root().join("scripts/dev"))
        .args(args)
        .env("SUMMIT_DEV_DIR", dev_dir)
        .env("SUMMIT_CACHE_DIR", cache)
        .env("SUMMIT_KAFKA_PORT", port.to_string())
        .output()
        .expect("scripts/dev runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn recorded_pid(dev_dir: &Path) -> u32 {
    let text = std::fs::read_to_string(dev_dir.join("run/kafka.pid")).expect("pid file");
    text.split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("pid in the pid file")
}

/// Alive and not a zombie waiting to be reaped.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn up_twice_is_harmless_a_taken_port_is_named_and_down_leaves_nothing() {
    let base = std::env::temp_dir().join(summit_test_support::unique_name("dev-script"));
    let (mine, stranger) = (base.join("mine"), base.join("stranger"));
    let port = free_port();

    let first = dev(&mine, port, &["up", "kafka"]);
    assert!(first.status.success(), "up: {}", stderr(&first));
    let pid = recorded_pid(&mine);
    assert!(running(pid), "the broker runs");
    assert!(listening(port));

    let second = dev(&mine, port, &["up", "kafka"]);
    assert!(second.status.success(), "second up: {}", stderr(&second));
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );
    assert_eq!(recorded_pid(&mine), pid, "the running broker is kept");

    // Another state folder did not start what holds the port: refused, with the way out.
    let taken = dev(&stranger, port, &["up", "kafka"]);
    assert!(!taken.status.success(), "up on a taken port must fail");
    let message = stderr(&taken);
    assert!(
        message.contains(&port.to_string()) && message.contains("SUMMIT_KAFKA_PORT"),
        "{message}"
    );
    // ...and its `down` leaves the other folder's broker alone.
    let other_down = dev(&stranger, port, &["down"]);
    assert!(other_down.status.success(), "{}", stderr(&other_down));
    assert!(running(pid), "down stops only what its own folder started");

    let down = dev(&mine, port, &["down"]);
    assert!(down.status.success(), "down: {}", stderr(&down));
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!running(pid), "pid {pid} still runs after down");
    assert!(!listening(port), "port {port} still answers after down");
    assert!(!mine.join("run/kafka.pid").exists(), "pid file removed");
    let _ = std::fs::remove_dir_all(&base);
}
