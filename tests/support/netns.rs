//! The fault lab: a private network namespace in which the real `echoloop`
//! and the real `echoloop-stress` talk over the namespace's own loopback,
//! while the test breaks the network between them with nftables rules
//! (loss, partitions, resets, SYN loss) and a `tbf` qdisc (a slow link).
//!
//! Each [`Lab`] owns a namespace of its own (`echoloop-PID-N`), so tests in
//! parallel, or a lab left behind by a killed run, never see each other's
//! rules. Dropping the lab — at the end of a test, or while a failing test
//! unwinds — kills every process inside it and deletes the namespace; a new
//! lab also deletes namespaces left by test processes that no longer exist
//! (killed before their `Drop` could run).
//!
//! Only Linux, as root, with `ip`, `tc` and `ss` (iproute2) and `nft`
//! (nftables), can build one; the tools are installed when missing, and a
//! lab that cannot be built follows the rule of [`tools`](super::tools):
//! under CI a failure, elsewhere a skip that says why.
//!
//! Loopback traffic passes the `input` hook once per packet, whichever way
//! it goes, so one rule there acts on both directions of every connection.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{run_tool, succeeded, tools, Binary, Stress, StressRun, ECHOLOOP, STRESS};

/// The programs a lab runs, and the Debian packages they come in.
const TOOLS: [(&str, &str); 4] = [
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("ss", "iproute2"),
    ("nft", "nftables"),
];

/// Prefix of every namespace a lab creates.
const PREFIX: &str = "echoloop-";

/// The nftables table every fault goes into: one `input` chain, accept by
/// default, and named counters the rules may bump.
const TABLE: &str = "table inet fault {
    counter marked {}
    counter rejected {}
    counter dropped {}
    chain input { type filter hook input priority 0; policy accept; }
}";

/// A network namespace with its loopback up, deleted (with everything
/// running in it) when dropped.
#[derive(Debug)]
pub struct Lab {
    /// The namespace's name, as `ip netns` knows it.
    pub name: String,
}

/// An nftables rule added by [`Lab::rule`], to delete later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule(u64);

impl Lab {
    /// Creates a namespace for the test `what`, or returns `None` after the
    /// rule of [`tools`](super::tools) for what cannot be had: a failure
    /// under CI, elsewhere one line saying why the test skips. The tools
    /// are installed when missing, where that can be done.
    pub fn new(what: &str) -> Option<Lab> {
        if !tools::is_root() {
            tools::unavailable(what, "network namespaces need root");
            return None;
        }
        for (program, package) in TOOLS {
            tools::program(what, program, package)?;
        }
        match Self::create() {
            Ok(lab) => Some(lab),
            Err(why) => {
                tools::unavailable(what, &why);
                None
            }
        }
    }

    fn create() -> Result<Lab, String> {
        remove_stale_namespaces();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("{PREFIX}{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]).map_err(|e| format!("ip netns add: {e}"))?;
        // From here on, Drop cleans up whatever fails next.
        let lab = Lab { name };
        run("ip", &["-n", &lab.name, "link", "set", "lo", "up"])
            .map_err(|e| format!("loopback up: {e}"))?;
        lab.nft_script(TABLE)
            .map_err(|e| format!("nftables table: {e}"))?;
        Ok(lab)
    }

    /// `program` as a command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program args` inside the namespace to completion; panics if it
    /// fails. Returns its stdout.
    #[track_caller]
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let what = format!("{program} {args:?} in {}", self.name);
        run_tool(&what, self.command(program).args(args)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn nft_script(&self, script: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn nft: {e}"))?;
        let mut stdin = child.stdin.take().expect("nft stdin");
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("write to nft: {e}"))?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|e| format!("wait for nft: {e}"))?;
        succeeded("nft -f -", out)
    }

    /// Appends `rule` (nft syntax, e.g. `meta l4proto tcp drop`) to the
    /// input chain, where it sees every loopback packet once.
    #[track_caller]
    pub fn rule(&self, rule: &str) -> Rule {
        let mut args = vec![
            "--echo", "--handle", "add", "rule", "inet", "fault", "input",
        ];
        args.extend(rule.split_whitespace());
        let echoed = self.exec("nft", &args);
        let handle = echoed
            .split("# handle ")
            .nth(1)
            .and_then(|h| h.split_whitespace().next())
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("no handle in nft's echo: {echoed:?}"));
        Rule(handle)
    }

    /// Deletes a rule added by [`Lab::rule`].
    #[track_caller]
    pub fn delete(&self, rule: Rule) {
        let handle = rule.0.to_string();
        self.exec(
            "nft",
            &[
                "delete", "rule", "inet", "fault", "input", "handle", &handle,
            ],
        );
    }

    /// Packets counted so far by the named counter (`marked`, `rejected`,
    /// `dropped`).
    #[track_caller]
    pub fn counter(&self, name: &str) -> u64 {
        let listing = self.exec("nft", &["list", "counter", "inet", "fault", name]);
        listing
            .split("packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {listing:?}"))
    }

    /// Random loss: each TCP packet, either way, is dropped with
    /// probability `percent` / 100 (counted as `dropped`).
    #[track_caller]
    pub fn loss(&self, percent: u32) -> Rule {
        self.rule(&format!(
            "meta l4proto tcp numgen random mod 100 < {percent} counter name dropped drop"
        ))
    }

    /// A partition: every TCP packet dropped until the rule is deleted.
    #[track_caller]
    pub fn partition(&self) -> Rule {
        self.rule("meta l4proto tcp counter name dropped drop")
    }

    /// SYN loss: each connection request (the first SYN and every
    /// retransmission of it) is dropped with probability `percent` / 100.
    /// The SYN-ACK is a reply (`ct state established`) and passes.
    #[track_caller]
    pub fn syn_loss(&self, percent: u32) -> Rule {
        self.rule(&format!(
            "tcp flags & (syn | ack) == syn ct state new numgen random mod 100 < {percent} \
             counter name dropped drop"
        ))
    }

    /// Injected resets, as a middlebox kills a connection: `percent` % of
    /// new connections get conntrack mark 1 (counted as `marked`); then each
    /// packet the server at `port` sends on a marked connection is, with
    /// probability `per_mille` / 1000, dropped and answered with a TCP reset
    /// that looks as if it came from the client (counted as `rejected`).
    /// The server's side dies at once; the client learns of it only when it
    /// next sends (the server's kernel answers with a reset) — a client that
    /// merely waits for its echo waits forever. Unmarked connections, and
    /// resets themselves, are never touched.
    #[track_caller]
    pub fn resets(&self, port: u16, percent: u32, per_mille: u32) -> [Rule; 2] {
        [
            self.rule(&format!(
                "tcp flags & (syn | ack) == syn ct state new numgen random mod 100 < {percent} \
                 ct mark set 1 counter name marked"
            )),
            self.rule(&format!(
                "tcp sport {port} tcp flags & rst == 0 ct state established ct mark 1 \
                 numgen random mod 1000 < {per_mille} counter name rejected reject with tcp reset"
            )),
        ]
    }

    /// A slow link to the clients: loopback's MTU down to Ethernet's 1500
    /// (with 64 KiB packets, a small token bucket never lets one through),
    /// then what the server on `port` sends goes through a token bucket
    /// filter of `rate` (tc syntax, e.g. `1mbit`), and everything else at
    /// loopback speed. A client on a slow downlink: the server can read
    /// faster than it can write, which is what back-pressure is for (with
    /// both directions equally slow, the server never reads faster than it
    /// writes, and its pending output stays empty). An HTB root only sorts
    /// the packets into the two classes. Call it before any connection.
    #[track_caller]
    pub fn slow_link(&self, port: u16, rate: &str) {
        self.exec("ip", &["link", "set", "lo", "mtu", "1500"]);
        let tc = |args: &str| self.exec("tc", &args.split_whitespace().collect::<Vec<_>>());
        tc("qdisc add dev lo root handle 1: htb default 20");
        tc("class add dev lo parent 1: classid 1:10 htb rate 10gbit quantum 60000");
        tc("class add dev lo parent 1: classid 1:20 htb rate 10gbit quantum 60000");
        tc(&format!(
            "qdisc add dev lo parent 1:10 handle 10: tbf rate {rate} burst 16kb latency 200ms"
        ));
        tc(&format!(
            "filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport {port} 0xffff \
             flowid 1:10"
        ));
    }

    /// `ss` for TCP sockets in the namespace (timers and unacked bytes
    /// shown), for figures and failure messages.
    pub fn sockets(&self) -> String {
        self.exec("ss", &["-tnoi"])
    }

    /// Starts the real `echoloop` in the namespace on 127.0.0.1:0 with
    /// `args`, and waits until it listens.
    #[track_caller]
    pub fn server(&self, args: &[&str]) -> Binary {
        let mut cmd = self.command(ECHOLOOP);
        cmd.args(args);
        Binary::start_with(&mut cmd)
    }

    /// Starts `echoloop-stress` in the namespace with `args`; its report
    /// and status lines are collected as it runs.
    #[track_caller]
    pub fn spawn_stress<S: AsRef<OsStr>>(&self, args: &[S]) -> Stress {
        Stress::spawn(self.command(STRESS).args(args))
    }

    /// Runs `echoloop-stress` in the namespace to completion (at most
    /// `limit`).
    #[track_caller]
    pub fn stress<S: AsRef<OsStr>>(&self, args: &[S], limit: Duration) -> StressRun {
        self.spawn_stress(args).finish(limit)
    }

    /// Kills every process still in the namespace.
    fn kill_all(&self) {
        let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) on a pid inside our own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_all();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs a command to completion; its stdout, or an error with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    run_tool(
        &format!("{program} {args:?}"),
        Command::new(program).args(args),
    )
}

/// Deletes the namespaces of test processes that are gone: one killed by a
/// timeout never ran its labs' `Drop`.
fn remove_stale_namespaces() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let stale = Lab {
                name: name.to_string(),
            };
            drop(stale); // kills what is left inside, deletes it
        }
    }
}
