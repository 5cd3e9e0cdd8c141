//! Fuzzes the YAML path of `vault-connection-operator validate` with arbitrary UTF-8.
//!
//! For every input: no panic; exit code 0, 1 or 2; every finding prints as one plain line. `$$`
//! in the input plants a credential (tests/planting): no input error may ever show it, and no
//! problem may show it when it stands only where a Secret keeps its credentials.
#![no_main]

#[path = "../../tests/planting/mod.rs"]
mod planting;

use libfuzzer_sys::fuzz_target;
use vault_connection_operator::manifests::validate_text;
use vault_connection_operator::validation::is_invisible;

use planting::CANARY;

fuzz_target!(|input: &str| {
    let text = planting::plant(input);
    let report = validate_text("fuzz.yaml", &text);
    assert!(report.exit_code() <= 2);

    let planted = text.contains(CANARY);
    // Computed only when needed: it parses the text a second time.
    let only_secrets = planted && planting::only_in_secret_values(&text);
    let errors = report.input_errors.iter().map(|e| (e.to_string(), true));
    let problems = report
        .problems
        .iter()
        .map(|p| (p.to_string(), only_secrets));
    for (line, must_hide) in errors.chain(problems) {
        assert!(
            !line.chars().any(|c| c.is_control() || is_invisible(c)),
            "a finding is not one plain line: {line:?}"
        );
        assert!(
            !(must_hide && line.contains(CANARY)),
            "a planted credential is printed: {line:?}"
        );
    }
});
