//! Mirrors the fleet into AWS IoT Core: each group becomes a thing group, each device a
//! thing in its group with an X.509 certificate that carries the device policy, and the
//! control plane gets a thing and certificate of its own. Every step checks first and
//! changes only what differs, so a sync can run again at any time. A private key is
//! handed to the caller the moment AWS returns it, before anything else happens: AWS
//! never shows it again.

use aws_sdk_iot::Client;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::types::{AttributePayload, ThingGroupProperties};
use serde::Serialize;
use serde_json::Value;

use super::iot_policy::{
    CONTROL_PLANE_POLICY, CONTROL_PLANE_THING, DEVICE_POLICY, check_thing_name,
    control_plane_policy, device_policy,
};
use super::{AwsTarget, error_message, sdk_config};

/// The attribute that marks what Edgewise manages.
const MANAGED_BY: (&str, &str) = ("managed-by", "edgewise");

/// AWS IoT keeps at most five versions of a policy.
const MAX_POLICY_VERSIONS: usize = 5;

/// The fleet as the control plane knows it.
#[derive(Debug, Clone, Default)]
pub struct DesiredFleet {
    /// Group names.
    pub groups: Vec<String>,
    /// `(device id, group)` pairs.
    pub devices: Vec<(String, String)>,
}

/// A certificate AWS IoT has just created, with its private key.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The thing it is for.
    pub thing: String,
    /// Its ARN.
    pub certificate_arn: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The private key, PEM; shown once.
    pub private_key_pem: String,
}

/// What a sync changed.
#[derive(Debug, Default, Serialize)]
pub struct SyncReport {
    /// The MQTT endpoint devices connect to, `HOST` (port 8883).
    pub endpoint: String,
    /// Policies created or given a new default version.
    pub policies_changed: Vec<String>,
    /// Thing groups created.
    pub groups_created: Vec<String>,
    /// Things created.
    pub things_created: Vec<String>,
    /// Things added to (or removed from) thing groups, as `thing → group`.
    pub memberships_changed: Vec<String>,
    /// Things that got a new certificate.
    pub certificates_issued: Vec<String>,
    /// Things already in order.
    pub unchanged: Vec<String>,
    /// Devices that could not be mirrored, with the reason.
    pub failed: Vec<String>,
}

/// An AWS IoT Core account seen through the SDK.
pub struct FleetMirror {
    client: Client,
}

impl FleetMirror {
    /// A mirror for `target` (its endpoint replaces AWS IoT's control endpoint).
    pub async fn connect(target: &AwsTarget) -> Self {
        let sdk = sdk_config(&target.region).await;
        let mut config = aws_sdk_iot::config::Builder::from(&sdk);
        if let Some(endpoint) = &target.endpoint {
            config = config.endpoint_url(endpoint);
        }
        FleetMirror {
            client: Client::from_conf(config.build()),
        }
    }

    /// The account's device data endpoint (ATS), which serves MQTT on port 8883.
    pub async fn data_endpoint(&self) -> Result<String, String> {
        let answer = self
            .client
            .describe_endpoint()
            .endpoint_type("iot:Data-ATS")
            .send()
            .await
            .map_err(|e| format!("describe-endpoint: {}", error_message(&e)))?;
        answer
            .endpoint_address()
            .map(str::to_owned)
            .ok_or_else(|| "describe-endpoint answered no endpoint address".to_owned())
    }

    /// Brings AWS IoT in line with `fleet`; `keep` stores each new certificate and key
    /// (an error there stops the sync before the certificate is used).
    pub async fn sync(
        &self,
        fleet: &DesiredFleet,
        keep: &mut dyn FnMut(&IssuedCertificate) -> Result<(), String>,
    ) -> Result<SyncReport, String> {
        let mut report = SyncReport {
            endpoint: self.data_endpoint().await?,
            ..SyncReport::default()
        };
        for (name, document) in [
            (DEVICE_POLICY, device_policy()),
            (CONTROL_PLANE_POLICY, control_plane_policy()),
        ] {
            if self.ensure_policy(name, &document).await? {
                report.policies_changed.push(name.to_owned());
            }
        }
        for group in &fleet.groups {
            check_thing_name(group).map_err(|e| format!("group {group:?}: {e}"))?;
            if self.ensure_thing_group(group).await? {
                report.groups_created.push(group.clone());
            }
        }
        let things = fleet
            .devices
            .iter()
            .map(|(id, group)| (id.as_str(), Some(group.as_str()), DEVICE_POLICY))
            .chain([(CONTROL_PLANE_THING, None, CONTROL_PLANE_POLICY)]);
        for (thing, group, policy) in things {
            let before = report_size(&report);
            if let Err(err) = self
                .mirror_thing(thing, group, policy, fleet, keep, &mut report)
                .await
            {
                report.failed.push(format!("{thing}: {err}"));
            } else if report_size(&report) == before {
                report.unchanged.push(thing.to_owned());
            }
        }
        Ok(report)
    }

    /// One thing: created, in its group and no other Edgewise group, with a certificate
    /// that carries `policy`.
    async fn mirror_thing(
        &self,
        thing: &str,
        group: Option<&str>,
        policy: &str,
        fleet: &DesiredFleet,
        keep: &mut dyn FnMut(&IssuedCertificate) -> Result<(), String>,
        report: &mut SyncReport,
    ) -> Result<(), String> {
        check_thing_name(thing)?;
        if self.ensure_thing(thing).await? {
            report.things_created.push(thing.to_owned());
        }
        for change in self.ensure_membership(thing, group, &fleet.groups).await? {
            report.memberships_changed.push(change);
        }
        if self.ensure_certificate(thing, policy, keep).await? {
            report.certificates_issued.push(thing.to_owned());
        }
        Ok(())
    }

    /// Creates the policy, or makes `document` its default version; true if it changed.
    async fn ensure_policy(&self, name: &str, document: &Value) -> Result<bool, String> {
        let text = document.to_string();
        let current = match self.client.get_policy().policy_name(name).send().await {
            Ok(policy) => policy.policy_document().map(str::to_owned),
            Err(err) if not_found(&err) => {
                self.client
                    .create_policy()
                    .policy_name(name)
                    .policy_document(&text)
                    .send()
                    .await
                    .map_err(|e| format!("create-policy {name}: {}", error_message(&e)))?;
                return Ok(true);
            }
            Err(err) => return Err(format!("get-policy {name}: {}", error_message(&err))),
        };
        let same = current
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .is_some_and(|current| &current == document);
        if same {
            return Ok(false);
        }
        self.make_room_for_policy_version(name).await?;
        self.client
            .create_policy_version()
            .policy_name(name)
            .policy_document(&text)
            .set_as_default(true)
            .send()
            .await
            .map_err(|e| format!("create-policy-version {name}: {}", error_message(&e)))?;
        Ok(true)
    }

    /// Deletes the oldest non-default version when the policy has the most AWS allows.
    async fn make_room_for_policy_version(&self, name: &str) -> Result<(), String> {
        let versions = self
            .client
            .list_policy_versions()
            .policy_name(name)
            .send()
            .await
            .map_err(|e| format!("list-policy-versions {name}: {}", error_message(&e)))?;
        let mut old: Vec<_> = versions
            .policy_versions()
            .iter()
            .filter(|version| !version.is_default_version())
            .collect();
        if versions.policy_versions().len() < MAX_POLICY_VERSIONS {
            return Ok(());
        }
        old.sort_by_key(|version| version.create_date().map(|date| date.secs()));
        if let Some(oldest) = old.first().and_then(|version| version.version_id()) {
            self.client
                .delete_policy_version()
                .policy_name(name)
                .policy_version_id(oldest)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "delete-policy-version {name} {oldest}: {}",
                        error_message(&e)
                    )
                })?;
        }
        Ok(())
    }

    /// Creates the thing group if missing; true if created.
    async fn ensure_thing_group(&self, group: &str) -> Result<bool, String> {
        match self
            .client
            .describe_thing_group()
            .thing_group_name(group)
            .send()
            .await
        {
            Ok(_) => Ok(false),
            Err(err) if not_found(&err) => {
                let properties = ThingGroupProperties::builder()
                    .thing_group_description(format!("Edgewise device group {group}"))
                    .attribute_payload(managed_attributes())
                    .build();
                self.client
                    .create_thing_group()
                    .thing_group_name(group)
                    .thing_group_properties(properties)
                    .send()
                    .await
                    .map_err(|e| format!("create-thing-group {group}: {}", error_message(&e)))?;
                Ok(true)
            }
            Err(err) => Err(format!(
                "describe-thing-group {group}: {}",
                error_message(&err)
            )),
        }
    }

    /// Creates the thing if missing; true if created.
    async fn ensure_thing(&self, thing: &str) -> Result<bool, String> {
        match self.client.describe_thing().thing_name(thing).send().await {
            Ok(_) => Ok(false),
            Err(err) if not_found(&err) => {
                self.client
                    .create_thing()
                    .thing_name(thing)
                    .attribute_payload(managed_attributes())
                    .send()
                    .await
                    .map_err(|e| format!("create-thing: {}", error_message(&e)))?;
                Ok(true)
            }
            Err(err) => Err(format!("describe-thing: {}", error_message(&err))),
        }
    }

    /// Puts the thing in `group` and takes it out of every other Edgewise thing group
    /// (groups the account owner made stay); returns the changes.
    async fn ensure_membership(
        &self,
        thing: &str,
        group: Option<&str>,
        fleet_groups: &[String],
    ) -> Result<Vec<String>, String> {
        let current = self
            .client
            .list_thing_groups_for_thing()
            .thing_name(thing)
            .send()
            .await
            .map_err(|e| format!("list-thing-groups-for-thing: {}", error_message(&e)))?;
        let current: Vec<&str> = current
            .thing_groups()
            .iter()
            .filter_map(|g| g.group_name())
            .collect();
        let mut changes = Vec::new();
        for stale in current.iter().filter(|name| Some(**name) != group) {
            let ours = fleet_groups.iter().any(|g| g.as_str() == *stale)
                || self.is_managed_group(stale).await?;
            if !ours {
                continue;
            }
            self.client
                .remove_thing_from_thing_group()
                .thing_name(thing)
                .thing_group_name(*stale)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "remove-thing-from-thing-group {stale}: {}",
                        error_message(&e)
                    )
                })?;
            changes.push(format!("{thing} ✗ {stale}"));
        }
        if let Some(group) = group.filter(|group| !current.contains(group)) {
            self.client
                .add_thing_to_thing_group()
                .thing_name(thing)
                .thing_group_name(group)
                .send()
                .await
                .map_err(|e| format!("add-thing-to-thing-group {group}: {}", error_message(&e)))?;
            changes.push(format!("{thing} → {group}"));
        }
        Ok(changes)
    }

    /// Whether a thing group carries the `managed-by=edgewise` attribute (a fleet group,
    /// possibly one with no devices left); other groups are the account owner's own.
    async fn is_managed_group(&self, group: &str) -> Result<bool, String> {
        let described = self
            .client
            .describe_thing_group()
            .thing_group_name(group)
            .send()
            .await
            .map_err(|e| format!("describe-thing-group {group}: {}", error_message(&e)))?;
        Ok(described
            .thing_group_properties()
            .and_then(|properties| properties.attribute_payload())
            .and_then(|payload| payload.attributes())
            .and_then(|attributes| attributes.get(MANAGED_BY.0))
            .is_some_and(|value| value == MANAGED_BY.1))
    }

    /// Gives the thing a certificate carrying `policy` unless it has one; true if issued.
    /// Certificates it already has get `policy` attached (attaching is idempotent).
    async fn ensure_certificate(
        &self,
        thing: &str,
        policy: &str,
        keep: &mut dyn FnMut(&IssuedCertificate) -> Result<(), String>,
    ) -> Result<bool, String> {
        let principals = self
            .client
            .list_thing_principals()
            .thing_name(thing)
            .send()
            .await
            .map_err(|e| format!("list-thing-principals: {}", error_message(&e)))?;
        if !principals.principals().is_empty() {
            for principal in principals.principals() {
                self.attach_policy(policy, principal).await?;
            }
            return Ok(false);
        }
        let created = self
            .client
            .create_keys_and_certificate()
            .set_as_active(true)
            .send()
            .await
            .map_err(|e| format!("create-keys-and-certificate: {}", error_message(&e)))?;
        let issued = IssuedCertificate {
            thing: thing.to_owned(),
            certificate_arn: created.certificate_arn().unwrap_or_default().to_owned(),
            certificate_pem: created.certificate_pem().unwrap_or_default().to_owned(),
            private_key_pem: created
                .key_pair()
                .and_then(|pair| pair.private_key())
                .unwrap_or_default()
                .to_owned(),
        };
        if issued.certificate_arn.is_empty() || issued.private_key_pem.is_empty() {
            return Err("create-keys-and-certificate answered without a certificate or key".into());
        }
        keep(&issued)?;
        self.attach_policy(policy, &issued.certificate_arn).await?;
        self.client
            .attach_thing_principal()
            .thing_name(thing)
            .principal(&issued.certificate_arn)
            .send()
            .await
            .map_err(|e| format!("attach-thing-principal: {}", error_message(&e)))?;
        Ok(true)
    }

    async fn attach_policy(&self, policy: &str, certificate_arn: &str) -> Result<(), String> {
        self.client
            .attach_policy()
            .policy_name(policy)
            .target(certificate_arn)
            .send()
            .await
            .map_err(|e| format!("attach-policy {policy}: {}", error_message(&e)))?;
        Ok(())
    }
}

/// Whether AWS IoT answered that the named resource does not exist.
fn not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ResourceNotFoundException")
}

/// `managed-by=edgewise`.
fn managed_attributes() -> AttributePayload {
    AttributePayload::builder()
        .attributes(MANAGED_BY.0, MANAGED_BY.1)
        .build()
}

fn report_size(report: &SyncReport) -> usize {
    report.things_created.len()
        + report.memberships_changed.len()
        + report.certificates_issued.len()
        + report.failed.len()
}
