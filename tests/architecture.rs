//! The rules between modules (docs/design.md §3), checked on the sources: the pure core does no
//! I/O through the Kubernetes client or the AWS SDK, the SSM adapter knows nothing of
//! Kubernetes, and `main.rs` only parses and wires.

use std::path::Path;

/// The pure core: files that decide without I/O.
const CORE: [&str; 7] = [
    "src/validation.rs",
    "src/document.rs",
    "src/status.rs",
    "src/reason.rs",
    "src/tiers.rs",
    "src/ownership.rs",
    "src/reconcile/plan.rs",
];

/// What the core may use of the `kube` crate: types and derives, never the client or runtime.
const CORE_MAY_USE_FROM_KUBE: [&str; 4] = ["ResourceExt", "CustomResource", "KubeSchema", "core"];

fn source(path: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    // Comments may name anything; only code counts.
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment of every item used from `krate` (`kube::{Api, runtime::x}` gives
/// `Api` and `runtime`).
fn used_from(code: &str, krate: &str) -> Vec<String> {
    let needle = format!("{krate}::");
    let mut items = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().last();
        rest = &rest[i + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `my_kube::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let first = part.trim().split("::").next().unwrap_or_default();
                if !first.is_empty() {
                    items.push(first.to_owned());
                }
            }
        } else {
            let first: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            items.push(first);
        }
    }
    items
}

#[test]
fn the_core_imports_neither_the_kubernetes_client_nor_the_aws_sdk() {
    for file in CORE {
        let code = source(file);
        for item in used_from(&code, "kube") {
            assert!(
                CORE_MAY_USE_FROM_KUBE.contains(&item.as_str()),
                "{file} uses kube::{item}: the pure core must not reach the Kubernetes client or runtime"
            );
        }
        for sdk in ["aws_sdk_ssm", "aws_config", "aws_smithy", "aws_types"] {
            assert!(
                used_from(&code, sdk).is_empty() && !code.contains(&format!("{sdk}::")),
                "{file} uses {sdk}: the pure core must not reach AWS"
            );
        }
        assert!(
            !code.contains("tokio::"),
            "{file} uses tokio: the pure core does no I/O"
        );
    }
}

#[test]
fn the_ssm_adapter_knows_nothing_of_kubernetes() {
    let code = source("src/ssm.rs");
    for krate in ["kube", "k8s_openapi"] {
        assert_eq!(
            used_from(&code, krate),
            Vec::<String>::new(),
            "src/ssm.rs uses {krate}"
        );
    }
    for module in [
        "crate::api",
        "crate::reconcile",
        "crate::status",
        "crate::reason",
    ] {
        assert!(!code.contains(module), "src/ssm.rs uses {module}");
    }
}

#[test]
fn only_the_reconciler_brings_kubernetes_and_ssm_together() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut both = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir.parent().unwrap()).unwrap();
            let rel = rel.to_string_lossy().into_owned();
            let code = source(&rel);
            let kube_io = used_from(&code, "kube")
                .iter()
                .any(|i| !CORE_MAY_USE_FROM_KUBE.contains(&i.as_str()));
            let ssm = code.contains("crate::ssm") || code.contains("aws_sdk_ssm::");
            if kube_io && ssm {
                both.push(rel);
            }
        }
    }
    both.sort();
    for file in &both {
        assert!(
            file.starts_with("src/reconcile/") || file == "src/run.rs",
            "{file} uses both the Kubernetes client and SSM; only src/reconcile/ (and the wiring in src/run.rs) may"
        );
    }
    assert!(
        both.iter().any(|f| f.starts_with("src/reconcile/")),
        "the check found no reconciler file at all: {both:?}"
    );
}

#[test]
fn main_only_parses_the_command_line_and_wires() {
    let code = source("src/main.rs");
    for krate in ["kube", "k8s_openapi", "aws_sdk_ssm", "aws_config", "hyper"] {
        assert!(
            used_from(&code, krate).is_empty(),
            "src/main.rs uses {krate}: behaviour belongs in the library"
        );
    }
    assert!(
        !code.contains("tokio::spawn"),
        "src/main.rs spawns tasks: wiring of tasks belongs in src/run.rs"
    );
}

#[test]
fn the_import_reader_sees_grouped_and_nested_uses() {
    let code = "use kube::{Api, ResourceExt};\nuse kube::runtime::watcher;\nlet c: kube::Client;";
    assert_eq!(
        used_from(code, "kube"),
        ["Api", "ResourceExt", "runtime", "Client"]
    );
    assert!(used_from("use my_kube::Api;", "kube").is_empty());
}
