//! How subscribers reach the server: plain HTTP/1.1 (the default), HTTP/1.1 over TLS, or HTTP/2
//! in cleartext (prior knowledge) or over TLS (ALPN), one or many streams per connection. The
//! server's certificate is pinned: a bench server's is self-signed, and loopback has no CA.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Plain HTTP/1.1, one stream per connection.
    #[default]
    H1,
    /// HTTP/1.1 over TLS.
    H1Tls,
    /// HTTP/2 over cleartext TCP with prior knowledge.
    H2c,
    /// HTTP/2 over TLS, negotiated by ALPN.
    H2Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::H1 => "h1",
            Transport::H1Tls => "h1-tls",
            Transport::H2c => "h2c",
            Transport::H2Tls => "h2-tls",
        }
    }

    pub fn is_h2(self) -> bool {
        matches!(self, Transport::H2c | Transport::H2Tls)
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Transport::H1Tls | Transport::H2Tls)
    }
}

#[derive(Debug, Clone, Args)]
pub struct TransportArgs {
    /// How subscribers connect.
    #[arg(long, value_enum, default_value = "h1")]
    pub transport: Transport,
    /// HTTP/2 streams multiplexed on one connection (at most the server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS, 200 for Herald).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub streams_per_conn: u32,
    /// The server's PEM certificate, the only one TLS transports accept.
    #[arg(long)]
    pub tls_pin: Option<PathBuf>,
}

impl Default for TransportArgs {
    fn default() -> Self {
        TransportArgs { transport: Transport::H1, streams_per_conn: 1, tls_pin: None }
    }
}

impl TransportArgs {
    /// The TLS client of a TLS transport, offering only the transport's protocol by ALPN.
    pub fn connector(&self) -> Result<Option<TlsConnector>, String> {
        if !self.transport.is_tls() {
            return Ok(None);
        }
        let path = self.tls_pin.as_ref().ok_or("a TLS transport needs --tls-pin <server cert>")?;
        let pinned = CertificateDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let provider = Arc::new(crypto::ring::default_provider());
        let verifier = Arc::new(Pinned { cert: pinned, provider: provider.clone() });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![if self.transport.is_h2() { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
        Ok(Some(TlsConnector::from(Arc::new(config))))
    }

    /// The worker's arguments that repeat these.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--transport".into(),
            self.transport.name().into(),
            "--streams-per-conn".into(),
            self.streams_per_conn.to_string(),
        ];
        if let Some(pin) = &self.tls_pin {
            args.extend(["--tls-pin".into(), pin.display().to_string()]);
        }
        args
    }
}

/// Accepts exactly one certificate, and checks the handshake's signatures with its key.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_arguments_parse_back() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            t: TransportArgs,
        }
        let t = TransportArgs { transport: Transport::H2Tls, streams_per_conn: 100, tls_pin: Some("c.pem".into()) };
        let back = <Cli as clap::Parser>::try_parse_from(std::iter::once("x".to_string()).chain(t.to_args())).unwrap();
        assert_eq!((back.t.transport, back.t.streams_per_conn), (Transport::H2Tls, 100));
        assert_eq!(back.t.tls_pin, t.tls_pin);
        assert!(<Cli as clap::Parser>::try_parse_from(["x", "--streams-per-conn", "0"]).is_err());
    }

    #[test]
    fn tls_needs_a_pin() {
        let t = TransportArgs { transport: Transport::H1Tls, streams_per_conn: 1, tls_pin: None };
        assert!(t.connector().is_err());
        assert!(TransportArgs::default().connector().unwrap().is_none());
    }
}
