//! `vault-connection-operator validate`: exit codes and one line per problem, never a value.

mod common;

use std::process::{Command, Stdio};

use common::repo;

fn validate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"))
        .current_dir(repo())
        .arg("validate")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn examples_are_clean() {
    let (code, out, err) = validate(&["-f", "examples/"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("checked 3 VaultConnection(s)"), "{err}");
}

#[test]
fn invalid_examples_give_exactly_their_expected_lines() {
    let (code, out, _) = validate(&["-f", "examples/invalid/"]);
    assert_eq!(code, Some(1));
    let lines: Vec<&str> = out.lines().collect();
    let mut expected_total = 0;
    for entry in std::fs::read_dir(repo().join("examples/invalid"))
        .unwrap()
        .flatten()
    {
        let path = format!("examples/invalid/{}", entry.file_name().to_string_lossy());
        let text = std::fs::read_to_string(repo().join(&path)).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!expects.is_empty(), "{path} has no '# expect:' line");
        let mine: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{path}:")))
            .collect();
        assert_eq!(
            mine.len(),
            expects.len(),
            "{path}: got {mine:?}, expected {expects:?}"
        );
        for e in expects {
            let want = format!("{path}:{e}");
            assert!(
                mine.iter().any(|l| l.starts_with(&want)),
                "{path}: no line starts with {want:?} in {mine:?}"
            );
            expected_total += 1;
        }
    }
    assert_eq!(lines.len(), expected_total, "unexpected extra lines: {out}");
}

#[test]
fn malformed_yaml_exits_2_with_its_location() {
    let dir = std::env::temp_dir().join(common::unique("vco-validate"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: [Secret\nmetadata: {}\n").unwrap();
    let (code, _, err) = validate(&["-f", file.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("broken.yaml:3:"),
        "error names file and line: {err}"
    );
}

#[test]
fn stdin_is_read_with_dash() {
    let text = std::fs::read_to_string(repo().join("examples/invalid/missing-key.yaml")).unwrap();
    let (code, out, _) = validate_stdin(&text);
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with("<stdin>:1: Secret/creds[access_token]: key is missing"),
        "{out}"
    );
}

#[test]
fn no_output_contains_a_credential_value() {
    let (_, out, err) = validate(&["-f", "examples/invalid/", "-f", "examples/"]);
    for dir in ["examples", "examples/invalid"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            // Every stringData value in the inputs is a credential: none may be printed.
            for value in text.lines().filter_map(|l| {
                l.trim()
                    .strip_prefix("access_token: ")
                    .or_else(|| l.trim().strip_prefix("client_secret: "))
                    .or_else(|| l.trim().strip_prefix("client_id: "))
                    .or_else(|| l.trim().strip_prefix("token: "))
            }) {
                let value = value.trim_matches('\'');
                assert!(
                    !out.contains(value) && !err.contains(value),
                    "a value from {:?} was printed",
                    entry.path()
                );
            }
        }
    }
}

#[test]
fn unreadable_input_exits_2() {
    let (code, _, err) = validate(&["-f", "does/not/exist.yaml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does/not/exist.yaml: cannot read"), "{err}");
}

fn validate_stdin(text: &str) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"))
        .args(["validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_credential_under_a_wrong_yaml_tag_is_not_echoed_by_the_parse_error() {
    for tag in ["!!int", "!!bool", "!!float", "!!null"] {
        let text = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\n\
             stringData:\n  access_token: {tag} ops_CANARY7f3a9\n"
        );
        let (code, out, err) = validate_stdin(&text);
        assert_eq!(code, Some(2), "{err}");
        assert!(!format!("{out}{err}").contains("CANARY7f3a9"), "{err}");
        assert!(err.starts_with("<stdin>:5:17: invalid YAML: "), "{err}");
    }
    let text = "stringData:\n  ops_CANARY7f3a9: a\n  ops_CANARY7f3a9: b\n";
    let (code, _, err) = validate_stdin(text);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("CANARY7f3a9"), "{err}");
}

#[test]
fn a_manifest_cannot_forge_output_lines_or_send_terminal_escapes() {
    let text = "apiVersion: vaultconnections.io/v1alpha1\nkind: VaultConnection\n\
                metadata: {name: bad}\nspec:\n  \
                vaultType: \"x\\nforged.yaml:0: spec: fine\\e[31m\\u202e\"\n  \
                credentialsSecretRef: {name: creds}\n";
    let (code, out, _) = validate_stdin(text);
    assert_eq!(code, Some(1));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(r"x\nforged.yaml"), "{out}");
    assert!(!out.trim_end().chars().any(char::is_control), "{out:?}");
    assert!(!out.contains('\u{202e}'), "{out:?}");
}
