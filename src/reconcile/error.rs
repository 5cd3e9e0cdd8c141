//! Errors that make a reconcile fail and be retried with backoff. Failures a person can act on
//! are not errors: they are reported in status (see [`crate::status::Failure`]).

use crate::reason::Reason;
use crate::ssm::SsmError;
use crate::status::Failure;

/// A reconcile that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// SSM failed while deleting the parameter.
    #[error(transparent)]
    Ssm(#[from] SsmError),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A namespaced object without a namespace.
    #[error("object has no namespace")]
    NoNamespace,
    /// A parameter deletion waits for room in the deletion budget (the finalizer stays).
    #[error(
        "the deletion of SSM parameter {0} waits: more parameters were deleted lately than \
         --max-deletions per --deletion-window allows"
    )]
    DeletionHeld(String),
    /// The namespace is not in the cache yet, so its uid cannot be told.
    #[error("namespace {0} is not in the operator's cache yet")]
    NamespaceNotCached(String),
}

impl Error {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeError",
            Error::Ssm(e) => reason_of(e).as_str(),
            Error::Finalizer(_) => "FinalizerError",
            Error::NoNamespace => "NoNamespace",
            Error::NamespaceNotCached(_) => "NamespaceNotCached",
            Error::DeletionHeld(_) => "DeletionHeld",
        }
    }
}

/// The condition reason of an SSM failure.
pub fn reason_of(e: &SsmError) -> Reason {
    match e {
        SsmError::Throttled { .. } => Reason::Throttled,
        SsmError::AccessDenied { .. } => Reason::AccessDenied,
        SsmError::Credentials { .. } => Reason::AwsCredentialsError,
        SsmError::Kms { .. } => Reason::KmsKeyError,
        SsmError::NotLeader { .. } | SsmError::Other { .. } => Reason::SyncFailed,
    }
}

impl From<SsmError> for Failure {
    fn from(e: SsmError) -> Failure {
        Failure::new(reason_of(&e), e.to_string())
    }
}
