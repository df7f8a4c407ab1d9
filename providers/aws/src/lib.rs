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
pub use ec2::elastic_ip::ElasticIp;
pub use ec2::instance::Instance;
pub use ec2::internet_gateway::InternetGateway;
pub use ec2::key_pair::KeyPair;
pub use ec2::nat_gateway::NatGateway;
pub use ec2::route_table::RouteTable;
pub use ec2::security_group::SecurityGroup;
pub use ec2::subnet::Subnet;
pub use ec2::volume::Volume;
pub use ec2::volume_attachment::VolumeAttachment;
pub use ec2::vpc::Vpc;
pub use s3::bucket::Bucket;

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

/// Every kind AWS serves. Adding a kind adds one line here.
pub fn visit_kinds(aws: &Arc<Aws>, visitor: &mut impl KindVisitor) {
    visitor.visit::<Bucket>(aws.clone());
    visitor.visit::<Vpc>(aws.clone());
    visitor.visit::<Subnet>(aws.clone());
    visitor.visit::<SecurityGroup>(aws.clone());
    visitor.visit::<Instance>(aws.clone());
    visitor.visit::<InternetGateway>(aws.clone());
    visitor.visit::<ElasticIp>(aws.clone());
    visitor.visit::<KeyPair>(aws.clone());
    visitor.visit::<NatGateway>(aws.clone());
    visitor.visit::<Volume>(aws.clone());
    visitor.visit::<VolumeAttachment>(aws.clone());
    visitor.visit::<RouteTable>(aws.clone());
}
