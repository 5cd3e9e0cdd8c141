//! Typed fixtures: a connection or a credentials Secret with the defaults a test needs, so a
//! test says only what differs (`Connection::doppler("dp").config("dev")`,
//! `Credentials::secret("creds").token("ops_x")`); and the fixed inputs kept as files under
//! `tests/fixtures/`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use vault_connection_operator::api::{
    CREDENTIALS_LABEL, CredentialsSecretRef, DeletionPolicy, DopplerSpec, InfisicalSpec, SsmSpec,
    VaultConnection, VaultConnectionSpec, VaultType,
};

use super::repo;

/// A VaultConnection. By default its Secret has the connection's own name, its keys are the
/// provider's defaults, Doppler reads project `p` config `c`, Infisical project `p` environment
/// `prod` at `/`, and its parameter is deleted with it.
#[derive(Clone, Debug)]
pub struct Connection(pub VaultConnection);

impl Connection {
    fn new(name: &str, vault_type: VaultType) -> Connection {
        Connection(VaultConnection::new(
            name,
            VaultConnectionSpec {
                vault_type,
                display_name: None,
                description: None,
                credentials_secret_ref: CredentialsSecretRef {
                    name: name.to_owned(),
                    keys: None,
                },
                doppler: (vault_type == VaultType::Doppler).then(|| {
                    Box::new(DopplerSpec {
                        project: "p".into(),
                        config: "c".into(),
                    })
                }),
                infisical: (vault_type == VaultType::Infisical).then(|| {
                    Box::new(InfisicalSpec {
                        project_id: "p".into(),
                        environment: "prod".into(),
                        secret_path: "/".into(),
                    })
                }),
                ssm: None,
                deletion_policy: DeletionPolicy::Delete,
            },
        ))
    }

    /// A 1Password connection.
    pub fn onepassword(name: &str) -> Connection {
        Connection::new(name, VaultType::OnePassword)
    }

    /// A Doppler connection.
    pub fn doppler(name: &str) -> Connection {
        Connection::new(name, VaultType::Doppler)
    }

    /// An Infisical connection.
    pub fn infisical(name: &str) -> Connection {
        Connection::new(name, VaultType::Infisical)
    }

    /// The connection's name.
    pub fn name(&self) -> String {
        self.0.metadata.name.clone().unwrap_or_default()
    }

    /// Reads its credentials from Secret NAME.
    pub fn secret(mut self, name: &str) -> Connection {
        self.0.spec.credentials_secret_ref.name = name.to_owned();
        self
    }

    /// The Doppler project, or the Infisical project id.
    pub fn project(mut self, project: &str) -> Connection {
        if let Some(d) = &mut self.0.spec.doppler {
            d.project = project.to_owned();
        }
        if let Some(i) = &mut self.0.spec.infisical {
            i.project_id = project.to_owned();
        }
        self
    }

    /// The Doppler config.
    pub fn config(mut self, config: &str) -> Connection {
        self.0
            .spec
            .doppler
            .as_mut()
            .expect("a Doppler connection")
            .config = config.to_owned();
        self
    }

    /// The Infisical environment.
    pub fn environment(mut self, environment: &str) -> Connection {
        self.0
            .spec
            .infisical
            .as_mut()
            .expect("an Infisical connection")
            .environment = environment.to_owned();
        self
    }

    /// `spec.ssm.kmsKeyId`.
    pub fn kms_key(mut self, key: &str) -> Connection {
        self.0.spec.ssm = Some(SsmSpec {
            kms_key_id: Some(key.to_owned()),
        });
        self
    }

    /// `spec.description`.
    pub fn description(mut self, text: &str) -> Connection {
        self.0.spec.description = Some(text.to_owned());
        self
    }

    /// Annotation KEY with VALUE.
    pub fn annotation(mut self, key: &str, value: &str) -> Connection {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }

    /// `deletionPolicy: Retain`.
    pub fn retain(mut self) -> Connection {
        self.0.spec.deletion_policy = DeletionPolicy::Retain;
        self
    }
}

/// A credentials Secret: labelled `vaultconnections.io/credentials: "true"` unless said
/// otherwise, holding only the keys given.
#[derive(Clone, Debug)]
pub struct Credentials(pub Secret);

impl Credentials {
    /// A labelled Secret NAME without data.
    pub fn secret(name: &str) -> Credentials {
        Credentials(Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([(
                    CREDENTIALS_LABEL.to_owned(),
                    "true".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        })
    }

    /// KEY holds VALUE.
    pub fn key(mut self, key: &str, value: &str) -> Credentials {
        self.0
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
        self
    }

    /// `access_token` (1Password, Doppler) holds TOKEN.
    pub fn token(self, token: &str) -> Credentials {
        self.key("access_token", token)
    }

    /// `client_id` and `client_secret` (Infisical).
    pub fn client(self, id: &str, secret: &str) -> Credentials {
        self.key("client_id", id).key("client_secret", secret)
    }

    /// Without the opt-in label.
    pub fn unlabelled(mut self) -> Credentials {
        self.0.metadata.labels = None;
        self
    }
}

/// Something a test applies to its namespace.
#[derive(Clone, Debug)]
pub enum Object {
    Secret(Box<Secret>),
    Connection(Box<VaultConnection>),
}

impl From<Connection> for Object {
    fn from(c: Connection) -> Object {
        Object::Connection(Box::new(c.0))
    }
}

impl From<Credentials> for Object {
    fn from(c: Credentials) -> Object {
        Object::Secret(Box::new(c.0))
    }
}

impl Object {
    /// The YAML a user would write for it.
    pub fn to_yaml(&self) -> String {
        match self {
            Object::Secret(s) => serde_yaml::to_string(s),
            Object::Connection(c) => serde_yaml::to_string(c),
        }
        .expect("fixtures serialise")
    }
}

/// The objects as one multi-document YAML stream.
pub fn yaml(objects: &[Object]) -> String {
    objects
        .iter()
        .map(Object::to_yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The text of `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> String {
    let path = repo().join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}
