//! What an EC2 kind implements: [`Described`] for its SDK type (mostly
//! through [`described!`]) and [`Ec2Kind`] for the kind; the [`External`]
//! impl shared by every EC2 kind.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, Tag};
use driftless_provider::{
    CloudError, Created, Deletion, External, ManagedKind, Observation, Owned, Target,
};

use super::Ec2;

/// An EC2 resource as a describe call returns it. [`described!`] implements
/// it for the usual describe call.
#[async_trait]
pub(crate) trait Described: Clone + Send + Sync + 'static {
    /// How messages name the kind, e.g. `VPC`.
    const WHAT: &'static str;
    /// The page size of [`Described::list`]: the largest its call allows.
    const PAGE_SIZE: i32 = super::PAGE_SIZE;
    fn id(&self) -> &str;
    fn tags(&self) -> &[Tag];
    /// Listed but no longer a resource (a terminated instance).
    fn gone(&self) -> bool {
        false
    }
    /// The cloud's word for its state, and whether that means ready.
    fn state(&self) -> (String, bool) {
        ("available".to_string(), true)
    }
    /// Why it is not ready, when [`Self::state`] says so: the Ready message.
    fn not_ready_because(&self) -> Option<String> {
        let (state, ready) = self.state();
        (!ready && !state.is_empty()).then(|| format!("{} {} is {state}", Self::WHAT, self.id()))
    }
    /// Why a delete must wait without a call (an instance shutting down).
    fn not_deletable_yet(&self) -> Option<String> {
        None
    }
    /// What keeps `id` from being deleted, by name (asked on a dependency error).
    async fn dependents(_ec2: &Ec2, _id: &str) -> Result<Vec<String>, CloudError> {
        Ok(Vec::new())
    }
    /// Every resource matching `filters`, all pages.
    async fn list(ec2: &aws_sdk_ec2::Client, filters: Vec<Filter>)
        -> Result<Vec<Self>, CloudError>;
    /// One resource by id; `None` when it does not exist.
    async fn describe_one(ec2: &aws_sdk_ec2::Client, id: &str) -> Result<Option<Self>, CloudError>;
}

/// Implements [`Described`] for an SDK type listed by one paginated
/// `describe_*` call: its id getter, the call, the id filter and the output
/// list; `state` when its `state()` says `available` once ready; the
/// [`Described::dependents`] function, or extra items in braces.
macro_rules! described {
    (@state) => {
        fn state(&self) -> (String, bool) {
            let state = self
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let ready = state == "available";
            (state, ready)
        }
    };

    ($ty:ty, $what:literal, $id:ident, $describe:ident, $ids:ident, $out:ident $(, $state:ident)? $(, dependents $dependents:path)? $({ $($extra:tt)* })?) => {
        #[::async_trait::async_trait]
        impl $crate::ec2::Described for $ty {
            const WHAT: &'static str = $what;

            fn id(&self) -> &str {
                self.$id().unwrap_or_default()
            }

            fn tags(&self) -> &[::aws_sdk_ec2::types::Tag] {
                <$ty>::tags(self)
            }

            $(described!(@$state);)?
            $(
                async fn dependents(
                    ec2: &$crate::ec2::Ec2,
                    id: &str,
                ) -> Result<Vec<String>, ::driftless_provider::CloudError> {
                    $dependents(ec2, id).await
                }
            )?
            $($($extra)*)?

            async fn list(
                ec2: &::aws_sdk_ec2::Client,
                filters: Vec<::aws_sdk_ec2::types::Filter>,
            ) -> Result<Vec<Self>, ::driftless_provider::CloudError> {
                ec2.$describe()
                    .set_filters(Some(filters))
                    .into_paginator()
                    .page_size(<Self as $crate::ec2::Described>::PAGE_SIZE)
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err($crate::errors::cloud_error)
            }

            async fn describe_one(
                ec2: &::aws_sdk_ec2::Client,
                id: &str,
            ) -> Result<Option<Self>, ::driftless_provider::CloudError> {
                match ec2.$describe().$ids(id).send().await {
                    Ok(out) => Ok(out.$out().first().cloned()),
                    Err(e) if $crate::ec2::is_not_found(&e) => Ok(None),
                    Err(e) => Err($crate::errors::cloud_error(e)),
                }
            }
        }
    };
}
pub(crate) use described;

/// What [`Ec2Kind::observe`] returns.
pub(crate) type Observed<K> = Result<Observation<K>, CloudError>;

/// An EC2 kind states only what differs between kinds: how it compares,
/// creates, updates and deletes the resource [`Ec2`] found for it. Finding
/// it, write marks, listing by tags and refusing others' resources are
/// shared, in the [`External`] impl below.
#[async_trait]
pub(crate) trait Ec2Kind: ManagedKind {
    type Sdk: Described;
    /// Compares `r`, the resource found for `t`, with the spec.
    async fn observe(ec2: &Ec2, t: &Target<'_, Self>, r: &Self::Sdk) -> Observed<Self>;
    async fn create(ec2: &Ec2, t: &Target<'_, Self>) -> Result<Created, CloudError>;
    /// Makes `fields` of `r` match the spec (`r` is marked written meanwhile).
    async fn update(
        ec2: &Ec2,
        t: &Target<'_, Self>,
        r: &Self::Sdk,
        fields: Vec<Self::Field>,
    ) -> Result<(), CloudError>;
    /// Deletes `r` (marked written), typically through [`Ec2::deletion`].
    async fn delete(ec2: &Ec2, r: &Self::Sdk) -> Result<Deletion, CloudError>;
}

impl<K: Ec2Kind> crate::AwsKind for K {
    fn external(session: &crate::AwsSession, _spec: &K::ForProvider) -> Arc<dyn External<K>> {
        Arc::new(Ec2::new(session))
    }
}

#[async_trait]
impl<K: Ec2Kind> External<K> for Ec2 {
    async fn observe(&self, t: &Target<'_, K>) -> Result<Observation<K>, CloudError> {
        match self.find::<K::Sdk, K>(t).await? {
            Some(r) => {
                let mut observed = K::observe(self, t, &r).await?;
                if !observed.ready && observed.not_ready.is_none() {
                    observed.not_ready = r.not_ready_because();
                }
                (observed.duplicates, observed.proven_duplicates) =
                    self.duplicates_of::<K::Sdk>(t.identity, &r);
                Ok(observed)
            }
            None => Ok(Observation::absent()),
        }
    }

    async fn create(&self, t: &Target<'_, K>) -> Result<Created, CloudError> {
        K::create(self, t).await
    }

    async fn update(&self, t: &Target<'_, K>, observed: &Observation<K>) -> Result<(), CloudError> {
        let Some(r) = self.find::<K::Sdk, K>(t).await? else {
            return Ok(()); // gone since observe: the next observe creates it
        };
        let _written = self.writing::<K::Sdk>(r.id());
        let fields = observed.diff.iter().map(|d| d.field).collect();
        K::update(self, t, &r, fields).await
    }

    async fn delete(&self, t: &Target<'_, K>) -> Result<Deletion, CloudError> {
        let Some(r) = self.find::<K::Sdk, K>(t).await? else {
            return Ok(Deletion::Done);
        };
        if let Some(why) = r.not_deletable_yet() {
            return Ok(Deletion::Waiting(why));
        }
        let _written = self.writing::<K::Sdk>(r.id());
        K::delete(self, &r).await
    }

    async fn delete_duplicate(&self, id: &str) -> Result<Deletion, CloudError> {
        self.delete_by_id::<K>(id).await
    }

    async fn list_owned(&self) -> Result<Vec<Owned>, CloudError> {
        Ec2::list_owned::<K::Sdk>(self).await
    }
}
