//! The container image: the `Containerfile` built with podman from the
//! static (musl) binaries, and the image run as an operator runs it — echo
//! through its port, `/metrics` scraped, its HEALTHCHECK command asked,
//! `podman stop` answered with a graceful exit.
//!
//! podman, runc and the musl target are installed when missing
//! (`support::tools`). podman is given `--runtime runc --cgroup-manager
//! cgroupfs` and the container `--network host` and explicit rlimits: in a
//! sandbox like CI's, the default runtime trips over the cgroups and the
//! inherited limits, and host networking needs no bridge. The binaries are
//! built in the `container-test` profile (Cargo.toml says why), into the
//! target directory of this test.
#![cfg(target_os = "linux")]

pub mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// The static target: its binaries need nothing from an image FROM scratch.
const TRIPLE: &str = "x86_64-unknown-linux-musl";
/// The Cargo profile the image's binaries are built in.
const PROFILE: &str = "container-test";
/// The tag of the image this test builds (rebuilt, from cache, each run).
const IMAGE: &str = "localhost/echoloop:test";

/// podman as this kind of machine runs it.
fn podman(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    cmd
}

/// podman's path once podman, runc and the musl target are all here;
/// `None` after saying why not (fails under CI).
fn container_tools(test: &str) -> Option<PathBuf> {
    let podman = tools::program(test, "podman", "podman")?;
    tools::program(test, "runc", "runc")?;
    tools::rust_target(test, TRIPLE).then_some(podman)
}

/// The target directory this test binary was built into
/// (`<target>/<profile>/deps/container-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds both binaries for musl, then the image from them, with the
/// commands the Containerfile's header gives (but this test's profile).
fn build_image(podman_path: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--bins", "--target", TRIPLE])
        .args(["--profile", PROFILE, "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir());
    run_tool("cargo build (musl)", &mut build).unwrap_or_else(|e| panic!("{e}"));
    let context = target_dir().join(TRIPLE).join(PROFILE);
    let mut image = podman(podman_path);
    image
        .args(["build", "--quiet", "--format", "docker", "-t", IMAGE, "-f"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Containerfile"))
        .arg(&context);
    run_tool("podman build", &mut image).unwrap_or_else(|e| panic!("{e}"));
}

/// A running container, removed (forcibly, if still there) when dropped.
struct Container {
    podman: PathBuf,
    name: String,
    /// `podman run` in the foreground: the server's log lines, and its
    /// exit status as the container's.
    run: Process,
}

impl Container {
    /// `podman run IMAGE args…` under the name `name`; the image's own
    /// environment (ECHOLOOP_UDP=true among it) applies beneath `args`.
    fn start(podman_path: &Path, name: &str, args: &[&str]) -> Container {
        let mut cmd = podman(podman_path);
        cmd.args(["run", "--rm", "--name", name, "--network", "host"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            // No systemd here to time the health checks: the test runs
            // the HEALTHCHECK's command itself.
            .args(["--no-healthcheck", "-e", "RUST_LOG=info", IMAGE])
            .args(args);
        Container {
            podman: podman_path.to_path_buf(),
            name: name.to_string(),
            run: Process::spawn("podman run", &mut cmd),
        }
    }

    /// `podman exec` in it, with the environment `env` added; the exit code.
    fn exec(&self, env: &str, command: &[String]) -> Option<i32> {
        let mut cmd = podman(&self.podman);
        cmd.args(["exec", "-e", env, &self.name]).args(command);
        run_to_exit(&mut cmd).status.code()
    }

    /// `podman inspect` of it, formatted by `format`.
    fn inspect(&self, format: &str) -> String {
        let mut cmd = podman(&self.podman);
        cmd.args(["inspect", "--format", format, &self.name]);
        run_tool("podman inspect", &mut cmd).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let mut cmd = podman(&self.podman);
        let _ = cmd.args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

/// The address after `marker` in a log line (`metrics on http://ADDR/…`).
fn addr_after(line: &str, marker: &str) -> SocketAddr {
    line.rsplit(marker)
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address after {marker:?} in {line:?}"))
}

/// The image's HEALTHCHECK command (`["CMD", program, args…]`) without the
/// "CMD".
fn healthcheck_command(podman_path: &Path) -> Vec<String> {
    let mut cmd = podman(podman_path);
    cmd.args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Healthcheck}}",
        IMAGE,
    ]);
    let json = run_tool("podman image inspect", &mut cmd).unwrap_or_else(|e| panic!("{e}"));
    let check: serde_json::Value = serde_json::from_str(&json).expect("healthcheck as JSON");
    let test: Vec<String> = check["Test"]
        .as_array()
        .unwrap_or_else(|| panic!("no HEALTHCHECK in the image: {json}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect();
    assert_eq!(test.first().map(String::as_str), Some("CMD"), "{json}");
    test[1..].to_vec()
}

/// `GET /metrics` from the container's metrics address: its body.
fn scrape(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send the scrape");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the scrape");
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    response
}

/// The image built FROM scratch from the musl binaries runs `echoloop` as
/// its entrypoint with the flags given to `podman run`, as a non-root user;
/// it echoes TCP and (from the image's ECHOLOOP_UDP) UDP, its `/metrics`
/// counts what was echoed, its HEALTHCHECK command exits 0 against the
/// metrics port and 1 against a port that is not it, `echoloop-stress` is
/// in it, and `podman stop` (SIGTERM) ends the server gracefully, exit 0.
#[test]
fn image_echoes_serves_metrics_and_stops_gracefully() {
    let Some(podman_path) = container_tools("image_echoes_serves_metrics_and_stops_gracefully")
    else {
        return;
    };
    build_image(&podman_path);
    let name = format!("echoloop-test-{}", std::process::id());
    let args = ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"];
    let mut container = Container::start(&podman_path, &name, &args);
    let echo = Binary::listening_addr(&container.run.stderr.wait_for("listening on"));
    let udp = addr_after(
        &container.run.stderr.wait_for("udp echo on"),
        "udp echo on ",
    );
    let metrics = addr_after(&container.run.stderr.wait_for("metrics on"), "http://");

    let pid = container.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).expect("status");
    let uids = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uids.split_whitespace().skip(1).all(|uid| uid == "65532"),
        "{uids}"
    );

    let message = payload(0, 1000);
    round_trip(&connect(echo), &message);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    socket.set_read_timeout(Some(TIMEOUT)).expect("udp timeout");
    socket.send_to(b"datagram", udp).expect("send datagram");
    let mut back = [0u8; 64];
    let (n, from) = socket.recv_from(&mut back).expect("the datagram's echo");
    assert_eq!((&back[..n], from), (&b"datagram"[..], udp));
    let text = scrape(metrics);
    assert!(
        text.contains("\necholoop_received_bytes_total 1000\n"),
        "{text}"
    );
    assert!(
        text.contains("\necholoop_udp_received_datagrams_total 1\n"),
        "{text}"
    );

    let check = healthcheck_command(&podman_path);
    assert_eq!(
        container.exec(&format!("ECHOLOOP_METRICS={metrics}"), &check),
        Some(0)
    );
    assert_eq!(
        container.exec(&format!("ECHOLOOP_METRICS={echo}"), &check),
        Some(1)
    );
    let stress = ["echoloop-stress".to_string(), "--version".to_string()];
    assert_eq!(container.exec("RUST_LOG=info", &stress), Some(0));

    let mut stop = podman(&podman_path);
    stop.args(["stop", "--time", "30", &name]);
    run_tool("podman stop", &mut stop).unwrap_or_else(|e| panic!("{e}"));
    container.run.stderr.wait_for("stopped:");
    assert_eq!(container.run.wait_exit().code(), Some(0));
}
