//! `vault-connection-operator validate`: exit codes and one line per problem, never a value.

mod common;

use std::process::{Command, Stdio};

use common::{Scratch, repo};

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
    let dir = Scratch::new("vco-validate");
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

// ---- hostile trees: every run below must end within a few seconds ----------------------------

/// Runs `validate` with `args` and kills it if it has not finished within `secs`: a hang or a
/// read without end fails the test instead of stalling CI.
fn validate_within(secs: u64, args: &[&str], stdin: Stdio) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vault-connection-operator"))
        .arg("validate")
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the binary");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().expect("poll the child").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("validate {args:?} did not finish within {secs}s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory holding one valid connection (`conn.yaml`), removed when dropped.
fn tree(prefix: &str) -> Scratch {
    let dir = Scratch::new(prefix);
    std::fs::copy(
        repo().join("examples/onepassword.yaml"),
        dir.join("conn.yaml"),
    )
    .unwrap();
    dir
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn a_link_to_its_own_directory_is_not_followed_and_each_file_counts_once() {
    let dir = tree("vco-loop");
    std::os::unix::fs::symlink(".", dir.join("loop")).unwrap();
    let (code, out, err) = validate_within(10, &["-R", "-f", path(&dir)], Stdio::null());
    assert!(err.contains("checked 1 VaultConnection(s)"), "{err}");
    assert!(
        err.contains("loop: is a symbolic link, and links inside a directory are not followed"),
        "{err}"
    );
    assert_eq!(
        code,
        Some(2),
        "a link that hides files is an input error: {out}{err}"
    );
}

#[test]
fn two_links_to_each_other_end_at_once_with_an_input_error() {
    let dir = tree("vco-mutual");
    std::os::unix::fs::symlink("b.yaml", dir.join("a.yaml")).unwrap();
    std::os::unix::fs::symlink("a.yaml", dir.join("b.yaml")).unwrap();
    std::os::unix::fs::symlink("y", dir.join("x")).unwrap();
    std::os::unix::fs::symlink("x", dir.join("y")).unwrap();
    let (code, _, err) = validate_within(10, &["-R", "-f", path(&dir)], Stdio::null());
    assert_eq!(code, Some(2), "{err}");
    for link in ["a.yaml", "b.yaml"] {
        assert!(
            err.contains(&format!("{link}: is a symbolic link")),
            "{err}"
        );
    }
    assert!(err.contains("checked 1 VaultConnection(s)"), "{err}");
    // Named on the command line, a link is followed once: the loop is an error, not a hang.
    let (code, _, err) = validate_within(10, &["-f", path(&dir.join("a.yaml"))], Stdio::null());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("a.yaml: cannot read"), "{err}");
}

#[test]
fn a_link_to_dev_zero_is_never_read() {
    let dir = tree("vco-zero");
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.yaml")).unwrap();
    let (code, _, err) = validate_within(10, &["-f", path(&dir)], Stdio::null());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("zero.yaml: is a symbolic link"), "{err}");
    // Named directly, it is followed, seen to be a device and refused before it is opened.
    for target in [dir.join("zero.yaml"), "/dev/zero".into()] {
        let (code, _, err) = validate_within(10, &["-f", path(&target)], Stdio::null());
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("is a device; only regular files are read"),
            "{err}"
        );
    }
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = tree("vco-fifo");
    let fifo = dir.join("pipe.yaml");
    let (ok, _, err) = common::run(Command::new("mkfifo").arg(&fifo));
    assert!(ok, "mkfifo: {err}");
    for args in [vec!["-f", path(&fifo)], vec!["-f", path(&dir)]] {
        let (code, _, err) = validate_within(10, &args, Stdio::null());
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("pipe.yaml: is a FIFO; only regular files are read"),
            "{err}"
        );
    }
}

#[test]
fn a_file_over_the_size_limit_is_refused_naming_the_file_and_the_limit() {
    let dir = tree("vco-big");
    let big = dir.join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(2000))).unwrap();
    let (code, _, err) = validate_within(
        10,
        &["--max-file-size", "1024", "-f", path(&dir)],
        Stdio::null(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("big.yaml: is larger than the limit of 1024 bytes per file"),
        "{err}"
    );
    assert!(
        err.contains("checked 1 VaultConnection(s)"),
        "the small file is still read: {err}"
    );
}

#[test]
fn stdin_without_end_is_read_only_up_to_the_size_limit() {
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let (code, _, err) = validate_within(20, &["-f", "-"], Stdio::from(zero));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("<stdin>: is larger than the limit of 4194304 bytes per file"),
        "{err}"
    );
}

#[test]
fn a_unicode_line_separator_cannot_forge_an_output_line() {
    // U+2028 and U+2029 break lines in editors, browsers and some CI log viewers; NEL (U+0085)
    // in others. Each must come out as an escape, not as the character.
    let text = "apiVersion: vaultconnections.io/v1alpha1\nkind: VaultConnection\n\
                metadata: {name: bad}\nspec:\n  \
                vaultType: \"x\\Lforged.yaml:0: spec: fine\\Pforged.yaml:1: a\\Nforged.yaml:2: b\"\n  \
                credentialsSecretRef: {name: creds}\n";
    let (code, out, _) = validate_stdin(text);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    for (raw, escaped) in [
        ('\u{2028}', r"\u{2028}forged.yaml:0:"),
        ('\u{2029}', r"\u{2029}forged.yaml:1:"),
        ('\u{85}', r"\u{85}forged.yaml:2:"),
    ] {
        assert!(!out.contains(raw), "{out:?}");
        assert!(out.contains(escaped), "{out:?}");
    }
}

#[test]
fn doppler_personal_tokens_pass_validate_only_with_the_flag() {
    let file = "examples/invalid/doppler-personal-token.yaml";
    let (code, out, _) = validate(&["-f", file]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--allow-doppler-personal-tokens"), "{out}");
    assert!(!out.contains("FAKEexample"), "{out}");
    let (code, out, err) = validate(&["--allow-doppler-personal-tokens", "-f", file]);
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn kms_keys_are_checked_when_an_allow_list_is_given() {
    let text = "apiVersion: vaultconnections.io/v1alpha1\nkind: VaultConnection\n\
                metadata: {name: c}\nspec:\n  vaultType: onepassword\n  \
                credentialsSecretRef: {name: creds}\n  ssm: {kmsKeyId: alias/other-team}\n";
    let dir = Scratch::new("vco-kms");
    let file = dir.join("kms.yaml");
    std::fs::write(&file, text).unwrap();
    let (code, _, err) = validate(&["-f", path(&file)]);
    assert_eq!(
        code,
        Some(0),
        "no list: the key is the operator's to judge: {err}"
    );
    let (code, out, _) = validate(&[
        "--allowed-kms-keys",
        "alias/aws/ssm,alias/mine",
        "-f",
        path(&file),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("kms.yaml:0: spec.ssm.kmsKeyId: names a KMS key this operator may not use"),
        "{out}"
    );
    let (code, _, err) = validate(&["--allowed-kms-keys", "alias/other-team", "-f", path(&file)]);
    assert_eq!(code, Some(0), "{err}");
}
