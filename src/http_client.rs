//! Outgoing HTTP: the one client builder, for notifications (`ops::notify`)
//! and Helm repositories (`render::chart_repo`). Its own module so that
//! neither engine imports the other.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An outgoing HTTP/1 client, HTTPS or plain HTTP, for request bodies `B`.
pub type Client<B> =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, B>;

/// A [`Client`] that trusts the system's roots (so a private CA added to the
/// image works). Fails only when those roots cannot be loaded.
pub fn client<B>() -> Result<Client<B>, String>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .try_with_platform_verifier()
        .map_err(|e| format!("cannot load the platform's TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https))
}
