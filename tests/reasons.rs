//! One list of condition reasons (`reason::Reason`): the README's table and the Argo CD health
//! check's transient reasons must say the same, and fail here when they drift.

use std::collections::BTreeSet;
use std::path::Path;

use vault_connection_operator::reason::Reason;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The backticked names in the first column of the README table headed `| reason |`.
fn readme_reasons() -> Vec<String> {
    let readme = read("README.md");
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| reason |"))
        .skip(2);
    let mut names = Vec::new();
    for line in lines.by_ref().take_while(|l| l.starts_with('|')) {
        let first = line.split('|').nth(1).unwrap_or_default();
        names.extend(first.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    names
}

#[test]
fn the_readme_table_lists_every_reason_once_and_nothing_else() {
    let names = readme_reasons();
    assert!(
        !names.is_empty(),
        "no `| reason |` table found in README.md"
    );
    for name in &names {
        assert!(
            Reason::parse(name).is_some(),
            "README lists {name}, which the operator never sets"
        );
    }
    for r in Reason::ALL {
        let n = names.iter().filter(|n| *n == r.as_str()).count();
        assert_eq!(n, 1, "README lists {r} {n} times");
    }
}

/// The keys of the Lua table `local transient = { A = true, ... }` in the health check.
fn lua_transient() -> BTreeSet<String> {
    let lua = read("charts/vault-connection-operator/docs/argocd-health.lua");
    let start = lua
        .find("local transient = {")
        .expect("the health check declares `local transient = { ... }`");
    let body = &lua[start + "local transient = {".len()..];
    let body = &body[..body.find('}').expect("the table closes")];
    body.split(',')
        .filter_map(|entry| entry.split('=').next())
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

#[test]
fn the_argo_cd_health_check_treats_exactly_the_transient_reasons_as_progressing() {
    let expected: BTreeSet<String> = Reason::ALL
        .into_iter()
        .filter(|r| r.is_transient())
        .map(|r| r.as_str().to_owned())
        .collect();
    assert_eq!(lua_transient(), expected);
}
