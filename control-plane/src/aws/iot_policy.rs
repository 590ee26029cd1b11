//! The AWS IoT Core policies `edgewise fleet sync --aws` installs. A device may connect
//! only as its own thing, publish only its own `reported`, `telemetry` and `status`, and
//! subscribe to and receive only its own `desired` and `receipts`; the policy variable
//! `${iot:Connection.Thing.ThingName}` makes one document serve every device. The
//! control plane's thing may publish every `desired` and `receipts` and read every
//! device topic.

use edgewise_core::topics::{DEVICE_TOPIC_PREFIX, DeviceTopic};
use serde_json::{Value, json};

/// The name of the devices' policy.
pub const DEVICE_POLICY: &str = "edgewise-device";

/// The name of the control plane's policy.
pub const CONTROL_PLANE_POLICY: &str = "edgewise-control-plane";

/// The thing the control plane connects as (its MQTT client id).
pub const CONTROL_PLANE_THING: &str = crate::datadir::SERVICE_USER;

const THING: &str = "${iot:Connection.Thing.ThingName}";

fn arn(kind: &str, rest: &str) -> String {
    format!("arn:aws:iot:*:*:{kind}/{rest}")
}

fn own_topic(topic: DeviceTopic) -> String {
    arn(
        "topic",
        &format!("{DEVICE_TOPIC_PREFIX}/{THING}/{}", topic.suffix()),
    )
}

/// Connecting as the thing itself, and only with a certificate attached to that thing.
fn connect_as_own_thing() -> Value {
    json!({
        "Effect": "Allow",
        "Action": "iot:Connect",
        "Resource": arn("client", THING),
        "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    })
}

/// The policy document every device's certificate gets.
pub fn device_policy() -> Value {
    let published: Vec<String> = [
        DeviceTopic::Reported,
        DeviceTopic::Telemetry,
        DeviceTopic::Status,
    ]
    .into_iter()
    .map(own_topic)
    .collect();
    let retained: Vec<String> = [DeviceTopic::Reported, DeviceTopic::Status]
        .into_iter()
        .map(own_topic)
        .collect();
    let incoming = [DeviceTopic::Desired, DeviceTopic::Receipts];
    let filters: Vec<String> = incoming
        .iter()
        .map(|topic| {
            arn(
                "topicfilter",
                &format!("{DEVICE_TOPIC_PREFIX}/{THING}/{}", topic.suffix()),
            )
        })
        .collect();
    let received: Vec<String> = incoming.into_iter().map(own_topic).collect();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            connect_as_own_thing(),
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": published},
            {"Effect": "Allow", "Action": "iot:RetainPublish", "Resource": retained},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": filters},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": received}
        ]
    })
}

/// The policy document of the control plane's certificate.
pub fn control_plane_policy() -> Value {
    let desired = arn(
        "topic",
        &format!("{DEVICE_TOPIC_PREFIX}/*/{}", DeviceTopic::Desired.suffix()),
    );
    let receipts = arn(
        "topic",
        &format!("{DEVICE_TOPIC_PREFIX}/*/{}", DeviceTopic::Receipts.suffix()),
    );
    json!({
        "Version": "2012-10-17",
        "Statement": [
            connect_as_own_thing(),
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:RetainPublish"], "Resource": desired},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": receipts},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": arn("topicfilter", &format!("{DEVICE_TOPIC_PREFIX}/*"))},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": arn("topic", &format!("{DEVICE_TOPIC_PREFIX}/*"))}
        ]
    })
}

/// Errors unless `device_id` can be an AWS IoT thing name (letters, digits, `-`, `_`, `:`).
pub fn check_thing_name(device_id: &str) -> Result<(), String> {
    match device_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':')))
    {
        None if !device_id.is_empty() && device_id.len() <= 128 => Ok(()),
        None => Err(format!(
            "device id {device_id:?} cannot be an AWS IoT thing name (1 to 128 characters)"
        )),
        Some(bad) => Err(format!(
            "device id {device_id:?} holds {bad:?}, which AWS IoT thing names do not allow (letters, digits, '-', '_', ':'); the MQTT client id must equal the thing name"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(policy: &Value, action: &str) -> Vec<String> {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|statement| {
                statement["Action"] == action
                    || statement["Action"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == action))
            })
            .flat_map(|statement| match &statement["Resource"] {
                Value::String(one) => vec![one.clone()],
                Value::Array(many) => many
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn a_device_reaches_only_its_own_topics() {
        let policy = device_policy();
        for action in [
            "iot:Connect",
            "iot:Publish",
            "iot:Subscribe",
            "iot:Receive",
            "iot:RetainPublish",
        ] {
            let granted = resources(&policy, action);
            assert!(!granted.is_empty(), "{action} is granted somewhere");
            for resource in granted {
                assert!(
                    resource.contains(THING),
                    "{action} on {resource} names the thing itself"
                );
                assert!(
                    !resource.ends_with('*') && !resource.contains("/*/"),
                    "{action} on {resource} has no wildcard"
                );
            }
        }
        let published = resources(&policy, "iot:Publish");
        assert!(
            published.iter().all(|topic| !topic.ends_with("/desired")),
            "devices cannot forge assignments"
        );
        assert!(
            published.iter().all(|topic| !topic.ends_with("/receipts")),
            "devices cannot forge telemetry receipts"
        );
        assert!(
            resources(&policy, "iot:Receive")
                .iter()
                .all(|topic| topic.ends_with("/desired") || topic.ends_with("/receipts"))
        );
        assert_eq!(
            policy["Statement"][0]["Condition"]["Bool"]["iot:Connection.Thing.IsAttached"],
            "true"
        );
    }

    #[test]
    fn the_control_plane_publishes_assignments_and_receipts_and_reads_device_topics() {
        let policy = control_plane_policy();
        assert_eq!(
            resources(&policy, "iot:Publish"),
            vec![
                format!("arn:aws:iot:*:*:topic/{DEVICE_TOPIC_PREFIX}/*/desired"),
                format!("arn:aws:iot:*:*:topic/{DEVICE_TOPIC_PREFIX}/*/receipts"),
            ]
        );
        assert_eq!(
            resources(&policy, "iot:Subscribe"),
            vec![format!(
                "arn:aws:iot:*:*:topicfilter/{DEVICE_TOPIC_PREFIX}/*"
            )]
        );
    }

    #[test]
    fn thing_names_follow_aws_rules() {
        assert!(check_thing_name("shop-1_a:b").is_ok());
        let error = check_thing_name("shop.1").unwrap_err();
        assert!(
            error.contains("'.'") && error.contains("thing name"),
            "{error}"
        );
    }
}
