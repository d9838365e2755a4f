//! Selector terms → EC2 `Describe*` filter sets, as Karpenter builds them: terms are
//! ORed (one call per filter set), a term's fields ANDed (filters within one call); a
//! tag is `tag:<key>=<value>`, or `tag-key=<key>` when the value is `*`; terms that are
//! only an ID (or only a name, for security groups) are pooled into one filter.

use std::collections::BTreeMap;

use kerf_api::crd::{AMISelectorTerm, SecurityGroupSelectorTerm, SubnetSelectorTerm};

/// One EC2 filter: `name` matches any of `values`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(name: &str, values: Vec<String>) -> Filter {
        Filter {
            name: name.to_string(),
            values,
        }
    }

    pub fn sdk(&self) -> aws_sdk_ec2::types::Filter {
        aws_sdk_ec2::types::Filter::builder()
            .name(&self.name)
            .set_values(Some(self.values.clone()))
            .build()
    }
}

/// One `Describe*` call's filters (ANDed).
pub type FilterSet = Vec<Filter>;

fn tag_filters(tags: &BTreeMap<String, String>) -> Vec<Filter> {
    tags.iter()
        .map(|(k, v)| {
            if v == "*" {
                Filter::new("tag-key", vec![k.clone()])
            } else {
                Filter::new(&format!("tag:{k}"), vec![v.clone()])
            }
        })
        .collect()
}

pub fn subnet_filter_sets(terms: &[SubnetSelectorTerm]) -> Vec<FilterSet> {
    let mut ids = Vec::new();
    let mut sets = Vec::new();
    for t in terms {
        if let Some(id) = &t.id {
            ids.push(id.clone());
            continue;
        }
        let mut set = tag_filters(&t.tags);
        if let Some(cidr) = &t.cidr {
            set.push(Filter::new("cidr-block", vec![cidr.clone()]));
        }
        if !set.is_empty() {
            sets.push(set);
        }
    }
    if !ids.is_empty() {
        sets.insert(0, vec![Filter::new("subnet-id", ids)]);
    }
    sets
}

pub fn security_group_filter_sets(terms: &[SecurityGroupSelectorTerm]) -> Vec<FilterSet> {
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut sets = Vec::new();
    for t in terms {
        if let Some(id) = &t.id {
            ids.push(id.clone());
            continue;
        }
        if t.tags.is_empty()
            && let Some(name) = &t.name
        {
            names.push(name.clone());
            continue;
        }
        let mut set = tag_filters(&t.tags);
        if let Some(name) = &t.name {
            set.push(Filter::new("group-name", vec![name.clone()]));
        }
        if !set.is_empty() {
            sets.push(set);
        }
    }
    if !names.is_empty() {
        sets.insert(0, vec![Filter::new("group-name", names)]);
    }
    if !ids.is_empty() {
        sets.insert(0, vec![Filter::new("group-id", ids)]);
    }
    sets
}

/// A `DescribeImages` call: its filters and owners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageQuery {
    pub filters: FilterSet,
    pub owners: Vec<String>,
}

/// The `DescribeImages` calls for the non-alias, non-SSM terms. A `name` without an
/// `owner` looks in `self` and `amazon`, as Karpenter does, so a public image of the
/// same name from a stranger is never picked.
pub fn image_queries(terms: &[AMISelectorTerm]) -> Vec<ImageQuery> {
    let mut ids = Vec::new();
    let mut queries = Vec::new();
    for t in terms {
        if t.alias.is_some() || t.ssm_parameter.is_some() {
            continue;
        }
        if let Some(id) = &t.id {
            ids.push(id.clone());
            continue;
        }
        let mut filters = tag_filters(&t.tags);
        if let Some(name) = &t.name {
            filters.push(Filter::new("name", vec![name.clone()]));
        }
        let owners = match (&t.owner, &t.name) {
            (Some(o), _) => o.split(',').map(|s| s.trim().to_string()).collect(),
            (None, Some(_)) => vec!["self".to_string(), "amazon".to_string()],
            (None, None) => Vec::new(),
        };
        if filters.is_empty() && owners.is_empty() {
            continue;
        }
        queries.push(ImageQuery { filters, owners });
    }
    if !ids.is_empty() {
        queries.insert(
            0,
            ImageQuery {
                filters: vec![Filter::new("image-id", ids)],
                owners: Vec::new(),
            },
        );
    }
    queries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn subnet_terms_or_tags_and_ids_pooled_star_is_key_exists() {
        let terms = vec![
            SubnetSelectorTerm {
                tags: tags(&[("karpenter.sh/discovery", "c1"), ("tier", "*")]),
                ..Default::default()
            },
            SubnetSelectorTerm {
                id: Some("subnet-1".into()),
                ..Default::default()
            },
            SubnetSelectorTerm {
                id: Some("subnet-2".into()),
                ..Default::default()
            },
        ];
        assert_eq!(
            subnet_filter_sets(&terms),
            vec![
                vec![Filter::new(
                    "subnet-id",
                    vec!["subnet-1".into(), "subnet-2".into()]
                )],
                vec![
                    Filter::new("tag:karpenter.sh/discovery", vec!["c1".into()]),
                    Filter::new("tag-key", vec!["tier".into()]),
                ],
            ]
        );
    }

    #[test]
    fn security_group_names_pool_unless_tagged() {
        let terms = vec![
            SecurityGroupSelectorTerm {
                name: Some("a".into()),
                ..Default::default()
            },
            SecurityGroupSelectorTerm {
                name: Some("b".into()),
                tags: tags(&[("x", "y")]),
                ..Default::default()
            },
        ];
        assert_eq!(
            security_group_filter_sets(&terms),
            vec![
                vec![Filter::new("group-name", vec!["a".into()])],
                vec![
                    Filter::new("tag:x", vec!["y".into()]),
                    Filter::new("group-name", vec!["b".into()]),
                ],
            ]
        );
    }

    #[test]
    fn image_name_defaults_owners_to_self_and_amazon() {
        let terms = vec![AMISelectorTerm {
            name: Some("my-ami-*".into()),
            ..Default::default()
        }];
        assert_eq!(
            image_queries(&terms),
            vec![ImageQuery {
                filters: vec![Filter::new("name", vec!["my-ami-*".into()])],
                owners: vec!["self".into(), "amazon".into()],
            }]
        );
    }
}
