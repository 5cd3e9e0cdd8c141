//! Child processes as tests run them: to completion, with their output kept for the failure
//! message.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs a command to completion and returns (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for failure messages.
    pub command: String,
}

impl Output {
    /// Runs CMD to completion, feeding it INPUT when given.
    pub fn of(cmd: &mut Command, input: Option<&str>) -> Output {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let command = format!("{program} {}", args.join(" "));
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
        if let Some(input) = input {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            pipe.write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write to `{command}`: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("`{command}` did not finish: {e}"));
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command,
        }
    }

    /// The standard output, or a test failure that shows the command and its error output.
    pub fn expect_success(self) -> String {
        assert!(
            self.success,
            "`{}` failed:\n{}\n{}",
            self.command, self.stderr, self.stdout
        );
        self.stdout
    }

    /// The error output of a command that must fail, or a test failure if it succeeded.
    pub fn expect_failure(self) -> String {
        assert!(
            !self.success,
            "`{}` succeeded but should have failed:\n{}",
            self.command, self.stdout
        );
        format!("{}{}", self.stderr, self.stdout)
    }

    /// Standard error and standard output together.
    pub fn text(&self) -> String {
        format!("{}{}", self.stderr, self.stdout)
    }
}
