//! `SecurityGroup` (aws.driftless.dev/v1alpha1): an EC2 security group and
//! its rules, reconciled as a set: a rule missing in AWS is authorized, a rule
//! AWS has and the spec does not is revoked.
//!
//! Egress is managed only when `egress` is set: AWS gives every new group an
//! allow-all egress rule, and a spec without `egress` keeps whatever egress the
//! group has. `egress: []` removes every egress rule, that default included.

use std::collections::BTreeSet;
use std::fmt;

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range, PrefixListId, UserIdGroupPair};

use super::label;
use super::prelude::*;
use super::vpc::VpcReference;
use crate::errors::code_of;

/// One rule. Each CIDR block and group it names is one permission in AWS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(self.protocol in ['tcp', 'udp', 'icmp', 'icmpv6', '6', '17', '1', '58']) || (has(self.fromPort) && has(self.toPort))",
     "message": "fromPort and toPort are required for tcp, udp, icmp and icmpv6 rules"},
    {"rule": "(has(self.cidrBlocks) && size(self.cidrBlocks) > 0) || (has(self.ipv6CidrBlocks) && size(self.ipv6CidrBlocks) > 0) || (has(self.securityGroupIds) && size(self.securityGroupIds) > 0)",
     "message": "a rule needs at least one of cidrBlocks, ipv6CidrBlocks or securityGroupIds"}
]))]
pub struct SecurityGroupRule {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `-1` (all traffic) or an IP protocol number.
    #[schemars(length(max = 6))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.matches('^(tcp|udp|icmp|icmpv6|-1|all|[0-9]{1,3})$')",
        "message": "protocol must be tcp, udp, icmp, icmpv6, -1 (all traffic) or an IP protocol number"
    }]))]
    pub protocol: String,
    /// First port (tcp, udp), or ICMP type (-1: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1, max = 65535))]
    pub from_port: Option<i32>,
    /// Last port (tcp, udp), or ICMP code (-1: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1, max = 65535))]
    pub to_port: Option<i32>,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub cidr_blocks: Vec<String>,
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub ipv6_cidr_blocks: Vec<String>,
    /// Security groups (by id) whose members the rule admits.
    #[serde(default)]
    #[schemars(length(max = 50))]
    pub security_group_ids: Vec<String>,
}

/// The desired state of a security group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = VpcReference::required)]
pub struct SecurityGroupParameters {
    #[serde(flatten)]
    pub vpc: VpcReference,
    /// The group's name (default: `metadata.name`; compared only when set). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!self.startsWith('sg-')", "message": "groupName must not start with sg-"
    }]))]
    pub group_name: Option<String>,
    /// Free text (default: `managed by driftless`; compared only when set). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub description: Option<String>,
    /// Inbound rules: exactly these (none when empty).
    #[serde(default)]
    #[schemars(length(max = 60))]
    pub ingress: Vec<SecurityGroupRule>,
    /// Outbound rules: exactly these when set; unset leaves egress alone
    /// (AWS's default allows all outbound traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 60))]
    pub egress: Option<Vec<SecurityGroupRule>>,
    /// Tags of the group. driftless adds its own `driftless.dev/*` owner tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: BTreeMap<String, String>,
}

observation! {
    /// What AWS reports about the security group.
    pub struct SecurityGroupObservation {
        security_group_id: String,
        group_name: String,
        vpc_id: String,
        arn: String,
    }
}

field_keys! {
    /// What a security group's observation compares.
    pub enum SecurityGroupField {
        VpcId = "vpcId" immutable,
        GroupName = "groupName" immutable,
        Description = "description" immutable,
        Ingress = "ingress",
        Egress = "egress",
        Tags = "tags",
    }
}

managed_resource! {
    /// An EC2 security group with its ingress and egress rules. Its id is
    /// recorded in the `driftless.dev/external-name` annotation; set that
    /// annotation by hand to import an existing group.
    kind SecurityGroup("SecurityGroup"), spec SecurityGroupSpec, status SecurityGroupStatus("SecurityGroupStatus"),
    group "aws.driftless.dev", category "aws",
    for_provider SecurityGroupParameters, at_provider SecurityGroupObservation,
    fields SecurityGroupField,
    references(vpc),
}

described!(sdk::SecurityGroup, "security group", group_id, describe_security_groups, group_ids, security_groups {
    /// Instances, interfaces, and groups whose rules name it.
    async fn dependents(ec2: &Ec2, id: &str) -> Result<Vec<String>, CloudError> {
        let mut found = ec2.instances_where(filter("instance.group-id", [id])).await?;
        found.extend(ec2.interfaces_where(filter("group-id", [id])).await?);
        for key in ["ip-permission.group-id", "egress.ip-permission.group-id"] {
            for g in Self::list(&ec2.client, vec![filter(key, [id])]).await? {
                let name = format!(
                    "{} whose rules name it",
                    label("security group", g.id(), g.tags())
                );
                if g.id() != id && !found.contains(&name) {
                    found.push(name);
                }
            }
        }
        Ok(found)
    }
});

/// One normalized permission: a protocol, a port range and one source.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    protocol: String,
    ports: Option<(i32, i32)>,
    source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Cidr(String),
    Ipv6(String),
    Group(String),
    PrefixList(String),
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = if self.protocol == "-1" {
            "all"
        } else {
            &self.protocol
        };
        match self.ports {
            Some((from, to)) if from == to => write!(f, "{proto} {from}")?,
            Some((from, to)) => write!(f, "{proto} {from}-{to}")?,
            None => write!(f, "{proto}")?,
        }
        match &self.source {
            Source::Cidr(c) | Source::Ipv6(c) => write!(f, " {c}"),
            Source::Group(g) => write!(f, " group {g}"),
            Source::PrefixList(p) => write!(f, " prefix list {p}"),
        }
    }
}

/// Names and numbers of the same protocol compare equal; `all` is `-1`.
fn normalized(p: &str) -> String {
    match p.to_ascii_lowercase().as_str() {
        "all" | "-1" => "-1".into(),
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "icmpv6".into(),
        other => other.into(),
    }
}

/// Only these protocols have ports (or ICMP type and code).
fn ports(protocol: &str, from: Option<i32>, to: Option<i32>) -> Option<(i32, i32)> {
    match protocol {
        "tcp" | "udp" | "icmp" | "icmpv6" => Some((from.unwrap_or(-1), to.unwrap_or(-1))),
        _ => None,
    }
}

/// One permission per source of a rule.
fn expand(
    protocol: &str,
    from: Option<i32>,
    to: Option<i32>,
    sources: impl Iterator<Item = Source>,
) -> impl Iterator<Item = Permission> {
    let protocol = normalized(protocol);
    let ports = ports(&protocol, from, to);
    sources.map(move |source| Permission {
        protocol: protocol.clone(),
        ports,
        source,
    })
}

fn desired(rules: &[SecurityGroupRule]) -> BTreeSet<Permission> {
    let expanded = rules.iter().map(|r| {
        let sources = r.cidr_blocks.iter().cloned().map(Source::Cidr);
        let sources = sources.chain(r.ipv6_cidr_blocks.iter().cloned().map(Source::Ipv6));
        let sources = sources.chain(r.security_group_ids.iter().cloned().map(Source::Group));
        expand(&r.protocol, r.from_port, r.to_port, sources)
    });
    expanded.flatten().collect()
}

fn observed(perms: &[IpPermission]) -> BTreeSet<Permission> {
    let expanded = perms.iter().map(|p| {
        let ranges = p.ip_ranges().iter().filter_map(IpRange::cidr_ip);
        let sources = ranges.map(|c| Source::Cidr(c.into()));
        let ipv6 = p.ipv6_ranges().iter().filter_map(Ipv6Range::cidr_ipv6);
        let sources = sources.chain(ipv6.map(|c| Source::Ipv6(c.into())));
        let groups = p
            .user_id_group_pairs()
            .iter()
            .filter_map(UserIdGroupPair::group_id);
        let sources = sources.chain(groups.map(|g| Source::Group(g.into())));
        let lists = p
            .prefix_list_ids()
            .iter()
            .filter_map(PrefixListId::prefix_list_id);
        let sources = sources.chain(lists.map(|l| Source::PrefixList(l.into())));
        let protocol = p.ip_protocol().unwrap_or("-1");
        expand(protocol, p.from_port(), p.to_port(), sources)
    });
    expanded.flatten().collect()
}

fn ip_permission(p: &Permission) -> IpPermission {
    let b = IpPermission::builder()
        .ip_protocol(&p.protocol)
        .set_from_port(p.ports.map(|(from, _)| from))
        .set_to_port(p.ports.map(|(_, to)| to));
    match &p.source {
        Source::Cidr(c) => b.ip_ranges(IpRange::builder().cidr_ip(c).build()),
        Source::Ipv6(c) => b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build()),
        Source::Group(g) => b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build()),
        Source::PrefixList(id) => {
            b.prefix_list_ids(PrefixListId::builder().prefix_list_id(id).build())
        }
    }
    .build()
}

fn rules_diff(
    field: SecurityGroupField,
    have: &BTreeSet<Permission>,
    want: &BTreeSet<Permission>,
) -> Option<FieldDiff<SecurityGroupField>> {
    let show = |s: &BTreeSet<Permission>| s.iter().map(ToString::to_string).collect::<Vec<_>>();
    (have != want).then(|| FieldDiff::new(field, show(have), show(want)))
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Ingress,
    Egress,
}

/// One rules call; the four differ only in their builder's type. The
/// error says whether it is `InvalidPermission.NotFound`.
macro_rules! rules_call {
    ($ec2:ident.$call:ident($id:expr, $permissions:expr)) => {
        $ec2.client
            .$call()
            .group_id($id)
            .set_ip_permissions(Some($permissions))
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                let gone = code_of(&e) == Some("InvalidPermission.NotFound");
                (gone, cloud_error(e))
            })
    };
}

impl Ec2 {
    /// Authorizes what is missing (first, so that a changed rule never
    /// leaves a gap), then revokes what is extra.
    async fn sync_rules(
        &self,
        id: &str,
        direction: Direction,
        have: &BTreeSet<Permission>,
        want: &BTreeSet<Permission>,
    ) -> Result<(), CloudError> {
        let add: Vec<IpPermission> = want.difference(have).map(ip_permission).collect();
        let remove: Vec<IpPermission> = have.difference(want).map(ip_permission).collect();
        if !add.is_empty() {
            let sent = match direction {
                Direction::Ingress => rules_call!(self.authorize_security_group_ingress(id, add)),
                Direction::Egress => rules_call!(self.authorize_security_group_egress(id, add)),
            };
            sent.map_err(|(_, e)| e)?;
        }
        if !remove.is_empty() {
            let sent = match direction {
                Direction::Ingress => rules_call!(self.revoke_security_group_ingress(id, remove)),
                Direction::Egress => rules_call!(self.revoke_security_group_egress(id, remove)),
            };
            match sent {
                // Already gone: what revoke wanted.
                Ok(()) | Err((true, _)) => {}
                Err((false, e)) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Ec2Kind for SecurityGroup {
    type Sdk = sdk::SecurityGroup;

    async fn observe(
        _ec2: &Ec2,
        t: &Target<'_, SecurityGroup>,
        sg: &sdk::SecurityGroup,
    ) -> Observed<SecurityGroup> {
        let id = sg.id().to_string();
        let vpc_id = sg.vpc_id().unwrap_or_default();
        let name = sg.group_name().unwrap_or_default();
        let mut diff = Vec::new();
        diff.compare(
            SecurityGroupField::VpcId,
            vpc_id,
            resolved(t, VpcReference::FIELD),
        );
        diff.compare(
            SecurityGroupField::GroupName,
            name,
            t.spec.group_name.as_ref(),
        );
        let description = sg.description().unwrap_or_default();
        diff.compare(
            SecurityGroupField::Description,
            description,
            t.spec.description.as_ref(),
        );
        diff.extend(rules_diff(
            SecurityGroupField::Ingress,
            &observed(sg.ip_permissions()),
            &desired(&t.spec.ingress),
        ));
        if let Some(egress) = &t.spec.egress {
            diff.extend(rules_diff(
                SecurityGroupField::Egress,
                &observed(sg.ip_permissions_egress()),
                &desired(egress),
            ));
        }
        diff.extend(tags_diff(
            SecurityGroupField::Tags,
            sg,
            t.identity,
            &t.spec.tags,
        ));
        Ok(Observation {
            diff,
            ready: true,
            at_provider: Some(SecurityGroupObservation {
                security_group_id: Some(id.clone()),
                group_name: Some(name.to_string()),
                vpc_id: Some(vpc_id.to_string()),
                arn: sg.security_group_arn().map(str::to_string),
            }),
            connection_details: BTreeMap::from([
                ("securityGroupId".to_string(), id),
                ("groupName".to_string(), name.to_string()),
            ]),
            ..Observation::exists(sg.id())
        })
    }

    async fn create(ec2: &Ec2, t: &Target<'_, SecurityGroup>) -> Result<Created, CloudError> {
        let vpc_id = required(t, VpcReference::FIELD, "vpcId, vpcRef or vpcSelector")?;
        let tags = tag_specification(ResourceType::SecurityGroup, t.identity, &t.spec.tags);
        let out = ec2
            .client
            .create_security_group()
            .vpc_id(vpc_id)
            .group_name(t.spec.group_name.as_deref().unwrap_or(&t.identity.name))
            .description(
                t.spec
                    .description
                    .as_deref()
                    .unwrap_or("managed by driftless"),
            )
            .tag_specifications(tags)
            .send()
            .await
            .map_err(cloud_error)?;
        let id = new_id(out.group_id(), "CreateSecurityGroup returned no group id")?;
        let _written = ec2.created::<sdk::SecurityGroup>(t.identity, &id);
        ec2.sync_rules(
            &id,
            Direction::Ingress,
            &BTreeSet::new(),
            &desired(&t.spec.ingress),
        )
        .await?;
        if let Some(egress) = &t.spec.egress {
            // What AWS gives every new group in a VPC.
            let default = desired(&[SecurityGroupRule {
                protocol: "-1".into(),
                from_port: None,
                to_port: None,
                cidr_blocks: vec!["0.0.0.0/0".into()],
                ipv6_cidr_blocks: Vec::new(),
                security_group_ids: Vec::new(),
            }]);
            ec2.sync_rules(&id, Direction::Egress, &default, &desired(egress))
                .await?;
        }
        Ok(Created { external_name: id })
    }

    async fn update(
        ec2: &Ec2,
        t: &Target<'_, SecurityGroup>,
        sg: &sdk::SecurityGroup,
        fields: Vec<SecurityGroupField>,
    ) -> Result<(), CloudError> {
        let id = sg.id();
        for field in fields {
            match field {
                SecurityGroupField::Ingress => {
                    let (have, want) = (observed(sg.ip_permissions()), desired(&t.spec.ingress));
                    ec2.sync_rules(id, Direction::Ingress, &have, &want).await?
                }
                SecurityGroupField::Egress => {
                    if let Some(egress) = &t.spec.egress {
                        let (have, want) = (observed(sg.ip_permissions_egress()), desired(egress));
                        ec2.sync_rules(id, Direction::Egress, &have, &want).await?
                    }
                }
                SecurityGroupField::Tags => ec2.sync_tags(sg, t.identity, &t.spec.tags).await?,
                SecurityGroupField::VpcId
                | SecurityGroupField::GroupName
                | SecurityGroupField::Description => {}
            }
        }
        Ok(())
    }

    async fn delete(ec2: &Ec2, sg: &sdk::SecurityGroup) -> Result<Deletion, CloudError> {
        let sent = ec2
            .client
            .delete_security_group()
            .group_id(sg.id())
            .send()
            .await;
        ec2.deletion(sg, sent).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        protocol: &str,
        from: Option<i32>,
        to: Option<i32>,
        cidrs: &[&str],
        groups: &[&str],
    ) -> SecurityGroupRule {
        SecurityGroupRule {
            protocol: protocol.into(),
            from_port: from,
            to_port: to,
            cidr_blocks: cidrs.iter().map(|s| s.to_string()).collect(),
            ipv6_cidr_blocks: Vec::new(),
            security_group_ids: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules_normalize_to_one_permission_per_source() {
        let spec = desired(&[rule(
            "TCP",
            Some(22),
            Some(22),
            &["10.0.0.0/8", "192.168.0.0/16"],
            &["sg-1"],
        )]);
        assert_eq!(spec.len(), 3);
        // AWS groups the same permissions into one IpPermission, names the protocol.
        let aws = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ip_ranges(IpRange::builder().cidr_ip("192.168.0.0/16").build())
            .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id("sg-1")
                    .user_id("000000000000")
                    .build(),
            )
            .build();
        assert_eq!(observed(&[aws]), spec);
    }

    #[test]
    fn all_traffic_has_no_ports_and_numbers_equal_names() {
        let spec = desired(&[
            rule("all", Some(0), Some(65535), &["0.0.0.0/0"], &[]),
            rule("6", Some(443), Some(443), &["0.0.0.0/0"], &[]),
        ]);
        let aws = [
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(443)
                .to_port(443)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        ];
        assert_eq!(observed(&aws), spec);
        let shown: Vec<String> = spec.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["all 0.0.0.0/0", "tcp 443 0.0.0.0/0"]);
    }

    #[test]
    fn a_rule_round_trips_through_ip_permission() {
        for p in desired(&[rule("udp", Some(53), Some(53), &["10.0.0.0/8"], &["sg-2"])]) {
            assert_eq!(observed(&[ip_permission(&p)]), BTreeSet::from([p.clone()]));
        }
    }
}
