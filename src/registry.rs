//! The one registry of provider kinds. Every caller (the controller, CRD
//! generation, offline validation, push mode, GitSync's staging) asks it,
//! so adding a provider or a kind changes this file and nothing else in
//! the runtime.

use std::sync::Arc;
use std::time::Duration;

use driftless_aws::Aws;
use driftless_provider::{CallCounter, Connector, KindVisitor, ManagedKind};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, Resource};

/// The providers, with their cloud clients' settings.
pub struct Providers {
    aws: Arc<Aws>,
}

impl Providers {
    /// For cloud calls: every call is counted into `calls`.
    pub fn new(calls: Arc<CallCounter>) -> Self {
        Self {
            aws: Arc::new(Aws::new(calls)),
        }
    }

    /// For the controller: batched observations live one poll interval.
    pub fn polling(calls: Arc<CallCounter>, poll_interval: Duration) -> Self {
        Self {
            aws: Arc::new(Aws::new(calls).with_observation_max_age(poll_interval)),
        }
    }

    /// For what makes no cloud call (CRDs, schemas, references).
    pub fn offline() -> Self {
        Self {
            aws: Arc::new(Aws::default()),
        }
    }

    /// Visits every managed kind of every provider.
    pub fn visit(&self, visitor: &mut impl KindVisitor) {
        driftless_aws::visit_kinds(&self.aws, visitor);
    }
}

/// The name of every managed kind, in the providers' order.
pub fn managed_kinds() -> Vec<String> {
    struct Names(Vec<String>);
    impl KindVisitor for Names {
        fn visit<K: ManagedKind>(&mut self, _: Arc<dyn Connector<K>>) {
            self.0.push(K::kind(&()).into_owned());
        }
    }
    let mut names = Names(Vec::new());
    Providers::offline().visit(&mut names);
    names.0
}

/// The CRDs of the providers' own configuration kinds (ProviderConfig).
pub fn config_crds() -> Vec<CustomResourceDefinition> {
    vec![driftless_aws::ProviderConfig::crd()]
}

/// Whether `(api_version, kind)` is a provider's configuration kind, which
/// GitSync applies before any managed resource (they need it to connect).
pub fn is_provider_config(api_version: &str, kind: &str) -> bool {
    type Pc = driftless_aws::ProviderConfig;
    api_version == Pc::api_version(&()) && kind == Pc::kind(&())
}
