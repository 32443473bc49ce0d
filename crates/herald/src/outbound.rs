//! Requests the hub makes itself — webhooks and proxied sends — over `http://` or `https://`.
//!
//! TLS is rustls with the system's trusted roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are
//! honoured), so an internal CA is trusted by adding it to the host, not to Herald.

use std::sync::{Arc, OnceLock};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls;

/// The connector every outbound client shares: its root store is read once.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

fn connector() -> Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let ring = || Arc::new(rustls::crypto::ring::default_provider());
            let builder = HttpsConnectorBuilder::new().with_provider_and_native_roots(ring()).unwrap_or_else(|error| {
                tracing::warn!(%error, "No trusted root certificates found: https:// upstreams and webhooks will fail.");
                let config = rustls::ClientConfig::builder_with_provider(ring())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            });
            builder.https_or_http().enable_http1().build()
        })
        .clone()
}

/// An HTTP/1.1 client for `http://` and `https://` URLs with request bodies of type `B`.
pub(crate) fn client<B>() -> Client<Connector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build(connector())
}
