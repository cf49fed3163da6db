//! deploy/: every Kubernetes manifest parsed by PyYAML (a YAML parser not
//! ours, Debian's python3-yaml, installed when missing) and checked where a
//! mistake would only show on a cluster, which is not reachable here: the
//! image, ports and probes against each other and the Containerfile, the
//! security context, the Services' and ServiceMonitor's selectors, the Job
//! and its merge against each other, and every container's arguments run
//! through the real binary's own parser.
#![cfg(unix)]

pub mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use support::*;

/// Parses every `deploy/*.yaml` with PyYAML: each document, with the file
/// it came from. `None` after saying why not (fails under CI).
fn manifests(test: &str) -> Option<Vec<(String, Json)>> {
    let python = tools::program(test, "python3", "python3")?;
    let has_yaml = || {
        Command::new(&python)
            .args(["-c", "import yaml"])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if !tools::available(test, "Python's yaml module", "python3-yaml", has_yaml) {
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read deploy/")
        .map(|entry| entry.expect("a deploy/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    const TO_JSON: &str = "import json, sys, yaml\n\
        print(json.dumps([[p, d] for p in sys.argv[1:] for d in yaml.safe_load_all(open(p))]))";
    let mut cmd = Command::new(&python);
    cmd.args(["-c", TO_JSON]).args(&files);
    let json = run_tool("PyYAML", &mut cmd).unwrap_or_else(|e| panic!("{e}"));
    let docs: Vec<(String, Json)> = serde_json::from_str(&json).expect("PyYAML's JSON");
    Some(docs)
}

/// What the Containerfile says the image is.
struct Image {
    /// Where the binaries are (`COPY … DIR/`).
    bin_dir: String,
    /// `USER`'s numeric user.
    uid: u64,
    /// `ENTRYPOINT`'s program.
    entrypoint: String,
    /// `EXPOSE`d ports, as `7878/tcp`.
    exposed: BTreeSet<String>,
}

/// Reads the Containerfile's instructions this test checks against.
fn image() -> Image {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Containerfile"))
        .expect("read the Containerfile");
    let instruction = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("no {name} in the Containerfile"))
    };
    let copy = instruction("COPY ");
    Image {
        bin_dir: copy
            .rsplit(' ')
            .next()
            .expect("a COPY destination")
            .to_string(),
        uid: instruction("USER ")
            .split(':')
            .next()
            .unwrap()
            .parse()
            .expect("a numeric USER"),
        entrypoint: serde_json::from_str::<Vec<String>>(instruction("ENTRYPOINT "))
            .expect("ENTRYPOINT in exec form")[0]
            .clone(),
        exposed: instruction("EXPOSE ")
            .split(' ')
            .map(String::from)
            .collect(),
    }
}

/// The one document of `kind` named `name`.
#[track_caller]
fn find<'a>(docs: &'a [(String, Json)], kind: &str, name: &str) -> &'a Json {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

/// Whether every label `selector` asks for is among `labels`.
fn selects(selector: &Json, labels: &Json) -> bool {
    let selector = selector.as_object().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels[k] == *v)
}

/// A flag's value in `args` (written `--flag=value`).
#[track_caller]
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let prefix = format!("{name}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name}=… in {args:?}"))
}

/// The port after the last `:` of an address.
#[track_caller]
fn port_of(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

/// A container's arguments with `$(VAR)` expanded as Kubernetes does, from
/// its `env` (a field reference, the Job's completion index, as 0, or
/// `index`). A `$(VAR)` with no such variable fails: Kubernetes would pass
/// it on literally.
#[track_caller]
fn expanded_args(container: &Json, index: u64) -> Vec<String> {
    let env = container["env"].as_array().cloned().unwrap_or_default();
    let args = container["args"].as_array().expect("args");
    args.iter()
        .map(|arg| {
            let mut arg = arg.as_str().expect("a string argument").to_string();
            for var in &env {
                let value = match var["value"].as_str() {
                    Some(value) => value.to_string(),
                    None => index.to_string(),
                };
                arg = arg.replace(&format!("$({})", var["name"].as_str().unwrap()), &value);
            }
            assert!(!arg.contains("$("), "{arg}: no such variable in {env:?}");
            arg
        })
        .collect()
}

/// Runs the container's program (its `command`, else the image's
/// entrypoint) — our binary of that name — with the container's arguments
/// and `--help` last: clap parses every argument before it gets there, so
/// an unknown flag or a bad value fails (exit 2) as it would in the pod.
#[track_caller]
fn assert_flags_accepted(image: &Image, container: &Json) {
    let program = match container["command"].as_array() {
        Some(command) => command[0].as_str().expect("a program").to_string(),
        None => image.entrypoint.clone(),
    };
    let (dir, name) = program.rsplit_once('/').expect("an absolute program path");
    assert_eq!(
        format!("{dir}/"),
        image.bin_dir,
        "{program} is not in the image"
    );
    let ours = match name {
        "echoloop" => ECHOLOOP,
        "echoloop-stress" => STRESS,
        other => panic!("{other} is not one of the image's programs"),
    };
    let args = expanded_args(container, 0);
    let exit = run_to_exit(Command::new(ours).args(&args).arg("--help"));
    assert_eq!(
        exit.status.code(),
        Some(0),
        "{name} {args:?}: {}",
        exit.stderr_text()
    );
}

/// The container security every pod here must have: not root (the image's
/// user), no privilege escalation, a read-only root filesystem, no
/// capabilities, the image's default seccomp profile.
#[track_caller]
fn assert_locked_down(image: &Image, pod: &Json) {
    let ctx = &pod["securityContext"];
    assert_eq!(ctx["runAsNonRoot"], true, "{ctx}");
    assert_eq!(ctx["runAsUser"], image.uid, "{ctx}");
    assert_eq!(ctx["seccompProfile"]["type"], "RuntimeDefault", "{ctx}");
    assert_eq!(pod["automountServiceAccountToken"], false);
    for container in pod["containers"].as_array().expect("containers") {
        let ctx = &container["securityContext"];
        assert_eq!(ctx["runAsNonRoot"], true, "{ctx}");
        assert_eq!(ctx["allowPrivilegeEscalation"], false, "{ctx}");
        assert_eq!(ctx["readOnlyRootFilesystem"], true, "{ctx}");
        assert_eq!(
            ctx["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{ctx}"
        );
        assert!(ctx["capabilities"]["add"].is_null(), "{ctx}");
        assert_flags_accepted(image, container);
    }
}

/// The Deployment's container port named `name`: (port, protocol).
#[track_caller]
fn named_port(container: &Json, name: &Json) -> (u64, String) {
    let port = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == *name)
        .unwrap_or_else(|| panic!("no container port named {name}"));
    let protocol = port["protocol"].as_str().unwrap_or("TCP").to_string();
    (port["containerPort"].as_u64().expect("a port"), protocol)
}

/// Every document has a kind and a name, and every pod in deploy/ runs the
/// same image, locked down, with arguments the real binaries accept.
#[test]
fn every_manifest_parses_and_every_pod_is_locked_down() {
    let Some(docs) = manifests("every_manifest_parses_and_every_pod_is_locked_down") else {
        return;
    };
    let image = image();
    let mut images = BTreeSet::new();
    let mut pods = 0;
    for (file, doc) in &docs {
        assert!(
            doc["apiVersion"].is_string() && doc["kind"].is_string(),
            "{file}: {doc}"
        );
        assert!(doc["metadata"]["name"].is_string(), "{file}: {doc}");
        let pod = &doc["spec"]["template"]["spec"];
        if pod.is_object() {
            assert_locked_down(&image, pod);
            for container in pod["containers"].as_array().expect("containers") {
                images.insert(container["image"].as_str().expect("image").to_string());
            }
            pods += 1;
        }
    }
    assert_eq!(pods, 3, "the Deployment, the stress Job and its merge");
    assert_eq!(images.len(), 1, "one image for all: {images:?}");
}

/// The server fleet: replicas, ports the binary listens on and the image
/// exposes, both probes on the metrics port's /healthz, resources, the
/// scrape annotations, a grace period longer than the server's; the echo
/// Service on port 7 (TCP and UDP) reaching the echo port, and the
/// ServiceMonitor scraping the metrics Service only.
#[test]
fn the_server_fleet_is_wired_port_to_port() {
    let Some(docs) = manifests("the_server_fleet_is_wired_port_to_port") else {
        return;
    };
    let image = image();
    let deployment = find(&docs, "Deployment", "echoloop");
    assert!(deployment["spec"]["replicas"].as_u64() >= Some(2));
    let template = &deployment["spec"]["template"];
    let labels = &template["metadata"]["labels"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        labels
    ));
    let container = &template["spec"]["containers"][0];
    let args = expanded_args(container, 0);
    let echo = named_port(container, &"echo".into());
    let metrics = named_port(container, &"metrics".into());
    assert_eq!(echo, (port_of(flag(&args, "--listen")), "TCP".into()));
    assert_eq!(
        named_port(container, &"echo-udp".into()),
        (echo.0, "UDP".into())
    );
    assert!(args.iter().any(|a| a == "--udp"), "{args:?}");
    assert_eq!(metrics, (port_of(flag(&args, "--metrics")), "TCP".into()));
    for (port, protocol) in [&echo, &(echo.0, "UDP".into()), &metrics] {
        let exposed = format!("{port}/{}", protocol.to_lowercase());
        assert!(image.exposed.contains(&exposed), "{exposed} not EXPOSEd");
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(named_port(container, &get["port"]), metrics, "{probe}");
    }
    let requests = &container["resources"]["requests"];
    assert!(requests["cpu"].is_string() && requests["memory"].is_string());
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], metrics.0.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let grace: f64 = flag(&args, "--shutdown-grace").parse().expect("seconds");
    assert!(template["spec"]["terminationGracePeriodSeconds"].as_f64() > Some(grace));

    let service = find(&docs, "Service", "echo");
    assert!(selects(&service["spec"]["selector"], labels));
    let mut served = BTreeSet::new();
    for port in service["spec"]["ports"].as_array().expect("ports") {
        let (target, protocol) = named_port(container, &port["targetPort"]);
        assert_eq!(
            (target, protocol.as_str()),
            (echo.0, port["protocol"].as_str().unwrap())
        );
        served.insert((port["port"].as_u64().unwrap(), protocol));
    }
    assert_eq!(
        served,
        BTreeSet::from([(7, "TCP".into()), (7, "UDP".into())])
    );

    let scraped = find(&docs, "Service", "echoloop-metrics");
    assert!(selects(&scraped["spec"]["selector"], labels));
    let monitor = find(&docs, "ServiceMonitor", "echoloop");
    let wanted = &monitor["spec"]["selector"]["matchLabels"];
    assert!(selects(wanted, &scraped["metadata"]["labels"]));
    assert!(
        !selects(wanted, &service["metadata"]["labels"]),
        "scrapes the echo Service"
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let port = &scraped["spec"]["ports"][0];
    assert_eq!(port["name"], endpoint["port"]);
    assert_eq!(named_port(container, &port["targetPort"]), metrics);
}

/// The load fleet: an Indexed Job of N clients against the echo Service's
/// TCP port, each writing its own report onto a shared volume, and a merge
/// of exactly those N reports from the same volume.
#[test]
fn the_load_fleet_writes_what_the_merge_reads() {
    let Some(docs) = manifests("the_load_fleet_writes_what_the_merge_reads") else {
        return;
    };
    let job = &find(&docs, "Job", "echoloop-stress")["spec"];
    assert_eq!(job["completionMode"], "Indexed");
    assert_eq!(job["parallelism"], job["completions"]);
    let clients = job["completions"].as_u64().expect("completions");
    let pod = &job["template"]["spec"];
    let container = &pod["containers"][0];
    let addr = expanded_args(container, 0);
    let (host, port) = flag(&addr, "--addr").rsplit_once(':').expect("host:port");
    let service = find(&docs, "Service", host);
    assert!(service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(
            |p| p["port"].as_u64().map(|p| p.to_string()) == Some(port.into())
                && p["protocol"] == "TCP"
        ));
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("a mount");
    let claim = &pod["volumes"][0]["persistentVolumeClaim"]["claimName"];
    let pvc = find(
        &docs,
        "PersistentVolumeClaim",
        claim.as_str().expect("a claim"),
    );
    assert_eq!(
        pvc["spec"]["accessModes"],
        serde_json::json!(["ReadWriteMany"])
    );
    let reports: Vec<String> = (0..clients)
        .map(|i| flag(&expanded_args(container, i), "--output").to_string())
        .collect();
    assert_eq!(reports.iter().collect::<BTreeSet<_>>().len(), reports.len());
    assert!(
        reports.iter().all(|r| r.starts_with(&format!("{mount}/"))),
        "{reports:?}"
    );
    let args = expanded_args(container, 0);
    assert!(args.iter().any(|a| a == "--json"), "{args:?}");

    let merge = &find(&docs, "Job", "echoloop-stress-merge")["spec"]["template"]["spec"];
    let merging = expanded_args(&merge["containers"][0], 0);
    assert_eq!(merging[0], "merge");
    assert_eq!(merging[1..], reports[..]);
    assert_eq!(
        merge["containers"][0]["volumeMounts"][0]["mountPath"],
        mount
    );
    assert_eq!(
        merge["volumes"][0]["persistentVolumeClaim"]["claimName"],
        *claim
    );
}
