//! The cloud backends against real servers on 127.0.0.1: bundles kept in S3 (moto) and
//! fetched by nodes through presigned URLs; the fleet mirrored into AWS IoT Core
//! (moto) by `edgewise fleet sync --aws`; and MQTT over TLS with X.509 client
//! certificates, as IoT Core requires, on Mosquitto with `require_certificate`.

mod common;

use std::path::Path;
use std::process::Command;

use common::mosquitto;
use common::moto::{AWS_ENV, Moto, s3_url};
use common::{ControlPlane, binary, bundles, start_nodes};
use edgewise_control_plane::pki;
use edgewise_core::node_config::NodeConfig;
use serde_json::Value;

const BUCKET: &str = "edgewise-bundles";

/// The status and bytes of `url`; moto checks no signature, but wants one present.
fn fetch(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::blocking::Client::new()
        .get(url)
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261128/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
        )
        .send()
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.bytes().expect("body").to_vec())
}

#[test]
fn bundles_live_in_s3_and_nodes_fetch_them_through_presigned_urls() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("s3://{BUCKET}/fleet");
    let plane = ControlPlane::start_with_env(
        &dir.path().join("control-plane"),
        &[
            "--artifact-store",
            &store,
            "--s3-endpoint",
            &moto.url,
            "--presigned-downloads",
        ],
        &AWS_ENV,
    );
    let config = plane.add_device("s3-1", "stores", dir.path());
    let nodes = start_nodes(&plane, &[config]);

    let v1 = std::fs::read(&bundles().v1).expect("v1");
    plane.cli(&["model", "push", bundles().v1.to_str().expect("utf-8")]);
    let sha = plane.get("/api/v1/models/digits/versions/1")["bundle_sha256"]
        .as_str()
        .expect("sha256")
        .to_owned();
    let object = s3_url(&moto.url, &format!("{store}/artifacts/{sha}"));
    let (status, stored) = fetch(&object);
    assert_eq!(status, 200, "the pushed bundle is in the bucket");
    assert!(stored == v1, "the bucket holds the pushed bytes");

    plane.deploy_and_wait("stores", "digits", "1");
    assert_eq!(nodes[0].serving_version().as_deref(), Some("1"));
    assert!(
        plane.metric("edgewise_artifact_redirects_total") >= 1.0,
        "the node was sent to S3"
    );
    assert_eq!(
        plane.metric("edgewise_artifact_bytes_served_total"),
        0.0,
        "no bundle byte went through the control plane"
    );

    // A version nobody runs is deleted from the bucket too.
    plane.cli(&["model", "push", bundles().v2.to_str().expect("utf-8")]);
    let sha2 = plane.get("/api/v1/models/digits/versions/2")["bundle_sha256"]
        .as_str()
        .expect("sha256")
        .to_owned();
    let object2 = s3_url(&moto.url, &format!("{store}/artifacts/{sha2}"));
    assert_eq!(fetch(&object2).0, 200);
    plane.cli(&["model", "delete", "digits", "2"]);
    assert_eq!(
        fetch(&object2).0,
        404,
        "the deleted version's bundle left the bucket"
    );

    // A second control plane with an empty data folder serves the bundle over its own
    // HTTP and caches it: the bucket, not the folder, is the store.
    let second = ControlPlane::start_with_env(
        &dir.path().join("second"),
        &["--artifact-store", &store, "--s3-endpoint", &moto.url],
        &AWS_ENV,
    );
    let response = second
        .request(reqwest::Method::GET, &format!("/api/v1/artifacts/{sha}"))
        .send()
        .expect("GET");
    let status = response.status().as_u16();
    let served = response.bytes().expect("body").to_vec();
    assert_eq!((status, served.len()), (200, v1.len()));
    assert!(served == v1, "the served bytes are the bundle's");
    assert!(
        second.data_dir.join("artifacts").join(&sha).is_file(),
        "cached locally"
    );
    let (status, body) = second.call(
        reqwest::Method::GET,
        &format!("/api/v1/artifacts/{}", "0".repeat(64)),
        None,
    );
    assert_eq!(status, 404, "{body}");
}

/// Runs `edgewise fleet sync --aws` against moto; returns its JSON answer.
fn sync(plane: &ControlPlane, moto: &Moto, out: &Path) -> Value {
    let output = Command::new(binary("edgewise"))
        .args(["--server", &plane.url, "--json", "fleet", "sync", "--aws"])
        .env("EDGEWISE_TOKEN", &plane.token)
        .args(["--aws-endpoint", &moto.url, "--out"])
        .arg(out)
        .envs(AWS_ENV)
        .output()
        .expect("run edgewise");
    assert!(
        output.status.success(),
        "fleet sync failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("sync JSON")
}

/// `GET` of moto's IoT REST API.
fn iot(moto: &Moto, path: &str) -> Value {
    let response = reqwest::blocking::Client::new()
        .get(format!("{}{path}", moto.url))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261128/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=0",
        )
        .send()
        .expect("IoT call");
    response.json().expect("IoT JSON")
}

fn names(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn fleet_sync_mirrors_groups_and_devices_into_iot_core() {
    let Some(moto) = Moto::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    let out = dir.path().join("iot");
    std::fs::create_dir_all(&out).expect("mkdir");
    for (device, group) in [
        ("press-1", "press"),
        ("press-2", "press"),
        ("yard-1", "yard"),
    ] {
        plane.add_device(device, group, &out);
    }

    let first = sync(&plane, &moto, &out);
    let report = &first["report"];
    assert_eq!(names(&report["groups_created"]), ["press", "yard"]);
    assert_eq!(
        names(&report["things_created"]),
        ["edgewise-control-plane", "press-1", "press-2", "yard-1"]
    );
    assert_eq!(names(&report["certificates_issued"]).len(), 4);
    assert_eq!(
        names(&report["policies_changed"]),
        ["edgewise-control-plane", "edgewise-device"]
    );
    assert!(report["failed"].as_array().expect("failed").is_empty());

    // Each device's node config now reaches IoT Core with its own certificate.
    let endpoint = report["endpoint"].as_str().expect("endpoint");
    assert_eq!(names(&first["node_configs_switched"]).len(), 3);
    let config =
        NodeConfig::from_toml(&std::fs::read_to_string(out.join("press-1.toml")).expect("config"))
            .expect("node config");
    assert_eq!(config.mqtt.url, format!("mqtts://{endpoint}:8883"));
    assert!(config.mqtt.password.is_empty());
    let certificate = std::fs::read_to_string(out.join("press-1.cert.pem")).expect("cert");
    assert_eq!(
        config.mqtt.client_certificate.as_deref(),
        Some(certificate.as_str())
    );
    assert!(
        config
            .mqtt
            .client_key
            .is_some_and(|key| key.contains("PRIVATE KEY"))
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("press-1.key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "private keys are readable by their owner only"
        );
    }

    // AWS IoT holds the same picture.
    let policy = iot(&moto, "/policies/edgewise-device");
    let document = policy["policyDocument"].as_str().expect("policy document");
    assert!(
        document.contains("${iot:Connection.Thing.ThingName}"),
        "{document}"
    );
    let members = iot(&moto, "/thing-groups/press/things");
    assert_eq!(names(&members["things"]), ["press-1", "press-2"]);
    let principals = iot(&moto, "/things/press-1/principals");
    assert_eq!(
        principals["principals"]
            .as_array()
            .expect("principals")
            .len(),
        1
    );

    // Running again changes nothing; moving a device moves its thing.
    let again = sync(&plane, &moto, &out);
    assert!(names(&again["report"]["certificates_issued"]).is_empty());
    assert!(names(&again["report"]["things_created"]).is_empty());
    assert_eq!(names(&again["report"]["unchanged"]).len(), 4);
    plane.cli(&["device", "move", "yard-1", "--group", "press"]);
    let moved = sync(&plane, &moto, &out);
    assert_eq!(
        names(&moved["report"]["memberships_changed"]),
        ["yard-1 → press", "yard-1 ✗ yard"]
    );
    let members = iot(&moto, "/thing-groups/press/things");
    assert_eq!(names(&members["things"]), ["press-1", "press-2", "yard-1"]);
}

/// Writes a certificate and key for `name` into `dir`; returns their paths.
fn write_pair(dir: &Path, name: &str, pair: &pki::CertifiedKey) -> (String, String) {
    let certificate = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&certificate, &pair.certificate_pem).expect("write certificate");
    std::fs::write(&key, &pair.key_pem).expect("write key");
    (certificate.display().to_string(), key.display().to_string())
}

#[test]
fn nodes_and_the_control_plane_authenticate_to_the_broker_by_certificate() {
    let Some(binary) = mosquitto::binary() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    mosquitto::share_with_broker(dir.path());
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).expect("mkdir");
    mosquitto::share_with_broker(&tls);
    let ca = pki::create_ca().expect("CA");
    let ca_path = tls.join("ca.pem");
    std::fs::write(&ca_path, &ca.certificate_pem).expect("write CA");
    let server = pki::issue_server_certificate(&ca, &["127.0.0.1".to_owned()]).expect("server");
    let (server_cert, server_key) = write_pair(&tls, "broker", &server);
    let plane_pair = pki::issue_client_certificate(&ca, "edgewise-control-plane").expect("client");
    let (plane_cert, plane_key) = write_pair(&tls, "control-plane", &plane_pair);
    // As an AWS IoT policy does: each identity reaches its own topics only.
    let acl = tls.join("acl");
    std::fs::write(
        &acl,
        "user edgewise-control-plane\ntopic readwrite edgewise/v1/devices/#\n\n\
         pattern read edgewise/v1/devices/%u/desired\npattern write edgewise/v1/devices/%u/reported\n\
         pattern write edgewise/v1/devices/%u/telemetry\npattern write edgewise/v1/devices/%u/status\n",
    )
    .expect("write acl");
    let port = mosquitto::free_port();
    let _broker = mosquitto::start(
        &binary,
        &tls,
        port,
        &format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {server_cert}\nkeyfile {server_key}\n\
             require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n\
             acl_file {}\npersistence false\n",
            ca_path.display(),
            acl.display()
        ),
    );

    let plane = ControlPlane::start(
        &dir.path().join("control-plane"),
        &[
            "--mqtt",
            &format!("mqtts://127.0.0.1:{port}"),
            "--mqtt-ca",
            ca_path.to_str().expect("utf-8"),
            "--mqtt-client-cert",
            &plane_cert,
            "--mqtt-client-key",
            &plane_key,
        ],
    );
    let config_path = plane.add_device("tls-1", "secure", dir.path());
    let mut config = NodeConfig::from_toml(&std::fs::read_to_string(&config_path).expect("config"))
        .expect("node config");
    assert_eq!(config.mqtt.url, format!("mqtts://127.0.0.1:{port}"));
    assert_eq!(
        config.mqtt.ca_certificate.as_deref(),
        Some(ca.certificate_pem.as_str())
    );
    let device = pki::issue_client_certificate(&ca, "tls-1").expect("device certificate");
    config.mqtt.password = String::new();
    config.mqtt.client_certificate = Some(device.certificate_pem);
    config.mqtt.client_key = Some(device.key_pem);
    std::fs::write(&config_path, config.to_toml()).expect("write config");

    let nodes = start_nodes(&plane, &[config_path]);
    plane.cli(&["model", "push", bundles().v1.to_str().expect("utf-8")]);
    plane.deploy_and_wait("secure", "digits", "1");
    assert_eq!(nodes[0].serving_version().as_deref(), Some("1"));
    assert_eq!(nodes[0].infer().as_deref(), Ok("1"));
}
