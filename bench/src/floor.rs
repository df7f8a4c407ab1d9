//! The floor: the create calls driftless makes for the converge mix, issued
//! by a bare aws-sdk loop at the same concurrency (8 per kind, the
//! controller's default), with the same dependency (a Subnet or
//! SecurityGroup needs its Vpc's id). No Kubernetes. Two variants: the
//! creates only, and the creates plus the read of each new resource that a
//! controller observing by id needs before it can say Ready.

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use futures::{stream, StreamExt, TryStreamExt};
use tokio::sync::watch;

pub const CONCURRENCY: usize = 8;

/// Creates `n / 4` of each kind (each then read once by id, with `reads`);
/// returns the wall time and what to clean up.
pub async fn run(
    ec2: &aws_sdk_ec2::Client,
    s3: &aws_sdk_s3::Client,
    n: usize,
    run: &str,
    reads: bool,
) -> anyhow::Result<(Duration, Made)> {
    let groups = n / 4;
    let (vpc_tx, vpc_rx): (Vec<_>, Vec<_>) = (0..groups).map(|_| watch::channel(None)).unzip();
    let tags = |rt: ResourceType, name: String| {
        TagSpecification::builder()
            .resource_type(rt)
            .tags(Tag::builder().key("Name").value(name).build())
            .build()
    };
    let start = Instant::now();
    let buckets = stream::iter(0..groups)
        .map(|i| async move {
            let name = format!("{run}-floor-{i}");
            s3.create_bucket().bucket(&name).send().await?;
            s3.put_bucket_tagging()
                .bucket(&name)
                .tagging(
                    aws_sdk_s3::types::Tagging::builder()
                        .tag_set(
                            aws_sdk_s3::types::Tag::builder()
                                .key("Name")
                                .value(&name)
                                .build()?,
                        )
                        .build()?,
                )
                .send()
                .await?;
            if reads {
                s3.head_bucket().bucket(&name).send().await?;
            }
            anyhow::Ok(name)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>();
    let vpcs = stream::iter(vpc_tx.into_iter().enumerate())
        .map(|(i, tx)| async move {
            let out = ec2
                .create_vpc()
                .cidr_block("10.0.0.0/16")
                .tag_specifications(tags(ResourceType::Vpc, format!("floor-vpc-{i}")))
                .send()
                .await?;
            let id = out
                .vpc()
                .and_then(|v| v.vpc_id())
                .context("no VpcId")?
                .to_string();
            if reads {
                ec2.describe_vpcs().vpc_ids(&id).send().await?;
            }
            let _ = tx.send(Some(id.clone()));
            anyhow::Ok(id)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>();
    let vpc_id = |i: usize| {
        let mut rx = vpc_rx[i].clone();
        async move {
            let id = rx.wait_for(Option::is_some).await?.clone();
            anyhow::Ok(id.unwrap_or_default())
        }
    };
    let subnets = stream::iter(0..groups)
        .map(|i| async move {
            let vpc = vpc_id(i).await?;
            let out = ec2
                .create_subnet()
                .vpc_id(vpc)
                .cidr_block("10.0.1.0/24")
                .tag_specifications(tags(ResourceType::Subnet, format!("floor-subnet-{i}")))
                .send()
                .await?;
            let id = out
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_string();
            if reads {
                ec2.describe_subnets().subnet_ids(&id).send().await?;
            }
            anyhow::Ok(id)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>();
    let groups_ = stream::iter(0..groups)
        .map(|i| async move {
            let vpc = vpc_id(i).await?;
            let out = ec2
                .create_security_group()
                .vpc_id(vpc)
                .group_name(format!("floor-sg-{i}"))
                .description("driftless bench floor")
                .tag_specifications(tags(ResourceType::SecurityGroup, format!("floor-sg-{i}")))
                .send()
                .await?;
            let id = out.group_id().unwrap_or_default().to_string();
            if reads {
                ec2.describe_security_groups().group_ids(&id).send().await?;
            }
            anyhow::Ok(id)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>();
    let (buckets, vpcs, subnets, security_groups) =
        tokio::try_join!(buckets, vpcs, subnets, groups_)?;
    Ok((
        start.elapsed(),
        Made {
            buckets,
            vpcs,
            subnets,
            security_groups,
        },
    ))
}

/// What the floor made, deleted (untimed) so that both sides meet the same
/// amount of existing state.
pub struct Made {
    buckets: Vec<String>,
    vpcs: Vec<String>,
    subnets: Vec<String>,
    security_groups: Vec<String>,
}

impl Made {
    pub async fn delete(
        mut self,
        ec2: &aws_sdk_ec2::Client,
        s3: &aws_sdk_s3::Client,
    ) -> anyhow::Result<()> {
        each(std::mem::take(&mut self.buckets), |b| async move {
            s3.delete_bucket().bucket(b).send().await?;
            Ok(())
        })
        .await?;
        self.delete_ec2(ec2).await
    }

    async fn delete_ec2(self, ec2: &aws_sdk_ec2::Client) -> anyhow::Result<()> {
        each(self.security_groups, |id| async move {
            ec2.delete_security_group().group_id(id).send().await?;
            Ok(())
        })
        .await?;
        each(self.subnets, |id| async move {
            ec2.delete_subnet().subnet_id(id).send().await?;
            Ok(())
        })
        .await?;
        each(self.vpcs, |id| async move {
            ec2.delete_vpc().vpc_id(id).send().await?;
            Ok(())
        })
        .await
    }
}

/// Runs `f` on every id, 16 at a time.
async fn each<F, Fut>(ids: Vec<String>, f: F) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    stream::iter(ids.into_iter().map(f))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The EC2 resources driftless made for objects of namespaces starting with
/// `prefix` (owner tag `<namespace>/<name>`), deleted: the untimed cleanup
/// of scenarios too large to delete through the controller.
pub async fn delete_owned_in(ec2: &aws_sdk_ec2::Client, prefix: &str) -> anyhow::Result<usize> {
    let managed = || {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:driftless.dev/managed-by")
            .values("driftless")
            .build()
    };
    let ours = |tags: &[Tag]| {
        tags.iter().any(|t| {
            t.key() == Some("driftless.dev/owner") && t.value().unwrap_or("").starts_with(prefix)
        })
    };
    let mut made = Made {
        buckets: Vec::new(),
        vpcs: Vec::new(),
        subnets: Vec::new(),
        security_groups: Vec::new(),
    };
    let mut pages = ec2
        .describe_security_groups()
        .filters(managed())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for g in page?.security_groups() {
            if ours(g.tags()) {
                made.security_groups.extend(g.group_id().map(String::from));
            }
        }
    }
    let mut pages = ec2
        .describe_subnets()
        .filters(managed())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for s in page?.subnets() {
            if ours(s.tags()) {
                made.subnets.extend(s.subnet_id().map(String::from));
            }
        }
    }
    let mut pages = ec2
        .describe_vpcs()
        .filters(managed())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for v in page?.vpcs() {
            if ours(v.tags()) {
                made.vpcs.extend(v.vpc_id().map(String::from));
            }
        }
    }
    let count = made.vpcs.len() + made.subnets.len() + made.security_groups.len();
    made.delete_ec2(ec2).await?;
    Ok(count)
}

/// Makes the cloud resources of an EC2 mix (`world::ec2_mix`) directly,
/// tagged with the owner tags driftless itself writes, so that the
/// controller adopts each one instead of creating it: the path a
/// controller takes after a cluster rebuild, and the only way to have
/// 10,000 active objects in minutes on two shared cores (created through
/// the controller, the Subnets and SecurityGroups of a mix this large come
/// at about 2 per second: see BENCHMARKS.md).
pub async fn premake(
    ec2: &aws_sdk_ec2::Client,
    objects: &[serde_json::Value],
) -> anyhow::Result<()> {
    let groups: Vec<&[serde_json::Value]> = objects.chunks(3).collect();
    stream::iter(groups)
        .map(|group| premake_group(ec2, group))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// A Vpc, then the Subnet and SecurityGroup in it (as many as `group` has).
async fn premake_group(
    ec2: &aws_sdk_ec2::Client,
    group: &[serde_json::Value],
) -> anyhow::Result<()> {
    let owner = |o: &serde_json::Value, rt: ResourceType| {
        let meta = &o["metadata"];
        let owner = format!(
            "{}/{}",
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str().unwrap_or("")
        );
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        TagSpecification::builder()
            .resource_type(rt)
            .tags(tag("driftless.dev/managed-by", "driftless"))
            .tags(tag("driftless.dev/kind", o["kind"].as_str().unwrap_or("")))
            .tags(tag("driftless.dev/owner", &owner))
            .build()
    };
    let spec = |o: &serde_json::Value, field: &str| {
        o["spec"]["forProvider"][field]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let vpc = ec2
        .create_vpc()
        .cidr_block(spec(&group[0], "cidrBlock"))
        .tag_specifications(owner(&group[0], ResourceType::Vpc))
        .send()
        .await?;
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .context("CreateVpc returned no id")?;
    for o in &group[1..] {
        match o["kind"].as_str() {
            Some("Subnet") => {
                ec2.create_subnet()
                    .vpc_id(vpc_id)
                    .cidr_block(spec(o, "cidrBlock"))
                    .tag_specifications(owner(o, ResourceType::Subnet))
                    .send()
                    .await?;
            }
            Some("SecurityGroup") => {
                ec2.create_security_group()
                    .vpc_id(vpc_id)
                    .group_name(o["metadata"]["name"].as_str().unwrap_or(""))
                    .description(spec(o, "description"))
                    .tag_specifications(owner(o, ResourceType::SecurityGroup))
                    .send()
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}
