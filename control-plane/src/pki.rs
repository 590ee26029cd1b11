//! The control plane's certificate authority and the QUIC server certificate it signs
//! (rcgen), and client certificates for brokers that authenticate by certificate. Nodes
//! trust only this CA, which reaches them in their node config.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Common name of the CA.
const CA_NAME: &str = "Edgewise control plane CA";

/// PEM texts of a certificate and its private key.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
}

impl CertifiedKey {
    /// The certificate's DER bytes (the first certificate of the PEM).
    pub fn certificate_der(&self) -> Result<Vec<u8>, crate::error::Error> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.certificate_pem.as_bytes())
            .map(|der| der.to_vec())
            .map_err(|e| crate::error::Error::Internal(format!("certificate PEM: {e}")))
    }
}

/// The CA's parameters; rebuilt identically whenever the CA signs.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Creates a new CA.
pub fn create_ca() -> Result<CertifiedKey, rcgen::Error> {
    let key = KeyPair::generate()?;
    let certificate = ca_params()?.self_signed(&key)?;
    Ok(CertifiedKey {
        certificate_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a server certificate for `names` (DNS names or IP addresses), signed by `ca`.
pub fn issue_server_certificate(
    ca: &CertifiedKey,
    names: &[String],
) -> Result<CertifiedKey, rcgen::Error> {
    issue(
        ca,
        names,
        "Edgewise artifact server",
        ExtendedKeyUsagePurpose::ServerAuth,
    )
}

/// Issues a client certificate whose common name is `name` (a device id, or the control
/// plane's MQTT user), signed by `ca`. Brokers that take the certificate's identity as
/// the username (Mosquitto's `use_identity_as_username`) see `name`.
pub fn issue_client_certificate(
    ca: &CertifiedKey,
    name: &str,
) -> Result<CertifiedKey, rcgen::Error> {
    issue(ca, &[], name, ExtendedKeyUsagePurpose::ClientAuth)
}

fn issue(
    ca: &CertifiedKey,
    names: &[String],
    common_name: &str,
    purpose: ExtendedKeyUsagePurpose,
) -> Result<CertifiedKey, rcgen::Error> {
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&ca.key_pem)?);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages.push(KeyUsagePurpose::DigitalSignature);
    params.extended_key_usages.push(purpose);
    let certificate = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKey {
        certificate_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    })
}
