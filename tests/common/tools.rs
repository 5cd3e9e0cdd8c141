//! The tools the test environment installs (helm, promtool, `vco-ecosystem`), found without a
//! running environment: where `hack/testenv.sh path` says the cache puts them (the build of the
//! pinned version, and of the current hack/ecosystem source), then in `VCO_TESTENV_BIN` (set by
//! the environment file). Never from PATH: another helm would word its errors differently.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::env::skip;
use super::repo;

/// The directories the installed tools live in.
fn dirs() -> &'static str {
    static DIRS: OnceLock<String> = OnceLock::new();
    DIRS.get_or_init(|| {
        let script = Command::new(repo().join("hack/testenv.sh"))
            .arg("path")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        format!(
            "{script}:{}",
            std::env::var("VCO_TESTENV_BIN").unwrap_or_default()
        )
    })
}

/// The installed tool NAME, or `None` after one line saying how to install it (a failure with
/// `VCO_REQUIRE_TESTENV=1`).
pub fn tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(dirs())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .or_else(|| skip(&format!("{name} (hack/testenv.sh install)")))
}
