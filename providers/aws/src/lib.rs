//! AWS for driftless: the ProviderConfig, the SDK session it yields, and one
//! file per managed kind (`s3/bucket.rs`, `ec2/vpc.rs`, ...).

mod calls;
pub mod config;
pub mod ec2;
mod errors;
pub mod s3;

use std::sync::Arc;

use driftless_provider::{CloudError, ConfigSource, Connector, External, KindVisitor, ManagedKind};

pub use config::{Aws, AwsSession, ProviderConfig};

/// A kind this provider serves: how to build its cloud client from a session.
pub(crate) trait AwsKind: ManagedKind {
    fn external(session: &AwsSession, spec: &Self::ForProvider) -> Arc<dyn External<Self>>;
}

#[async_trait::async_trait]
impl<K: AwsKind> Connector<K> for Aws {
    async fn connect(
        &self,
        source: &ConfigSource,
        provider_config: &str,
        namespace: &str,
        spec: &K::ForProvider,
    ) -> Result<Arc<dyn External<K>>, CloudError> {
        let session = self.session(source, provider_config, namespace).await?;
        Ok(K::external(&session, spec))
    }
}

/// Re-exports each kind and lists it in [`visit_kinds`], in this order.
macro_rules! kinds {
    ($($service:ident::$file:ident::$kind:ident),* $(,)?) => {
        $(pub use $service::$file::$kind;)*

        /// Every kind AWS serves. Adding a kind adds one line to `kinds!`.
        pub fn visit_kinds(aws: &Arc<Aws>, visitor: &mut impl KindVisitor) {
            $(visitor.visit::<$kind>(aws.clone());)*
        }
    };
}

kinds!(
    s3::bucket::Bucket,
    ec2::vpc::Vpc,
    ec2::subnet::Subnet,
    ec2::security_group::SecurityGroup,
    ec2::instance::Instance,
    ec2::internet_gateway::InternetGateway,
    ec2::elastic_ip::ElasticIp,
    ec2::key_pair::KeyPair,
    ec2::nat_gateway::NatGateway,
    ec2::volume::Volume,
    ec2::volume_attachment::VolumeAttachment,
    ec2::route_table::RouteTable,
);
