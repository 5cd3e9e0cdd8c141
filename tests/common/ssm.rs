//! Reading and planting SSM parameters in the emulator, and naming them the operator's way.

use std::collections::BTreeMap;

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use vault_connection_operator::document::parameter_name;

use super::operator::CLUSTER;

/// The parameter of connection NAME in namespace NS under PREFIX, named by the operator's own
/// function with the test operator's cluster name.
pub fn parameter(prefix: &str, ns: &str, name: &str) -> String {
    parameter_name(prefix, CLUSTER, ns, name)
        .unwrap_or_else(|e| panic!("{prefix}, {ns}, {name} make no parameter name: {e}"))
}

/// The namespace level that holds NS's parameters under PREFIX.
pub fn namespace_path(prefix: &str, ns: &str) -> String {
    let param = parameter(prefix, ns, "x");
    param[..param.len() - "/x".len()].to_owned()
}

/// The parameter's decrypted value and version, or None when it does not exist (any other
/// error fails the test).
pub async fn read(ssm: &aws_sdk_ssm::Client, name: &str) -> Option<(String, i64)> {
    match ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(out) => {
            let p = out.parameter?;
            Some((p.value?, p.version))
        }
        Err(e) => {
            assert_eq!(e.code(), Some("ParameterNotFound"), "get {name}: {e:?}");
            None
        }
    }
}

/// The parameter's version, or None when it does not exist.
pub async fn version(ssm: &aws_sdk_ssm::Client, name: &str) -> Option<i64> {
    read(ssm, name).await.map(|(_, v)| v)
}

/// The parameter's tags.
pub async fn tags(ssm: &aws_sdk_ssm::Client, name: &str) -> BTreeMap<String, String> {
    ssm.list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .expect("list tags")
        .tag_list
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect()
}

/// Creates a SecureString parameter NAME holding VALUE with TAGS, as someone else would.
pub async fn create(ssm: &aws_sdk_ssm::Client, name: &str, value: &str, tags: &[(&str, &str)]) {
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().expect("a tag"))
        .collect();
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
}

/// Overwrites parameter NAME with VALUE, out of band.
pub async fn overwrite(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("overwrite {name}: {e:?}"));
}

/// Deletes the parameter NAME.
pub async fn delete(ssm: &aws_sdk_ssm::Client, name: &str) {
    ssm.delete_parameter()
        .name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e:?}"));
}

/// (access token, version) of every parameter under PATH, by connection name (the last level);
/// empty while the emulator does not answer.
pub async fn tokens_under(
    ssm: &aws_sdk_ssm::Client,
    path: &str,
) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let Ok(page) = ssm
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .with_decryption(true)
            .set_next_token(token.take())
            .send()
            .await
        else {
            return out; // emulator down: nothing readable
        };
        for p in page.parameters.unwrap_or_default() {
            let name = p.name.unwrap_or_default();
            let short = name.rsplit('/').next().unwrap_or_default().to_owned();
            let access_token =
                serde_json::from_str::<serde_json::Value>(p.value.as_deref().unwrap_or("{}"))
                    .ok()
                    .and_then(|v| v["access_token"].as_str().map(str::to_owned))
                    .unwrap_or_default();
            out.insert(short, (access_token, p.version));
        }
        token = page.next_token;
        if token.is_none() {
            return out;
        }
    }
}
