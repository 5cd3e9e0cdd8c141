//! Step 4, verify (only with verification on): between desiring the document and writing it,
//! ask the provider whether it accepts the credentials — at most once per version of them (see
//! [`crate::verify::ledger`]). A refusal stops the pipeline before anything is written; an
//! unavailable provider does not.

use super::context::Context;
use super::desired::Desired;
use crate::api::VaultConnection;
use crate::reason::Reason;
use crate::status::Failure;
use crate::verify::step::Checked;

/// The verification answer for this reconcile (`None` with verification off), and the failure
/// that stops the write when the provider refused the credentials.
pub async fn check(
    ctx: &Context,
    vc: &VaultConnection,
    want: &Desired,
) -> (Option<Checked>, Option<Failure>) {
    let Some(verification) = &ctx.verification else {
        return (None, None);
    };
    let checked = verification
        .check(vc, &want.provider, want.secret_version.as_deref())
        .await;
    let stop = checked
        .blocks_write()
        .then(|| Failure::new(Reason::CredentialsRejected, checked.verdict.message()));
    (Some(checked), stop)
}
