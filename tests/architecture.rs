//! The rules between modules (docs/design.md §3), checked on the sources: the pure core does no
//! I/O through the Kubernetes client or the AWS SDK, the SSM adapter knows nothing of
//! Kubernetes, and `main.rs` only parses and wires.

use std::path::Path;

/// The pure core: files that decide without I/O.
const CORE: [&str; 17] = [
    "src/validation.rs",
    "src/validation/rules.rs",
    "src/validation/policy.rs",
    "src/providers/mod.rs",
    "src/providers/parts.rs",
    "src/providers/onepassword.rs",
    "src/providers/doppler.rs",
    "src/providers/infisical.rs",
    "src/document.rs",
    "src/status.rs",
    "src/reason.rs",
    "src/tiers.rs",
    "src/ownership.rs",
    "src/reconcile/at_rest.rs",
    "src/reconcile/plan.rs",
    "src/reconcile/slim.rs",
    "src/reconcile/compact.rs",
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

// ---- the module graph: every `use crate::…`, `use super::…` and `use self::…` in src/ ----

use std::collections::{BTreeMap, BTreeSet};

/// Every module of the library, by path (`reconcile::plan`), with its file (`src/reconcile/plan.rs`).
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = BTreeMap::new();
    let mut stack = vec![root.join("src")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let Some(stem) = rel.strip_prefix("src/").and_then(|r| r.strip_suffix(".rs")) else {
                continue;
            };
            if stem == "main" || stem == "lib" {
                continue; // the binary is wired through the library; the root declares modules only
            }
            let module = stem.strip_suffix("/mod").unwrap_or(stem).replace('/', "::");
            found.insert(module, rel);
        }
    }
    found
}

/// The paths named by one `use` tree (`a::{b, c::d}` gives `a::b` and `a::c::d`).
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or_default().trim();
        return vec![path.trim_end_matches("::*").to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.to_owned(),
            _ if prefix.is_empty() => p,
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// The modules `module` (in `code`) imports, resolved to the deepest module each path names.
fn imports(module: &str, code: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = code
        .split("\n#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or_default();
    let parent = |m: &str| {
        m.rsplit_once("::")
            .map(|(p, _)| p.to_owned())
            .unwrap_or_default()
    };
    let mut deps = BTreeSet::new();
    let lines: Vec<&str> = code.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        i += 1;
        let Some(start) = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
        else {
            continue;
        };
        let mut stmt = start.to_owned();
        while !stmt.contains(';') && i < lines.len() {
            stmt.push_str(lines[i].trim());
            i += 1;
        }
        let stmt = stmt.split(';').next().unwrap_or_default();
        for path in expand(stmt) {
            let mut segs: Vec<&str> = path.split("::").collect();
            let mut base = match segs.first().copied() {
                Some("crate") => String::new(),
                Some("super") => parent(module),
                Some("self") => module.to_owned(),
                Some(first) if all.contains_key(&join(module, first)) => {
                    segs.insert(0, "self");
                    module.to_owned()
                }
                _ => continue, // another crate
            };
            for s in segs.iter().skip(1) {
                if *s == "super" {
                    base = parent(&base);
                    continue;
                }
                let next = join(&base, s);
                if !all.contains_key(&next) {
                    break;
                }
                base = next;
            }
            if !base.is_empty() && base != module {
                deps.insert(base);
            }
        }
    }
    deps
}

fn join(base: &str, seg: &str) -> String {
    if base.is_empty() {
        seg.to_owned()
    } else {
        format!("{base}::{seg}")
    }
}

/// The import graph of `src/`: module → the modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let all = modules();
    all.iter()
        .map(|(m, file)| (m.clone(), imports(m, &source(file), &all)))
        .collect()
}

/// Every module `from` reaches through imports (itself excluded unless on a circle).
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = graph[from].iter().map(String::as_str).collect();
    while let Some(m) = stack.pop() {
        if seen.insert(m.to_owned())
            && let Some(next) = graph.get(m)
        {
            stack.extend(next.iter().map(String::as_str));
        }
    }
    seen
}

#[test]
fn no_module_imports_itself_through_others() {
    let g = graph();
    let mut circles = BTreeSet::new();
    for m in g.keys() {
        if reach(&g, m).contains(m) {
            let on: BTreeSet<String> = reach(&g, m)
                .into_iter()
                .filter(|o| reach(&g, o).contains(m))
                .collect();
            circles.insert(on);
        }
    }
    let known: BTreeSet<BTreeSet<String>> = KNOWN_CIRCLES
        .iter()
        .map(|c| c.iter().map(|m| (*m).to_owned()).collect())
        .collect();
    assert_eq!(
        circles, known,
        "import circles in src/ (each set: the modules on one circle); none may be added, and a \
         circle that is gone must leave KNOWN_CIRCLES"
    );
}

/// Circles allowed for now: none.
const KNOWN_CIRCLES: &[&[&str]] = &[];

/// The module of a file of `src/` (`src/reconcile/plan.rs` gives `reconcile::plan`).
fn module_of(file: &str) -> String {
    let stem = file.trim_start_matches("src/").trim_end_matches(".rs");
    stem.strip_suffix("/mod").unwrap_or(stem).replace('/', "::")
}

/// The shell: modules that do I/O or hold the process's state (clients, caches, flags, tasks).
/// The core imports none of them.
const SHELL: [&str; 22] = [
    "config",
    "fair",
    "run",
    "lease",
    "metrics",
    "admission",
    "ssm",
    "verify",
    "verify::http",
    "verify::step",
    "verify::ledger",
    "reconcile",
    "reconcile::context",
    "reconcile::pipeline",
    "reconcile::watches",
    "reconcile::sweep",
    "reconcile::cleanup",
    "reconcile::read",
    "reconcile::tier",
    "reconcile::verify",
    "reconcile::write",
    "reconcile::report",
];

#[test]
fn the_core_imports_nothing_of_the_shell() {
    let g = graph();
    for file in CORE {
        let module = module_of(file);
        let deps = g
            .get(&module)
            .unwrap_or_else(|| panic!("{file} is not a module of src/"));
        for dep in deps {
            assert!(
                !SHELL.contains(&dep.as_str()),
                "{file} (pure core) imports {dep}, which is the shell"
            );
        }
    }
    for shell in SHELL {
        assert!(
            g.contains_key(shell),
            "SHELL names {shell}, which is no module"
        );
    }
}

/// The reconcile pipeline in run order, with each step's number in its header.
const STEPS: [(&str, u32); 8] = [
    ("reconcile::read", 1),
    ("reconcile::at_rest", 1),
    ("reconcile::desired", 2),
    ("reconcile::tier", 3),
    ("reconcile::verify", 4),
    ("reconcile::plan", 5),
    ("reconcile::write", 6),
    ("reconcile::report", 7),
];

/// Steps whose header is not numbered yet: none.
const UNNUMBERED: [&str; 0] = [];

#[test]
fn each_step_imports_only_earlier_steps_and_says_its_place() {
    let g = graph();
    let all = modules();
    let number = |m: &str| STEPS.iter().find(|(s, _)| *s == m).map(|(_, n)| *n);
    for (step, n) in STEPS {
        let file = &all[step];
        let code = source(file);
        for dep in &g[step] {
            if let Some(k) = number(dep) {
                assert!(
                    k <= n,
                    "{step} (step {n}) imports {dep} (step {k}): a step uses only the steps before it"
                );
            }
            assert_ne!(
                dep, "reconcile::pipeline",
                "{step} imports the driver: the driver calls the steps, not the other way"
            );
        }
        // Paths used without a `use` count too (`super::write::reason_of(..)`).
        for (later, k) in STEPS.iter().filter(|(_, k)| *k > n) {
            let name = later.trim_start_matches("reconcile::");
            assert!(
                !code.contains(&format!("super::{name}::"))
                    && !code.contains(&format!("{later}::")),
                "{step} (step {n}) names {later} (step {k})"
            );
        }
        if !UNNUMBERED.contains(&step) {
            let first = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
                .unwrap()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            assert!(
                first.starts_with(&format!("//! Step {n}")),
                "{file} must open with \"//! Step {n}\" (run order), not {first:?}"
            );
        }
    }
    // The infrastructure the steps share imports no step (else a step reaches a later one).
    for shared in [
        "reconcile::context",
        "reconcile::error",
        "reconcile::evidence",
    ] {
        let code = source(&all[shared]);
        for (step, _) in STEPS {
            let name = step.trim_start_matches("reconcile::");
            if KNOWN_CIRCLES
                .iter()
                .any(|c| c.contains(&shared) && c.contains(&step))
            {
                continue; // counted, and bounded, by no_module_imports_itself_through_others
            }
            assert!(
                !g[shared].contains(step) && !code.contains(&format!("super::{name}::")),
                "{shared}, which every step may use, uses the step {step}"
            );
        }
    }
}
