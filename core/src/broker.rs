//! MQTT broker addresses (`mqtt://HOST:PORT`, or `mqtts://HOST:PORT` over TLS) and the
//! TLS client settings for `mqtts://`: the CA that signs the broker's certificate and,
//! for brokers that authenticate clients by X.509 certificate (AWS IoT Core, Mosquitto
//! with `require_certificate`), the client's own certificate and key.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A parsed broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection runs over TLS (`mqtts://`).
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses `mqtt://HOST:PORT` or `mqtts://HOST:PORT`; errors name `field`.
    pub fn parse(url: &str, field: &str) -> Result<Self, String> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (rest, true)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (rest, false)
        } else {
            return Err(format!(
                "{field} {url:?} must be mqtt://HOST:PORT or mqtts://HOST:PORT"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
            format!("{field} {url:?} must name a port, as in mqtt://HOST:1883 or mqtts://HOST:8883")
        })?;
        let port = port
            .parse()
            .map_err(|_| format!("{field} {url:?}: port {port:?} is not a number"))?;
        let host = host.trim_matches(['[', ']']);
        if host.is_empty() {
            return Err(format!("{field} {url:?} must name a host"));
        }
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// PEM texts for an `mqtts://` connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTls<'a> {
    /// CA certificates the broker's certificate must chain to; `None` trusts the public
    /// web roots (enough for AWS IoT Core's ATS endpoints).
    pub ca_pem: Option<&'a str>,
    /// The client's certificate chain, for brokers that authenticate by certificate.
    pub certificate_pem: Option<&'a str>,
    /// The client certificate's private key.
    pub key_pem: Option<&'a str>,
}

impl ClientTls<'_> {
    /// A rustls client configuration (TLS 1.2 and 1.3, ring) for these settings; errors
    /// name the setting at fault with `field_prefix`.
    pub fn client_config(&self, field_prefix: &str) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        match self.ca_pem {
            Some(pem) => {
                let certificates = certificates(pem, &format!("{field_prefix}ca_certificate"))?;
                for certificate in certificates {
                    roots.add(certificate).map_err(|e| {
                        format!("{field_prefix}ca_certificate holds an unusable CA: {e}")
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots);
        let config = match (self.certificate_pem, self.key_pem) {
            (None, None) => builder.with_no_client_auth(),
            (Some(certificate), Some(key)) => {
                let chain =
                    certificates(certificate, &format!("{field_prefix}client_certificate"))?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                    format!("{field_prefix}client_key is not a PEM private key: {e}")
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "{field_prefix}client_certificate and client_key do not fit together: {e}"
                    )
                })?
            }
            _ => {
                return Err(format!(
                    "{field_prefix}client_certificate and {field_prefix}client_key go together: give both or neither"
                ));
            }
        };
        Ok(Arc::new(config))
    }
}

/// Every certificate in a PEM text; at least one.
fn certificates(pem: &str, field: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field} is not valid PEM: {e}"))?;
    if certificates.is_empty() {
        return Err(format!("{field} holds no PEM certificate"));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_urls_parse() {
        let plain = BrokerUrl::parse("mqtt://127.0.0.1:1883", "mqtt.url").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.tls),
            ("127.0.0.1", 1883, false)
        );
        let tls = BrokerUrl::parse(
            "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883/",
            "mqtt.url",
        )
        .unwrap();
        assert!(tls.tls);
        assert_eq!(
            tls.to_string(),
            "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883"
        );
        let v6 = BrokerUrl::parse("mqtt://[::1]:1883", "mqtt.url").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "mqtt://[::1]:1883");
    }

    #[test]
    fn bad_urls_name_the_field_and_the_form() {
        let error = BrokerUrl::parse("tcp://host:1883", "--mqtt").unwrap_err();
        assert!(
            error.contains("--mqtt") && error.contains("mqtts://HOST:PORT"),
            "{error}"
        );
        let error = BrokerUrl::parse("mqtt://host", "mqtt.url").unwrap_err();
        assert!(error.contains("must name a port"), "{error}");
        let error = BrokerUrl::parse("mqtt://host:x", "mqtt.url").unwrap_err();
        assert!(error.contains("not a number"), "{error}");
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let tls = ClientTls {
            ca_pem: None,
            certificate_pem: Some("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
            key_pem: None,
        };
        let error = tls.client_config("mqtt.").unwrap_err();
        assert!(error.contains("go together"), "{error}");
        let public_roots = ClientTls::default().client_config("mqtt.");
        assert!(public_roots.is_ok());
        let garbage = ClientTls {
            ca_pem: Some("not pem"),
            ..ClientTls::default()
        };
        assert!(
            garbage
                .client_config("mqtt.")
                .unwrap_err()
                .contains("mqtt.ca_certificate")
        );
    }
}
