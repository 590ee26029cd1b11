//! A small blocking MQTT client for the tests (rumqttc, MQTT 3.1.1), to act as the
//! control plane or as a device that misbehaves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, Connection, ConnectionError, Event, MqttOptions, Packet, QoS, SubscribeReasonCode,
};

/// A connected test client.
pub struct Mqtt {
    client: Client,
    connection: Connection,
}

/// What came of a connect.
pub type ConnectResult = Result<Mqtt, String>;

impl Mqtt {
    /// Connects with these credentials; `Err` names why the broker refused.
    pub fn connect(
        address: SocketAddr,
        client_id: &str,
        username: &str,
        password: &str,
    ) -> ConnectResult {
        let mut options = MqttOptions::new(client_id, address.ip().to_string(), address.port());
        options
            .set_credentials(username, password)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut connection) = Client::new(options, 64);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match connection.recv_timeout(Duration::from_millis(500)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    return Ok(Mqtt { client, connection });
                }
                Ok(Err(ConnectionError::ConnectionRefused(code))) => {
                    return Err(format!("refused: {code:?}"));
                }
                Ok(Err(err)) => return Err(err.to_string()),
                _ => {}
            }
        }
        Err("no CONNACK".into())
    }

    /// Subscribes; returns whether the broker granted it.
    pub fn subscribe(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .expect("queue subscribe");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) =
                self.connection.recv_timeout(Duration::from_millis(500))
            {
                return ack
                    .return_codes
                    .iter()
                    .all(|code| !matches!(code, SubscribeReasonCode::Failure));
            }
        }
        panic!("no SUBACK for {filter}");
    }

    /// Publishes at QoS 1 and waits for the broker's ack (which says nothing of delivery).
    pub fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .expect("queue publish");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
                self.connection.recv_timeout(Duration::from_millis(500))
            {
                return;
            }
        }
        panic!("no PUBACK for {topic}");
    }

    /// Every message received within `window`.
    pub fn collect(&mut self, window: Duration) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + window;
        let mut messages = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok(Ok(Event::Incoming(Packet::Publish(publish)))) =
                self.connection.recv_timeout(left)
            {
                messages.push((publish.topic.clone(), publish.payload.to_vec()));
            }
        }
        messages
    }
}
