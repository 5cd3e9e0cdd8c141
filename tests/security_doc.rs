//! `docs/security.md` points each claim at the test that proves it. These tests keep it honest as
//! the code moves: every `file::test` reference names a test that exists, and the IAM policy it
//! recommends is the one in the chart's README.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> String {
    let path = repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path:?}: {e}"))
}

/// The `file::test` references in backticks: (file, test name).
fn references(doc: &str) -> Vec<(String, String)> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (file, name) = code.split_once("::")?;
            let is_file =
                (file.starts_with("tests/") || file.starts_with("src/")) && file.ends_with(".rs");
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            (is_file && is_name).then(|| (file.to_owned(), name.to_owned()))
        })
        .collect()
}

#[test]
fn every_test_the_security_doc_cites_exists() {
    let doc = read("docs/security.md");
    let refs = references(&doc);
    assert!(
        refs.len() >= 30,
        "expected the doc to cite its proofs; found {refs:?}"
    );
    let missing: Vec<String> = refs
        .iter()
        .filter(|(file, name)| !read(file).contains(&format!("fn {name}(")))
        .map(|(file, name)| format!("{file}::{name}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/security.md cites tests that do not exist: {missing:#?}"
    );
}

/// The first fenced JSON block after `heading`.
fn json_block<'a>(text: &'a str, heading: &str) -> &'a str {
    let from = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let rest = &text[from..];
    let start = rest.find("```json\n").expect("a ```json block") + "```json\n".len();
    let len = rest[start..].find("```").expect("the block ends");
    &rest[start..start + len]
}

#[test]
fn the_recommended_iam_policy_is_the_charts() {
    let doc = read("docs/security.md");
    let chart = read("charts/vault-connection-operator/README.md");
    let recommended = json_block(&doc, "## The operator's AWS identity");
    assert_eq!(
        recommended,
        json_block(&chart, "## AWS access"),
        "docs/security.md and the chart README recommend different IAM policies"
    );
    let policy: serde_json::Value = serde_json::from_str(recommended).expect("the policy is JSON");
    let actions: Vec<&str> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::String(a) => vec![a.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|a| a.as_str()).collect(),
            _ => vec![],
        })
        .collect();
    // Exactly the calls src/ssm.rs makes, and KMS through SSM: nothing broader.
    for action in &actions {
        assert!(
            !action.contains('*'),
            "no wildcard actions in the policy: {action}"
        );
    }
    let ssm = read("src/ssm.rs");
    for (action, call) in [
        ("ssm:GetParameter", ".get_parameter()"),
        ("ssm:GetParameters", ".get_parameters()"),
        ("ssm:PutParameter", ".put_parameter()"),
        ("ssm:DeleteParameter", ".delete_parameter()"),
        ("ssm:AddTagsToResource", ".add_tags_to_resource()"),
        ("ssm:ListTagsForResource", ".list_tags_for_resource()"),
        ("ssm:DescribeParameters", ".describe_parameters()"),
        ("ssm:RemoveTagsFromResource", ".remove_tags_from_resource()"),
    ] {
        assert_eq!(
            actions.contains(&action),
            ssm.contains(call),
            "{action} should be granted exactly when src/ssm.rs calls {call}"
        );
    }
}
