//! One test's world against the live environment: a fresh namespace and SSM prefix of its own,
//! the CRD installed, admin clients for the API server and the SSM emulator, and the helpers a
//! specification needs (apply fixtures, start the operator, wait for a reason, read the
//! parameter by the operator's own name, collect events).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use vault_connection_operator::api::{TIER_LABEL, VaultConnection};

use super::env::TestEnv;
use super::fixtures::Object;
use super::operator::{Operator, Options};
use super::{eventually, repo, run, ssm, unique};

/// How long a test waits for a connection to reach a state.
const WAIT: u64 = 30;

/// The field manager of what tests apply.
const MANAGER: &str = "vco-tests";

/// A namespace, an SSM prefix and clients for one test.
pub struct World {
    pub env: TestEnv,
    pub client: Client,
    pub ssm: aws_sdk_ssm::Client,
    /// The test's namespace.
    pub ns: String,
    /// The SSM prefix its operators write under.
    pub prefix: String,
}

impl World {
    /// A world in the shared environment, or `None` (after one line) when it is not running.
    pub async fn new(name: &str) -> Option<World> {
        let env = TestEnv::live()?;
        Some(World::on(&env, name).await)
    }

    /// A world in ENV (e.g. a private environment), its namespace named after NAME.
    pub async fn on(env: &TestEnv, name: &str) -> World {
        let client = env.kube().await;
        install_crd(&client).await;
        World {
            env: env.clone(),
            ssm: env.ssm().await,
            ns: namespace(&client, name).await,
            prefix: format!("/{}", unique("t")),
            client,
        }
    }

    /// Another namespace in the same environment.
    pub async fn namespace(&self, name: &str) -> String {
        namespace(&self.client, name).await
    }

    // ---- the operator --------------------------------------------------------------------

    /// An operator for this namespace and prefix with the default settings.
    pub async fn operator(&self) -> Operator {
        self.operator_with(Options::new()).await
    }

    /// An operator for this namespace and prefix with OPTS.
    pub async fn operator_with(&self, opts: Options) -> Operator {
        Operator::start(&self.env, &self.ns, &self.prefix, &opts).await
    }

    // ---- objects ---------------------------------------------------------------------------

    /// The namespace's connections.
    pub fn vcs(&self) -> Api<VaultConnection> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The namespace's Secrets.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates or updates OBJECT in the namespace (server-side apply, like `kubectl apply`).
    pub async fn apply(&self, object: impl Into<Object>) {
        let params = PatchParams::apply(MANAGER).force();
        match object.into() {
            Object::Secret(s) => {
                let name = s.metadata.name.clone().expect("a name");
                self.secrets()
                    .patch(&name, &params, &Patch::Apply(&*s))
                    .await
                    .unwrap_or_else(|e| panic!("apply Secret {name}: {e}"));
            }
            Object::Connection(c) => {
                let name = c.metadata.name.clone().expect("a name");
                self.vcs()
                    .patch(&name, &params, &Patch::Apply(&*c))
                    .await
                    .unwrap_or_else(|e| panic!("apply VaultConnection {name}: {e}"));
            }
        }
    }

    /// A 1Password connection NAME and its labelled Secret NAME holding TOKEN.
    pub async fn one_password(&self, name: &str, token: &str) {
        use super::fixtures::{Connection, Credentials};
        self.apply(Credentials::secret(name).token(token)).await;
        self.apply(Connection::onepassword(name)).await;
    }

    /// `kubectl apply` of a file of the repository (e.g. an example) into the namespace.
    pub fn apply_file(&self, path: &str) {
        let file = repo().join(path);
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        self.env.apply(&self.ns, &text);
    }

    /// `kubectl apply` of YAML text into the namespace.
    pub fn apply_yaml(&self, yaml: &str) {
        self.env.apply(&self.ns, yaml);
    }

    /// Merge-patches connection NAME with PATCH.
    pub async fn patch(&self, name: &str, patch: Value) {
        self.vcs()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patch {name}: {e}"));
    }

    /// Sets KEY of Secret NAME to VALUE (a rotation).
    pub async fn rotate(&self, secret: &str, key: &str, value: &str) {
        let patch = json!({ "stringData": { key: value } });
        self.secrets()
            .patch(secret, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("rotate {secret}: {e}"));
    }

    /// Merge-patches Secret NAME with PATCH.
    pub async fn patch_secret(&self, name: &str, patch: Value) {
        self.secrets()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patch Secret {name}: {e}"));
    }

    /// Labels the namespace with tier TIER.
    pub async fn set_tier(&self, tier: &str) {
        let patch = json!({"metadata": {"labels": {TIER_LABEL: tier}}});
        Api::<Namespace>::all(self.client.clone())
            .patch(&self.ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("label the namespace");
    }

    /// Deletes connection NAME without waiting.
    pub async fn delete(&self, name: &str) {
        self.vcs()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }

    /// Waits (up to 10 s) until connection NAME is gone.
    pub async fn wait_gone(&self, name: &str) {
        let api = self.vcs();
        eventually(10, &format!("{name} to be deleted"), || async {
            api.get_opt(name)
                .await
                .expect("get connection")
                .is_none()
                .then_some(())
        })
        .await;
    }

    /// Deletes connection NAME and waits until it is gone.
    pub async fn delete_and_wait(&self, name: &str) {
        self.delete(name).await;
        self.wait_gone(name).await;
    }

    // ---- what the operator reports -----------------------------------------------------------

    /// Waits until connection NAME's Ready condition has REASON; returns the object.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> VaultConnection {
        self.wait_condition(name, "Ready", None, reason).await
    }

    /// Waits until condition TYPE of NAME has REASON (and STATUS, when given); returns the object.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: Option<&str>,
        reason: &str,
    ) -> VaultConnection {
        let api = self.vcs();
        let what = format!("{name}: {type_}={} ({reason})", status.unwrap_or("any"));
        eventually(WAIT, &what, || async {
            let vc = api.get(name).await.ok()?;
            let c = condition(&vc, type_)?;
            (c.reason == reason && status.is_none_or(|s| c.status == s)).then_some(vc)
        })
        .await
    }

    /// Events about object NAME: (reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        self.all_events()
            .await
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Every event in the namespace.
    pub async fn all_events(&self) -> Vec<Event> {
        Api::<Event>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
    }

    /// Connection NAME exactly as the API server serves it (`kubectl get -o json`).
    pub fn live(&self, name: &str) -> Value {
        let (ok, out, err) = run(self.env.command("kubectl").args([
            "get",
            "-n",
            &self.ns,
            "vaultconnection",
            name,
            "-o",
            "json",
        ]));
        assert!(ok, "kubectl get {name}: {err}");
        serde_json::from_str(&out).expect("kubectl prints JSON")
    }

    // ---- SSM -----------------------------------------------------------------------------------

    /// The parameter of connection NAME, as the test operator names it.
    pub fn param(&self, name: &str) -> String {
        ssm::parameter(&self.prefix, &self.ns, name)
    }

    /// The parameter of connection NAME: its value and version, or None when absent.
    pub async fn read(&self, name: &str) -> Option<(String, i64)> {
        ssm::read(&self.ssm, &self.param(name)).await
    }

    /// The tags of connection NAME's parameter.
    pub async fn tags(&self, name: &str) -> BTreeMap<String, String> {
        ssm::tags(&self.ssm, &self.param(name)).await
    }

    /// Fails the test if connection NAME's parameter exists half a second from now.
    pub async fn nothing_written(&self, name: &str) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            self.read(name).await,
            None,
            "{name}: nothing may be written"
        );
    }

    /// How many parameters the namespace holds under the prefix.
    pub async fn stored(&self) -> usize {
        self.ssm
            .get_parameters_by_path()
            .path(ssm::namespace_path(&self.prefix, &self.ns))
            .send()
            .await
            .expect("list the namespace's parameters")
            .parameters
            .unwrap_or_default()
            .len()
    }
}

/// Condition TYPE of a connection.
pub fn condition<'a>(vc: &'a VaultConnection, type_: &str) -> Option<&'a Condition> {
    vc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// (status, reason, message) of condition TYPE, or a test failure if it is absent.
pub fn cond(vc: &VaultConnection, type_: &str) -> (String, String, String) {
    let c = condition(vc, type_).unwrap_or_else(|| panic!("no {type_} condition: {vc:?}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The parameter's JSON document.
pub fn document(value: &str) -> Value {
    serde_json::from_str(value).expect("parameter holds JSON")
}

/// Creates a fresh namespace named after PREFIX and returns its name.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Installs (server-side applies) the CRD from the Rust types and waits until it is Established.
/// Safe to call from many tests at once.
pub async fn install_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::runtime::wait::{await_condition, conditions};

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = vault_connection_operator::api::crd();
    let name = crd.metadata.name.clone().expect("crd has a name");
    crds.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established within 30s")
    .expect("watch CRD");
}
