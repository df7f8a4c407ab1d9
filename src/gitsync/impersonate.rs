//! A GitSync acts with the rights it is given: a client that impersonates
//! its ServiceAccount (Flux's model), over the controller's own connection.

use std::collections::HashMap;
use std::sync::Mutex;

use http::{HeaderValue, Request};
use kube::client::Body;

/// `system:serviceaccount:<namespace>:<name>`, the user a ServiceAccount is.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// `client`, sending every request as `user` (the `Impersonate-User`
/// header; the API server adds the ServiceAccount's groups). The controller
/// needs the `impersonate` verb on serviceaccounts.
pub fn impersonating(client: &kube::Client, user: &str) -> Result<kube::Client, String> {
    let value =
        HeaderValue::from_str(user).map_err(|_| format!("{user:?} is not a valid user name"))?;
    let inner = client.clone();
    let service = tower::service_fn(move |mut request: Request<Body>| {
        let inner = inner.clone();
        request
            .headers_mut()
            .insert("impersonate-user", value.clone());
        async move { inner.send(request).await }
    });
    Ok(kube::Client::new(
        service,
        client.default_namespace().to_string(),
    ))
}

/// Impersonating clients, one per user, made once.
#[derive(Default)]
pub struct Clients {
    by_user: Mutex<HashMap<String, kube::Client>>,
}

impl Clients {
    /// The client acting as `user`.
    pub fn get(&self, client: &kube::Client, user: &str) -> Result<kube::Client, String> {
        let mut map = self.by_user.lock().expect("clients poisoned");
        if let Some(c) = map.get(user) {
            return Ok(c.clone());
        }
        let c = impersonating(client, user)?;
        map.insert(user.to_string(), c.clone());
        Ok(c)
    }
}
