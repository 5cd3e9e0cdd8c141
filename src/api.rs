//! The `VaultConnection` API (`vaultconnections.io/v1alpha1`): the types users write and read.
//!
//! Doc comments on these types become `kubectl explain` text, so they are written for users.
//! Limits are enforced twice: here in the schema (so admission rejects bad specs) and again in
//! [`crate::validation`] (defence in depth, and for credentials, which admission never sees).

// Each `printcolumn(...)` repeats `type_ = "string"`; clippy reads those as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::providers::doppler::DopplerSpec;
pub use crate::providers::infisical::InfisicalSpec;
pub use crate::providers::parts::VaultType;

/// Finalizer that guards removal of the SSM parameter.
pub const FINALIZER: &str = "vaultconnections.io/cleanup";
/// Label a Secret must carry (with value `"true"`) before the operator reads it.
pub const CREDENTIALS_LABEL: &str = "vaultconnections.io/credentials";
/// Namespace label that selects the namespace's tier.
pub const TIER_LABEL: &str = "vaultconnections.io/tier";
/// Connection annotation by which someone allowed to edit it asks it to take over a parameter of
/// its name that another namespace of the same name left behind (or that a release before
/// namespace uids wrote). Only the value `"true"` asks.
pub const ADOPT_ANNOTATION: &str = "vaultconnections.io/adopt-parameter";
/// Connection annotation by which someone allowed to edit it asks the operator to leave its SSM
/// parameter in place when it is deleted, whatever its deletion policy (a way out when the
/// parameter cannot or must not be deleted). Only the value `"true"` asks.
pub const SKIP_CLEANUP_ANNOTATION: &str = "vaultconnections.io/skip-cleanup";
/// Connection annotation whose every new value asks for the credentials to be verified with the
/// provider again (a `Rejected` answer is otherwise final for those credentials).
pub const REVERIFY_ANNOTATION: &str = "vaultconnections.io/reverify";
/// The longest value of the operator's annotations that it keeps (longer ones are ignored).
pub const MAX_ANNOTATION_VALUE: usize = 63;
/// The annotations the operator reads (and its cache keeps).
pub const OPERATOR_ANNOTATIONS: [&str; 3] = [
    ADOPT_ANNOTATION,
    SKIP_CLEANUP_ANNOTATION,
    REVERIFY_ANNOTATION,
];
/// The connection's request to verify again: the value of its reverify annotation.
pub fn reverify_request(vc: &VaultConnection) -> Option<String> {
    use kube::ResourceExt;
    vc.annotations().get(REVERIFY_ANNOTATION).cloned()
}

/// The CRD's name.
pub const CRD_NAME: &str = "vaultconnections.vaultconnections.io";

/// The desired connection: which provider, where its credentials are, and how to store them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vaultconnections.io",
    version = "v1alpha1",
    kind = "VaultConnection",
    plural = "vaultconnections",
    namespaced,
    status = "VaultConnectionStatus",
    shortname = "vc",
    shortname = "vaultconn",
    category = "all",
    doc = "Connects a team to an external vault provider (1Password, Doppler or Infisical). The operator validates the spec and the credentials in the referenced Secret, stores them in AWS SSM Parameter Store as an encrypted SecureString, keeps that parameter in step with the Secret, and removes it on delete.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.vaultType"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Parameter",
        type_ = "string",
        json_path = ".status.parameter.name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.vaultType != 'doppler' || has(self.doppler)")
        .message("spec.doppler is required when spec.vaultType is doppler")
        .field_path(".doppler")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.doppler) || self.vaultType == 'doppler'")
        .message("spec.doppler must be absent unless spec.vaultType is doppler")
        .field_path(".doppler")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.vaultType != 'infisical' || has(self.infisical)")
        .message("spec.infisical is required when spec.vaultType is infisical")
        .field_path(".infisical")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.infisical) || self.vaultType == 'infisical'")
        .message("spec.infisical must be absent unless spec.vaultType is infisical")
        .field_path(".infisical")
        .reason(Reason::FieldValueForbidden),
)]
#[serde(rename_all = "camelCase")]
pub struct VaultConnectionSpec {
    /// The vault provider: `onepassword` (service-account access token), `doppler` (service
    /// token, project and config) or `infisical` (Universal Auth machine identity).
    pub vault_type: VaultType,

    /// Human-readable name of the connection, 1 to 255 characters. Defaults to metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub display_name: Option<String>,

    /// Free-text description of the connection, at most 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub description: Option<String>,

    /// The Secret in the same namespace that holds the credentials. The Secret must carry the
    /// label `vaultconnections.io/credentials: "true"`; the operator never reads other Secrets.
    pub credentials_secret_ref: CredentialsSecretRef,

    /// Doppler settings. Required when vaultType is doppler, and must be absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doppler: Option<Box<DopplerSpec>>,

    /// Infisical settings. Required when vaultType is infisical, and must be absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infisical: Option<Box<InfisicalSpec>>,

    /// Options for the SSM parameter that holds the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm: Option<SsmSpec>,

    /// What happens to the SSM parameter when this resource is deleted: `Delete` (default)
    /// removes it, `Retain` leaves it in place.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Reference to the credentials Secret, in the connection's own namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret, in the same namespace as this VaultConnection.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Which keys of the Secret hold which credential. Each defaults to the provider API's own
    /// name: access_token, client_id, client_secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Box<CredentialKeys>>,
}

/// Names of the Secret keys that hold each credential.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialKeys {
    /// Key holding the access token (onepassword, doppler). Default: access_token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub access_token: Option<String>,

    /// Key holding the Universal Auth client id (infisical). Default: client_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub client_id: Option<String>,

    /// Key holding the Universal Auth client secret (infisical). Default: client_secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub client_secret: Option<String>,
}

/// Default Secret key for the access token.
pub const DEFAULT_ACCESS_TOKEN_KEY: &str = "access_token";
/// Default Secret key for the client id.
pub const DEFAULT_CLIENT_ID_KEY: &str = "client_id";
/// Default Secret key for the client secret.
pub const DEFAULT_CLIENT_SECRET_KEY: &str = "client_secret";

impl CredentialsSecretRef {
    /// The Secret key holding the access token.
    pub fn access_token_key(&self) -> &str {
        self.keys
            .as_ref()
            .and_then(|k| k.access_token.as_deref())
            .unwrap_or(DEFAULT_ACCESS_TOKEN_KEY)
    }

    /// The Secret key holding the client id.
    pub fn client_id_key(&self) -> &str {
        self.keys
            .as_ref()
            .and_then(|k| k.client_id.as_deref())
            .unwrap_or(DEFAULT_CLIENT_ID_KEY)
    }

    /// The Secret key holding the client secret.
    pub fn client_secret_key(&self) -> &str {
        self.keys
            .as_ref()
            .and_then(|k| k.client_secret.as_deref())
            .unwrap_or(DEFAULT_CLIENT_SECRET_KEY)
    }
}

/// Options for the SSM parameter.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SsmSpec {
    /// KMS key (id, ARN, alias name or alias ARN) that encrypts the SecureString. Default: the
    /// operator's configured key, else the AWS managed key `alias/aws/ssm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_id: Option<String>,
}

/// What happens to the SSM parameter when the VaultConnection is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete the SSM parameter.
    #[default]
    Delete,
    /// Leave the SSM parameter in place.
    Retain,
}

/// Observed state of a VaultConnection. Never contains a credential value.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultConnectionStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (the parameter holds the current credentials), `Valid` (spec and credentials
    /// pass validation), `Synced` (the last write or check of the parameter succeeded),
    /// `Stalled` (True while a problem needs a person) and `Reconciling` (True while the
    /// operator retries a transient failure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The SSM parameter that holds the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<ParameterStatus>,

    /// When the parameter was last written or confirmed up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// The provider's last final answer about the credentials (with verification on): which
    /// version of the Secret and the spec it is about, and the result. Metadata only; it lets a
    /// restarted operator skip asking the provider again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Box<VerificationStatus>>,
}

/// A final answer of credential verification, and the credentials it is about.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// `metadata.resourceVersion` of the Secret that was verified.
    pub secret_resource_version: String,
    /// `metadata.generation` of this VaultConnection when it was verified.
    pub generation: i64,
    /// The value of the `vaultconnections.io/reverify` annotation the answer was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// `Accepted` or `Rejected`.
    pub result: VerificationResult,
    /// For `Rejected`: the check that failed (`token`, `config`, `login` or `read`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// For `Rejected`: the HTTP status the provider answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
}

/// The provider's final answer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerificationResult {
    /// The provider accepted the credentials for what the spec names.
    Accepted,
    /// The provider refused them.
    Rejected,
}

/// The SSM parameter as last written or verified by the operator. A record for people and a
/// cache for the operator at rest; the operator never takes it as proof of ownership.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParameterStatus {
    /// Full parameter name: {prefix}/{cluster}/{namespace}/{name}.
    pub name: String,
    /// Parameter version in SSM.
    pub version: i64,
    /// When SSM last modified the parameter (its LastModifiedDate), as SSM reported it right
    /// after the operator's own write. A version number repeats after a delete; with this time
    /// the drift check tells the operator's write from any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Parameter tier: Standard or Advanced.
    pub tier: String,
    /// KMS key the value was encrypted with, as requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// `metadata.resourceVersion` of the Secret the value was rendered from (metadata only:
    /// never a value or a hash of one). With `documentFormat` and `observedGeneration` it tells a
    /// restarted operator that nothing changed without reading the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_resource_version: Option<String>,
    /// Layout version of the document the value holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_format: Option<i32>,
    /// Fingerprint of the validation rules and operator settings the credentials were checked
    /// against (configuration only, never a value). Under another policy the operator checks
    /// the stored credentials again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// The CustomResourceDefinition as YAML, exactly as committed in `crds/vaultconnections.yaml`.
pub fn crd_yaml() -> String {
    let header = "# Generated by `vault-connection-operator crd`; do not edit. Regenerate with hack/gen-crds.sh.\n";
    // Serialising a CRD (plain data) to YAML cannot fail.
    let body = serde_yaml::to_string(&crd()).unwrap_or_default();
    format!("{header}{body}")
}

/// The CustomResourceDefinition, annotated so that GitOps tools never prune or delete it
/// (deleting it deletes every connection): Argo CD neither prunes it nor deletes it with its
/// Application, Flux's kustomize-controller does not prune it. (Helm's keep policy is the
/// chart's, under `crds.keep`.)
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = VaultConnection::crd();
    crd.metadata.annotations = Some(
        [
            (
                "argocd.argoproj.io/sync-options",
                "Prune=false,Delete=false",
            ),
            ("kustomize.toolkit.fluxcd.io/prune", "disabled"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    crd
}
