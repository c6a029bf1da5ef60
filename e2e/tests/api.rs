//! The Vigil API against a real Kubernetes API server: the committed CRDs install with
//! server-side apply, the examples a user copies are accepted and read back, `kubectl get`
//! shows the printer columns, and bad manifests are refused by the API server itself with a
//! message naming the field.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use vigil_e2e::*;

fn example(name: &str) -> Vec<kube::core::DynamicObject> {
    read_manifests(&repo_root().join("examples").join(name))
}

/// The API server's refusal of `obj`, or a panic if it was accepted.
async fn refusal(client: &Client, ns: &str, obj: &kube::core::DynamicObject) -> kube::core::Status {
    match apply(client, ns, obj).await {
        Err(kube::Error::Api(e)) => *e,
        Err(other) => panic!("{} refused for the wrong reason: {other}", obj.name_any()),
        Ok(_) => panic!(
            "API server accepted invalid {} {}",
            obj.types.as_ref().map_or("", |t| t.kind.as_str()),
            obj.name_any()
        ),
    }
}

#[tokio::test]
async fn examples_install_and_read_back_with_printer_columns() {
    let client = client().await;
    apply_crds(&client).await;
    let ns = create_namespace(&client, "vigil-e2e-api", &[]).await;

    let files = [
        "secrets.yaml",
        "recorderpool.yaml",
        "camera-onvif.yaml",
        "camera-playback-template.yaml",
        "camera-no-edge-storage.yaml",
        "backfill-manual.yaml",
    ];
    for file in files {
        for obj in example(file) {
            apply(&client, &ns, &obj)
                .await
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let back = get(&client, &ns, &obj)
                .await
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            if let Some(spec) = obj.data.get("spec") {
                assert!(
                    json_contains(&back.data["spec"], spec),
                    "{file}: read back {} differs from the file\n file: {spec}\n back: {}",
                    obj.name_any(),
                    back.data["spec"]
                );
            }
        }
    }

    // Schema defaults are applied by the API server: a user who leaves them out gets them.
    let parking = get(&client, &ns, &example("camera-no-edge-storage.yaml")[0])
        .await
        .expect("camera");
    assert_eq!(parking.data["spec"]["recording"]["mode"], "Continuous");
    assert_eq!(parking.data["spec"]["autoBackfill"], true);
    assert_eq!(parking.data["spec"]["source"]["transport"], "Tcp");

    // `kubectl get cameras` renders the server-side Table: check its columns and rows.
    let request = http_table_request(&format!("/apis/vigil.dev/v1alpha1/namespaces/{ns}/cameras"));
    let table: serde_json::Value = client.request(request).await.expect("camera table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Pool",
            "Mode",
            "Recorder",
            "State",
            "Kbps",
            "Coverage",
            "Last Segment",
            "Age"
        ]
    );
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "three example cameras");
    let first = &rows[0]["cells"];
    assert_eq!(first[0], "loading-dock");
    assert_eq!(first[1], "main");
    assert_eq!(first[2], "Scheduled");

    let request = http_table_request(&format!(
        "/apis/vigil.dev/v1alpha1/namespaces/{ns}/recorderpools"
    ));
    let table: serde_json::Value = client.request(request).await.expect("pool table");
    assert_eq!(table["rows"][0]["cells"][0], "main");
    assert_eq!(table["rows"][0]["cells"][1], 3, "Replicas column");

    delete_namespace(&client, &ns).await;
}

fn http_table_request(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(vec![])
        .expect("request")
}

#[tokio::test]
async fn schema_refuses_bad_scheme_zero_bitrate_and_zero_retention() {
    let client = client().await;
    apply_crds(&client).await;
    let ns = create_namespace(&client, "vigil-e2e-schema", &[]).await;
    let cases = [
        ("camera-http-url.yaml", "spec.source.url", "should match"),
        (
            "camera-zero-bitrate.yaml",
            "spec.expectedBitrateKbps",
            "should be greater than or equal to 1",
        ),
        (
            "camera-zero-retention.yaml",
            "spec.retention.days",
            "should be greater than or equal to 1",
        ),
    ];
    for (file, field, words) in cases {
        let obj = read_manifests(&repo_root().join("examples/invalid").join(file)).remove(0);
        let e = refusal(&client, &ns, &obj).await;
        println!("{file} → {} {}: {}", e.code, e.reason, e.message);
        assert_eq!(e.code, 422, "{file}: {}", e.message);
        assert!(
            e.message.contains(field),
            "{file}: message names {field}: {}",
            e.message
        );
        assert!(
            e.message.contains(words),
            "{file}: message says {words:?}: {}",
            e.message
        );
    }
    delete_namespace(&client, &ns).await;
}

/// Input limits: a 300 kB string in any field and a 10,000-window schedule (an object of about
/// 1 MB) are refused by the API server itself, before the operator or a webhook reads them.
#[tokio::test]
async fn schema_refuses_oversized_strings_and_lists() {
    let client = client().await;
    apply_crds(&client).await;
    let ns = create_namespace(&client, "netpolicy-e2e-limits", &[]).await;
    let big = "x".repeat(300_000);
    let camera = example("camera-onvif.yaml")
        .into_iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "Camera"))
        .expect("an ONVIF camera example");
    let pool = example("recorderpool.yaml").remove(0);
    let window = serde_json::json!({"days": ["Mon"], "start": "08:00", "end": "09:00"});
    let mut cases: Vec<(&str, kube::core::DynamicObject, &str)> = vec![];
    let mut c = camera.clone();
    c.data["spec"]["edgeStorage"]["onvif"]["recordingToken"] = big.clone().into();
    cases.push(("spec.edgeStorage.onvif.recordingToken", c, "chars long"));
    let mut c = camera.clone();
    c.data["spec"]["recording"] = serde_json::json!({"mode": "Continuous", "timeZone": big});
    cases.push(("spec.recording.timeZone", c, "chars long"));
    let mut c = camera.clone();
    c.data["spec"]["source"]["url"] = format!("rtsp://cam/{big}").into();
    cases.push(("spec.source.url", c, "chars long"));
    let mut c = camera.clone();
    c.data["spec"]["credentialsSecretRef"] = serde_json::json!({"name": "cam", "passwordKey": big});
    cases.push(("spec.credentialsSecretRef.passwordKey", c, "chars long"));
    let mut c = camera.clone();
    c.data["spec"]["recording"] = serde_json::json!({
        "mode": "Scheduled",
        "schedule": vec![window; 10_000],
    });
    cases.push(("spec.recording.schedule", c, "items"));
    let mut p = pool.clone();
    p.data["spec"]["cameraNetworks"] = serde_json::json!({"allow": vec!["10.0.0.0/8"; 1000]});
    cases.push(("spec.cameraNetworks.allow", p, "items"));
    let mut p = pool.clone();
    p.data["spec"]["storage"]["s3"]["prefix"] = big.clone().into();
    cases.push(("spec.storage.s3.prefix", p, "chars long"));
    for (field, obj, words) in cases {
        let e = refusal(&client, &ns, &obj).await;
        // The API server quotes the value; show the start and the end of its message.
        let shown = if e.message.len() > 400 {
            format!(
                "{} … {}",
                &e.message[..150],
                &e.message[e.message.len() - 200..]
            )
        } else {
            e.message.clone()
        };
        println!("{field} → {} {}: {shown}", e.code, e.reason);
        assert_eq!(e.code, 422, "{field}: {shown}");
        assert!(e.message.contains(field), "{field}: {shown}");
        assert!(e.message.contains("at most"), "{field}: {shown}");
        assert!(e.message.contains(words), "{field}: {shown}");
    }
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn webhook_refuses_window_ending_before_start() {
    let client = client().await;
    apply_crds(&client).await;

    // The API server must reach the webhook this test serves: on the local cluster it runs on
    // this host; on kind, $VIGIL_HOST_IP is the docker network gateway the node can reach.
    let host = std::env::var("VIGIL_HOST_IP").unwrap_or_else(|_| "127.0.0.1".into());
    let listener = std::net::TcpListener::bind((host.as_str(), 0)).expect("bind webhook port");
    let port = listener.local_addr().expect("addr").port();
    let cert = vigil_operator::webhook::self_signed(std::slice::from_ref(&host)).expect("cert");
    let ca_bundle = cert.cert_pem.clone();
    let server = tokio::spawn(vigil_operator::webhook::serve_listener(listener, cert));

    // Scope the webhook to this test's namespace only, so other tests and users are unaffected.
    let selector_value = unique_suffix();
    let ns = create_namespace(
        &client,
        "vigil-e2e-webhook",
        &[("vigil.dev/e2e-webhook", &selector_value)],
    )
    .await;
    let config_name = format!("vigil-e2e-{selector_value}");
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    configs
        .create(
            &PostParams::default(),
            &webhook_configuration(&config_name, &selector_value, &host, port, &ca_bundle),
        )
        .await
        .expect("create ValidatingWebhookConfiguration");

    let reversed =
        read_manifests(&repo_root().join("examples/invalid/backfill-window-reversed.yaml"))
            .remove(0);
    // The API server picks up a new webhook configuration within a second or so; until then the
    // object may be admitted unchecked, so delete and retry until the webhook answers.
    let backfills = Api::<kube::core::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &api_resource(&reversed),
    );
    let denied = wait_for(
        Duration::from_secs(20),
        "the webhook to refuse the reversed window",
        || {
            let (client, ns, reversed, backfills) = (
                client.clone(),
                ns.clone(),
                reversed.clone(),
                backfills.clone(),
            );
            async move {
                match apply(&client, &ns, &reversed).await {
                    Err(kube::Error::Api(e)) => Some(*e),
                    Err(other) => panic!("unexpected error: {other}"),
                    Ok(_) => {
                        let _ = backfills
                            .delete(&reversed.name_any(), &DeleteParams::default())
                            .await;
                        None
                    }
                }
            }
        },
    )
    .await;
    println!(
        "reversed window → {} {}: {}",
        denied.code, denied.reason, denied.message
    );
    assert!(
        denied.message.contains("denied the request"),
        "{}",
        denied.message
    );
    assert!(denied.message.contains("spec.window: end (2026-11-21T09:00:00+00:00) must be after start (2026-11-21T10:00:00+00:00)"), "{}", denied.message);

    // The webhook is not a blanket deny: the valid example passes through it.
    let valid = example("backfill-manual.yaml").remove(0);
    apply(&client, &ns, &valid)
        .await
        .expect("a valid Backfill is admitted");

    // A camera with credentials in its URL is refused without echoing the password.
    let mut leaky = example("camera-no-edge-storage.yaml").remove(0);
    leaky.data["spec"]["source"]["url"] = "rtsp://admin:s3cr3t-pw@192.0.2.10/live".into();
    let e = refusal(&client, &ns, &leaky).await;
    assert!(
        e.message.contains("must not contain credentials"),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains("s3cr3t-pw"),
        "password echoed: {}",
        e.message
    );

    // Credentials in a query string, anywhere a URL is accepted; an unknown time zone; a
    // cameraNetworks entry that is no CIDR.
    let onvif_camera = example("camera-onvif.yaml")
        .into_iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "Camera"))
        .expect("an ONVIF camera example");
    let mut cases: Vec<(&str, kube::core::DynamicObject, &str)> = vec![];
    let mut c = example("camera-no-edge-storage.yaml").remove(0);
    c.data["spec"]["source"]["url"] = "rtsp://192.0.2.10/live?user=admin&Password=s3cr3t-pw".into();
    cases.push(("spec.source.url", c, "must not contain credentials"));
    let mut c = onvif_camera.clone();
    c.data["spec"]["edgeStorage"]["onvif"]["deviceUrl"] =
        "http://192.0.2.10/onvif/device_service?TOKEN=s3cr3t-pw".into();
    cases.push((
        "spec.edgeStorage.onvif.deviceUrl",
        c,
        "must not contain credentials",
    ));
    let mut c = example("camera-playback-template.yaml")
        .into_iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "Camera"))
        .expect("a playback camera example");
    c.data["spec"]["edgeStorage"]["rtspPlayback"]["urlTemplate"] =
        "rtsp://192.0.2.10/pb?starttime={start}&endtime={end}&pwd=s3cr3t-pw".into();
    cases.push((
        "spec.edgeStorage.rtspPlayback.urlTemplate",
        c,
        "must not contain credentials",
    ));
    let mut c = example("camera-no-edge-storage.yaml").remove(0);
    c.data["spec"]["recording"] =
        serde_json::json!({"mode": "Continuous", "timeZone": "Mars/Olympus_Mons"});
    cases.push(("spec.recording.timeZone", c, "is not an IANA time zone"));
    let mut p = example("recorderpool.yaml").remove(0);
    p.data["spec"]["cameraNetworks"] = serde_json::json!({"allow": ["cameras.local/24"]});
    cases.push(("spec.cameraNetworks.allow[0]", p, "is not an address range"));
    for (field, obj, words) in cases {
        let e = refusal(&client, &ns, &obj).await;
        println!("{field} → {} {}: {}", e.code, e.reason, e.message);
        assert!(
            e.message.contains("denied the request"),
            "{field}: {}",
            e.message
        );
        assert!(e.message.contains(field), "{field}: {}", e.message);
        assert!(e.message.contains(words), "{field}: {}", e.message);
        assert!(
            !e.message.contains("s3cr3t-pw"),
            "password echoed: {}",
            e.message
        );
    }

    let _ = configs.delete(&config_name, &DeleteParams::default()).await;
    delete_namespace(&client, &ns).await;
    server.abort();
}

fn webhook_configuration(
    name: &str,
    selector_value: &str,
    host: &str,
    port: u16,
    ca_pem: &str,
) -> ValidatingWebhookConfiguration {
    let mut config = ValidatingWebhookConfiguration::default();
    config.metadata.name = Some(name.to_string());
    config.webhooks = Some(vec![ValidatingWebhook {
        name: "validate.vigil.dev".into(),
        admission_review_versions: vec!["v1".into()],
        side_effects: "None".into(),
        failure_policy: Some("Fail".into()),
        timeout_seconds: Some(5),
        client_config: WebhookClientConfig {
            url: Some(format!(
                "https://{host}:{port}{}",
                vigil_operator::webhook::VALIDATE_PATH
            )),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: None::<ServiceReference>,
        },
        namespace_selector: Some(LabelSelector {
            match_labels: Some(
                [(
                    "vigil.dev/e2e-webhook".to_string(),
                    selector_value.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        }),
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec!["vigil.dev".into()]),
            api_versions: Some(vec!["v1alpha1".into()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            resources: Some(vec![
                "cameras".into(),
                "recorderpools".into(),
                "backfills".into(),
            ]),
            scope: Some("Namespaced".into()),
        }]),
        ..Default::default()
    }]);
    config
}
