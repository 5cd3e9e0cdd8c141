//! The README's status table says, for every reason of `reason::Reason`, which of Ready, Stalled
//! and Reconciling hold and what kstatus and Argo CD make of it; the columns must follow from
//! whether the reason is transient. (tests/reasons.rs checks the first column lists every reason
//! once; tests/ecosystem_status.rs checks the verdicts on live objects.)

use std::collections::BTreeMap;

use vault_connection_operator::reason::Reason;

/// README rows with a backticked reason: reason -> [Ready, Stalled, Reconciling, kstatus, Argo CD].
fn readme_rows() -> BTreeMap<String, [String; 5]> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let header = "| reason | meaning | Ready | Stalled | Reconciling | kstatus | Argo CD |";
    let start = readme
        .find(header)
        .expect("the README has the status table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|line| {
            // | reason | meaning | Ready | Stalled | Reconciling | kstatus | Argo CD | what to do |
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let reason = cells[1].strip_prefix('`')?.strip_suffix('`')?;
            Some((
                reason.to_owned(),
                [3, 4, 5, 6, 7].map(|i| cells[i].to_owned()),
            ))
        })
        .collect()
}

/// What a reason implies: Synced is done, a transient reason is being retried, any other needs
/// a person.
fn implied(reason: Reason) -> [&'static str; 5] {
    if reason == Reason::Synced {
        ["True", "False", "False", "Current", "Healthy"]
    } else if reason.is_transient() {
        ["False", "False", "True", "InProgress", "Progressing"]
    } else {
        ["False", "True", "False", "Failed", "Degraded"]
    }
}

#[test]
fn every_reason_row_shows_the_conditions_and_verdicts_its_kind_implies() {
    let rows = readme_rows();
    let mut wrong = Vec::new();
    for reason in Reason::ALL {
        match rows.get(reason.as_str()) {
            None => wrong.push(format!("{reason}: no row of its own")),
            Some(row) if *row != implied(reason).map(str::to_owned) => wrong.push(format!(
                "{reason}: README says {row:?}, its kind implies {:?}",
                implied(reason)
            )),
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
