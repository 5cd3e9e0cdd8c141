//! The release as users install it: published to an OCI registry and pulled from there. The
//! release `hack/test.sh` builds (`hack/release.sh --allow-dirty target/release-ci`) is copied
//! into a registry on loopback (`oras cp -r`: the image index, both platform images and their
//! signatures) and its chart pushed there (`helm push`); the node's containerd pulls the image
//! from the registry (nothing imported with `ctr`), the chart is installed from `oci://…` pinned
//! by its digest with only `image.repository` changed, and the digest the kubelet runs must be
//! the release's index digest, which `cosign verify` accepts against the registry.
//!
//! Needs the release (a failure under `VCO_REQUIRE_TESTENV=1`: CI always builds it), the release
//! tools (`hack/testenv.sh install`) and, past the registry checks, the node (`hack/testenv.sh
//! up --node`). It does not use the image `hack/image.sh --load` puts into the node.

mod common;

use std::time::Instant;

use serde_json::json;

use common::chart::{Release, ValuesFile};
use common::node::{Node, delete_namespace, name, operator_values, pods, serving};
use common::release::{Artifacts, NodeRegistryHost, Registry, Tools};
use common::ssm::version;
use common::{Connection, Credentials, World, eventually};

#[tokio::test]
async fn the_node_pulls_the_signed_release_from_a_registry_and_runs_its_digest() {
    let Some(release) = Artifacts::ci() else {
        return;
    };
    let Some(tools) = Tools::find() else {
        return;
    };
    let started = Instant::now();
    let registry = Registry::start(&tools.registry);
    let pushed = registry.push_image(&tools, &release);
    assert_eq!(
        pushed, release.digest,
        "the registry holds the index BUILDINFO names"
    );
    let chart_digest = registry.push_chart(&tools, &release);
    let image = format!("{}@{}", registry.image(), release.digest);
    let verified = registry.cosign_verify(&tools, &release, &image);
    let verified = verified.expect_success();
    assert!(
        verified.contains(&format!(
            "\"docker-manifest-digest\":\"{}\"",
            release.digest
        )),
        "the signature is for the release digest: {verified}"
    );
    // The chart, fetched back by its digest, pins the image by the release digest.
    let shown = common::Output::of(
        std::process::Command::new(&tools.helm)
            .args(["show", "values", &registry.chart_ref(&chart_digest)])
            .arg("--plain-http"),
        None,
    )
    .expect_success();
    assert!(
        shown.contains(&format!("digest: \"{}\"", release.digest)),
        "the chart's image.digest is the release digest: {shown}"
    );
    println!(
        "figure: release published (image {}, chart {chart_digest}) and verified in {:.1?}",
        release.digest,
        started.elapsed()
    );

    // ---- the node pulls it ------------------------------------------------------------------
    let Some(w) = World::new("team-registry").await else {
        return;
    };
    let Some(node) = Node::without_image(&w.env) else {
        return;
    };
    let (env, client) = (&w.env, &w.client);
    let from_registry = |refs: &str| -> Vec<String> {
        refs.lines()
            .filter(|r| r.starts_with(&format!("{}/", registry.host)))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        from_registry(&node.ctr(&["images", "ls", "-q"])),
        Vec::<String>::new(),
        "nothing from {} in the node's containerd before the install",
        registry.host
    );
    let _hosts = NodeRegistryHost::add(&node.containerd, &registry.host);
    let ops = w.namespace("vco-registry").await;
    let mut values = operator_values(&env.ssm_endpoint, &w.ns, &w.prefix, 1);
    values["image"] = json!({"repository": registry.image()});
    let values = ValuesFile::new(&serde_yaml::to_string(&values).expect("values YAML"));
    let chart = registry.chart_ref(&chart_digest);
    let installing = Instant::now();
    let installed = Release::install_chart(
        env,
        &chart,
        &ops,
        &[
            "--plain-http",
            "-f",
            values.path(),
            "--wait",
            "--timeout",
            "180s",
        ],
    );
    let took = installing.elapsed();
    let pod = pods(client, &ops, &installed.name)
        .await
        .pop()
        .expect("a pod");
    assert!(serving(&pod), "the pod is Running and Ready");
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .expect("a container status");
    println!(
        "figure: helm install from {chart} to a Ready pod (image pulled from the registry): {took:.1?}"
    );
    println!(
        "figure: the pod's image {}, imageID {}",
        status.image, status.image_id
    );
    assert_eq!(
        status.image_id, image,
        "the kubelet runs the release's index digest, from the registry"
    );

    // Pulled, not found on the node: the kubelet's event, containerd's new image, and the
    // registry's access log of containerd's requests.
    let events = env
        .kubectl(&[
            "get",
            "events",
            "-n",
            &ops,
            "--field-selector",
            &format!("involvedObject.name={},reason=Pulled", name(&pod)),
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .expect_success();
    assert!(
        events.contains("Successfully pulled image"),
        "the kubelet pulled the image: {events}"
    );
    let refs = from_registry(&node.ctr(&["images", "ls", "-q"]));
    assert!(refs.contains(&image), "containerd holds {image}: {refs:?}");
    let log = registry.log();
    let manifest = format!(
        "GET /v2/{}/manifests/{}",
        common::release::NAME,
        release.digest
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&manifest) && l.contains("containerd")),
        "containerd fetched the index from the registry: {log}"
    );

    // The released image does the job: a connection becomes Ready and lands in SSM.
    w.apply(Credentials::secret("creds").token("ops_registry"))
        .await;
    w.apply(Connection::onepassword("conn").secret("creds"))
        .await;
    eventually(60, "the connection to be Ready", || async {
        common::node::all_ready(env, &w.ns).then_some(())
    })
    .await;
    assert_eq!(version(&w.ssm, &w.param("conn")).await, Some(1));

    delete_namespace(client, &w.ns).await;
    drop(installed);
    delete_namespace(client, &ops).await;
    // The next run pulls again: containerd forgets every name of what it pulled (the registry's
    // references, and the image id the CRI adds).
    for line in node.ctr(&["images", "ls"]).lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(2) == Some(&release.digest.as_str()) {
            node.ctr(&["images", "rm", cols[0]]);
        }
    }
}
