//! The embedded MQTT broker (the `mqtt5` crate's), with Edgewise's own auth: each
//! device logs in with its own credentials, its client id must equal its username (so
//! no device can take over another's session), and it may subscribe only to its own
//! desired topic and publish only to its own reported, telemetry and status topics.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use edgewise_core::topics::DeviceTopic;
use mqtt5::broker::auth::{AuthProvider, AuthRateLimiter, AuthResult, RateLimitedAuthProvider};
use mqtt5::broker::config::{StorageBackend, StorageConfig};
use mqtt5::broker::events::{
    BrokerEventHandler, ClientConnectEvent, ClientDisconnectEvent, ClientPublishEvent,
    PublishAction,
};
use mqtt5::broker::{BrokerConfig, MqttBroker, ResourceLimits};
use mqtt5::packet::connect::ConnectPacket;
use mqtt5::protocol::v5::reason_codes::ReasonCode;

use crate::datadir::SERVICE_USER;
use crate::receipts::Receipts;
use crate::store::Store;
use crate::telemetry_store::TelemetryStore;
use crate::{credentials, mqtt_link};

/// Largest MQTT packet the broker accepts.
const MAX_PACKET_BYTES: usize = 256 * 1024;

/// Most clients connected at once. The process's file limit is the real bound; the
/// broker's own default (10,000) is below a fleet this control plane serves.
const MAX_CLIENTS: usize = 1_000_000;

/// New connections accepted per second (a whole fleet reconnects after a restart).
const MAX_CONNECTIONS_PER_SECOND: u32 = 10_000;

/// Failed logins from one address before it is locked out.
const MAX_FAILED_LOGINS: u32 = 20;

/// The embedded broker's auth provider, backed by the device store.
pub struct FleetAuth {
    store: Store,
    service_hash: String,
}

impl FleetAuth {
    /// Auth for the devices in `store`, plus the control plane's own service user.
    pub fn new(store: Store, service_password: &str) -> Self {
        FleetAuth {
            store,
            service_hash: credentials::hash_password(service_password),
        }
    }

    fn password_hash(&self, user: &str) -> Option<String> {
        if user == SERVICE_USER {
            return Some(self.service_hash.clone());
        }
        self.store
            .devices
            .get(user)
            .ok()
            .flatten()
            .filter(|device| device.revoked_at.is_none())
            .map(|device| device.credential_hash)
    }

    /// Whether `user` is a registered device that is not revoked; checked on every
    /// publish and subscribe, so a revoked device's open session stops working too.
    fn is_device(&self, user: &str) -> bool {
        user != SERVICE_USER
            && matches!(self.store.devices.get(user), Ok(Some(device)) if device.revoked_at.is_none())
    }

    /// Whether `user` may publish to `topic`.
    pub fn may_publish(&self, user: Option<&str>, topic: &str) -> bool {
        match user {
            Some(SERVICE_USER) => true,
            Some(user) if self.is_device(user) => matches!(
                DeviceTopic::parse(topic),
                Some((id, DeviceTopic::Reported | DeviceTopic::Telemetry | DeviceTopic::Status)) if id == user
            ),
            _ => false,
        }
    }

    /// Whether `user` may subscribe to `filter`.
    pub fn may_subscribe(&self, user: Option<&str>, filter: &str) -> bool {
        match user {
            Some(SERVICE_USER) => true,
            Some(user) if self.is_device(user) => [DeviceTopic::Desired, DeviceTopic::Receipts]
                .iter()
                .any(|topic| filter == topic.for_device(user)),
            _ => false,
        }
    }
}

impl AuthProvider for FleetAuth {
    fn authenticate<'a>(
        &'a self,
        connect: &'a ConnectPacket,
        _client_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = mqtt5::error::Result<AuthResult>> + Send + 'a>> {
        Box::pin(async move {
            let (Some(user), Some(password)) =
                (connect.username.as_deref(), connect.password.as_ref())
            else {
                return Ok(AuthResult::fail(ReasonCode::BadUsernameOrPassword));
            };
            if user != SERVICE_USER && connect.client_id != user {
                return Ok(AuthResult::fail_with_reason(
                    ReasonCode::ClientIdentifierNotValid,
                    "the client id must equal the username",
                ));
            }
            let password = String::from_utf8_lossy(password);
            let valid = self
                .password_hash(user)
                .is_some_and(|hash| credentials::verify_password(&password, &hash));
            Ok(if valid {
                AuthResult::success_with_user(user)
            } else {
                tracing::warn!(%user, "MQTT login refused");
                AuthResult::fail(ReasonCode::BadUsernameOrPassword)
            })
        })
    }

    fn authorize_publish<'a>(
        &'a self,
        _client_id: &str,
        user_id: Option<&'a str>,
        topic: &'a str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let allowed = self.may_publish(user_id, topic);
        if !allowed {
            tracing::warn!(user = ?user_id, %topic, "MQTT publish denied");
        }
        Box::pin(async move { allowed })
    }

    fn authorize_subscribe<'a>(
        &'a self,
        _client_id: &str,
        user_id: Option<&'a str>,
        topic_filter: &'a str,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        let allowed = self.may_subscribe(user_id, topic_filter);
        if !allowed {
            tracing::warn!(user = ?user_id, filter = %topic_filter, "MQTT subscribe denied");
        }
        Box::pin(async move { allowed })
    }
}

/// Watches the broker's traffic: counts connections and messages, and stores
/// telemetry windows inside the publish path, then queues their receipts.
struct BrokerEvents {
    store: Store,
    telemetry: TelemetryStore,
    receipts: Receipts,
}

impl BrokerEventHandler for BrokerEvents {
    fn on_client_connect<'a>(
        &'a self,
        _event: ClientConnectEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        metrics::gauge!("edgewise_mqtt_clients_connected").increment(1.0);
        Box::pin(async {})
    }

    fn on_client_disconnect<'a>(
        &'a self,
        _event: ClientDisconnectEvent,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        metrics::gauge!("edgewise_mqtt_clients_connected").decrement(1.0);
        Box::pin(async {})
    }

    fn on_client_publish<'a>(
        &'a self,
        event: ClientPublishEvent,
    ) -> Pin<Box<dyn Future<Output = PublishAction> + Send + 'a>> {
        Box::pin(async move {
            let kind = DeviceTopic::parse(&event.topic).map(|(_, kind)| kind);
            metrics::counter!("edgewise_mqtt_messages_received_total", "topic" => topic_label(kind))
                .increment(1);
            if kind != Some(DeviceTopic::Telemetry) {
                return PublishAction::Continue;
            }
            let (store, telemetry) = (self.store.clone(), self.telemetry.clone());
            let receipts = self.receipts.clone();
            let topic = event.topic.to_string();
            let stored = tokio::task::spawn_blocking(move || {
                mqtt_link::handle_window(&store, &telemetry, &receipts, &topic, &event.payload)
            })
            .await;
            if let Err(err) = stored {
                tracing::error!(error = %err, "telemetry intake failed");
            }
            PublishAction::Handled
        })
    }
}

/// The `topic` label of a message count.
fn topic_label(kind: Option<DeviceTopic>) -> &'static str {
    match kind {
        Some(DeviceTopic::Desired) => "desired",
        Some(DeviceTopic::Reported) => "reported",
        Some(DeviceTopic::Telemetry) => "telemetry",
        Some(DeviceTopic::Status) => "status",
        Some(DeviceTopic::Receipts) => "receipts",
        None => "other",
    }
}

/// A running embedded broker.
pub struct EmbeddedBroker {
    /// The address it listens on.
    pub address: SocketAddr,
}

/// Starts the broker on `bind`, with retained messages and sessions kept in memory (the
/// control plane republishes every assignment when it reconnects, so nothing is lost
/// across restarts).
pub async fn start(
    bind: SocketAddr,
    store: Store,
    telemetry: TelemetryStore,
    receipts: Receipts,
    service_password: &str,
) -> Result<EmbeddedBroker> {
    let config = BrokerConfig::default()
        .with_bind_address(bind)
        .with_storage(StorageConfig::new().with_backend(StorageBackend::Memory))
        .with_max_packet_size(MAX_PACKET_BYTES)
        .with_max_clients(MAX_CLIENTS)
        .with_session_expiry(Duration::from_secs(3600))
        .with_sys_topics_enabled(false)
        .with_event_handler(Arc::new(BrokerEvents {
            store: store.clone(),
            telemetry,
            receipts,
        }));
    let config_limits = (
        config.max_message_rate_per_client,
        config.max_bandwidth_per_client,
    );
    let auth: Arc<dyn AuthProvider> = Arc::new(FleetAuth::new(store, service_password));
    let limited = Arc::new(RateLimitedAuthProvider::new(
        auth,
        Arc::new(AuthRateLimiter::new(MAX_FAILED_LOGINS, 60, 60)),
    ));
    let mut broker = MqttBroker::with_config(config)
        .await
        .with_context(|| format!("cannot start the MQTT broker on {bind}"))?
        .with_auth_provider(limited);
    // The broker's built-in limits allow 10,000 connections from one address; a fleet
    // behind one NAT or load balancer needs them all.
    broker.resource_monitor().update_limits(ResourceLimits {
        max_connections: MAX_CLIENTS,
        max_connections_per_ip: MAX_CLIENTS,
        max_message_rate_per_client: config_limits.0,
        max_bandwidth_per_client: config_limits.1,
        max_connection_rate: MAX_CONNECTIONS_PER_SECOND,
        rate_limit_window: Duration::from_secs(1),
    });
    let address = broker
        .local_addr()
        .context("the MQTT broker has no TCP listener")?;
    tokio::spawn(async move {
        if let Err(err) = broker.run().await {
            tracing::error!(error = %err, "the MQTT broker stopped");
        }
    });
    Ok(EmbeddedBroker { address })
}
