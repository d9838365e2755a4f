//! AMI aliases → the SSM public parameters they resolve through, at their real paths,
//! one per architecture and variant, each with the requirements an instance type must
//! meet to use the image (`amifamily/al2023.go`, `bottlerocket.go`, `al2.go`,
//! `windows.go` in Karpenter's AWS provider).

use k8s_openapi::api::core::v1::NodeSelectorRequirement;

pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";
pub const GPU_COUNT: &str = "karpenter.k8s.aws/instance-gpu-count";
pub const ACCELERATOR_COUNT: &str = "karpenter.k8s.aws/instance-accelerator-count";

/// One SSM parameter an alias reads, and what the image it names requires.
#[derive(Clone, Debug, PartialEq)]
pub struct AliasParameter {
    pub path: String,
    pub requirements: Vec<NodeSelectorRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    #[error(
        "alias {0:?} has no family kerf knows: use al2023, al2, bottlerocket, windows2019, \
         windows2022 or windows2025, as family@version"
    )]
    UnknownFamily(String),
    #[error("alias {alias:?}: version {version:?} is not `latest` nor {expected}")]
    BadVersion {
        alias: String,
        version: String,
        expected: &'static str,
    },
    #[error("alias {0:?}: AL2 images are not published for Kubernetes 1.33 and later; use al2023")]
    Al2Retired(String),
}

pub fn req(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: if values.is_empty() {
            None
        } else {
            Some(values.iter().map(|v| v.to_string()).collect())
        },
    }
}

fn arch_req(aws_arch: &str) -> NodeSelectorRequirement {
    req(ARCH, "In", &[kube_arch(aws_arch)])
}

/// EC2's architecture name as Kubernetes spells it.
pub fn kube_arch(aws_arch: &str) -> &str {
    match aws_arch {
        "x86_64" => "amd64",
        "arm64" => "arm64",
        other => other,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Standard,
    Nvidia,
    Neuron,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Standard => "standard",
            Variant::Nvidia => "nvidia",
            Variant::Neuron => "neuron",
        }
    }

    fn requirements(self, aws_arch: &str) -> Vec<NodeSelectorRequirement> {
        let mut r = vec![arch_req(aws_arch)];
        match self {
            Variant::Standard => {
                r.push(req(GPU_COUNT, "DoesNotExist", &[]));
                r.push(req(ACCELERATOR_COUNT, "DoesNotExist", &[]));
            }
            Variant::Nvidia => r.push(req(GPU_COUNT, "Exists", &[])),
            Variant::Neuron => r.push(req(ACCELERATOR_COUNT, "Exists", &[])),
        }
        r
    }
}

/// `major.minor` ≥ 1.33.
fn at_least_1_33(k8s: &str) -> bool {
    let mut parts = k8s.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 33)
}

fn dated(version: &str) -> bool {
    version.len() == 9
        && version.starts_with('v')
        && version[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The family an alias implies (`al2023@latest` → `AL2023`).
pub fn alias_family(alias: &str) -> Option<&'static str> {
    let family = alias.split('@').next()?;
    Some(match family.to_ascii_lowercase().as_str() {
        "al2023" => "AL2023",
        "al2" => "AL2",
        "bottlerocket" => "Bottlerocket",
        "windows2019" => "Windows2019",
        "windows2022" => "Windows2022",
        "windows2025" => "Windows2025",
        _ => return None,
    })
}

/// The SSM parameters an alias reads for Kubernetes `k8s` (`1.33`). A parameter that
/// does not exist (no arm64 neuron image, say) is skipped by the caller; an alias none
/// of whose parameters exist resolves to nothing, which is `AMIsReady=False`.
/// An Amazon Linux alias's version: `latest` (no pin) or a release date `vYYYYMMDD`.
fn dated_pin<'a>(alias: &str, version: &'a str) -> Result<Option<&'a str>, AliasError> {
    match version {
        "latest" => Ok(None),
        v if dated(v) => Ok(Some(v)),
        v => Err(AliasError::BadVersion {
            alias: alias.into(),
            version: v.into(),
            expected: "vYYYYMMDD",
        }),
    }
}

pub fn alias_parameters(alias: &str, k8s: &str) -> Result<Vec<AliasParameter>, AliasError> {
    let (family, version) = alias.split_once('@').unwrap_or((alias, "latest"));
    let family = family.to_ascii_lowercase();
    let mut out = Vec::new();
    match family.as_str() {
        "al2023" => {
            let pinned = dated_pin(alias, version)?;
            for arch in ["x86_64", "arm64"] {
                for variant in [Variant::Standard, Variant::Nvidia, Variant::Neuron] {
                    let leaf = match pinned {
                        None => "recommended".to_string(),
                        Some(v) => {
                            format!("amazon-eks-node-al2023-{arch}-{}-{k8s}-{v}", variant.name())
                        }
                    };
                    out.push(AliasParameter {
                        path: format!(
                            "/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2023/{arch}/{}/{leaf}/image_id",
                            variant.name()
                        ),
                        requirements: variant.requirements(arch),
                    });
                }
            }
        }
        "al2" => {
            if at_least_1_33(k8s) {
                return Err(AliasError::Al2Retired(alias.into()));
            }
            let pinned = dated_pin(alias, version)?;
            for (suffix, arch, variant) in [
                ("", "x86_64", Variant::Standard),
                ("-arm64", "arm64", Variant::Standard),
                ("-gpu", "x86_64", Variant::Nvidia),
            ] {
                let leaf = match pinned {
                    None => "recommended".to_string(),
                    Some(v) => format!("amazon-eks{suffix}-node-{k8s}-{v}"),
                };
                out.push(AliasParameter {
                    path: format!(
                        "/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2{suffix}/{leaf}/image_id"
                    ),
                    requirements: variant.requirements(arch),
                });
            }
        }
        "bottlerocket" => {
            let leaf = match version {
                "latest" => "latest".to_string(),
                v if v.starts_with('v') && v[1..].split('.').count() == 3 => v[1..].to_string(),
                v => {
                    return Err(AliasError::BadVersion {
                        alias: alias.into(),
                        version: v.into(),
                        expected: "vX.Y.Z",
                    });
                }
            };
            for arch in ["x86_64", "arm64"] {
                for (flavour, variant) in [("", Variant::Standard), ("-nvidia", Variant::Nvidia)] {
                    out.push(AliasParameter {
                        path: format!(
                            "/aws/service/bottlerocket/aws-k8s-{k8s}{flavour}/{arch}/{leaf}/image_id"
                        ),
                        requirements: variant.requirements(arch),
                    });
                }
            }
        }
        "windows2019" | "windows2022" | "windows2025" => {
            if version != "latest" {
                return Err(AliasError::BadVersion {
                    alias: alias.into(),
                    version: version.into(),
                    expected: "only latest for Windows",
                });
            }
            let year = &family["windows".len()..];
            out.push(AliasParameter {
                path: format!(
                    "/aws/service/ami-windows-latest/Windows_Server-{year}-English-Core-EKS_Optimized-{k8s}/image_id"
                ),
                requirements: vec![arch_req("x86_64"), req(OS, "In", &["windows"])],
            });
        }
        _ => return Err(AliasError::UnknownFamily(alias.into())),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn al2023_latest_reads_recommended_per_arch_and_variant() {
        let p = alias_parameters("al2023@latest", "1.33").unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!(
            p[0].path,
            "/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id"
        );
        assert_eq!(p[0].requirements[0], req(ARCH, "In", &["amd64"]));
        assert_eq!(p[4].requirements[1], req(GPU_COUNT, "Exists", &[]));
    }

    #[test]
    fn al2023_pinned_names_the_release() {
        let p = alias_parameters("al2023@v20250101", "1.33").unwrap();
        assert_eq!(
            p[3].path,
            "/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/arm64/standard/amazon-eks-node-al2023-arm64-standard-1.33-v20250101/image_id"
        );
    }

    #[test]
    fn bad_aliases_say_why() {
        assert_eq!(
            alias_parameters("ubuntu@latest", "1.33"),
            Err(AliasError::UnknownFamily("ubuntu@latest".into()))
        );
        assert!(matches!(
            alias_parameters("al2023@2025", "1.33"),
            Err(AliasError::BadVersion { .. })
        ));
        assert!(matches!(
            alias_parameters("al2@latest", "1.33"),
            Err(AliasError::Al2Retired(_))
        ));
        assert_eq!(alias_parameters("al2@latest", "1.32").unwrap().len(), 3);
    }

    #[test]
    fn bottlerocket_and_windows_paths() {
        let p = alias_parameters("bottlerocket@v1.31.0", "1.33").unwrap();
        assert_eq!(
            p[1].path,
            "/aws/service/bottlerocket/aws-k8s-1.33-nvidia/x86_64/1.31.0/image_id"
        );
        let w = alias_parameters("windows2022@latest", "1.33").unwrap();
        assert_eq!(
            w[0].path,
            "/aws/service/ami-windows-latest/Windows_Server-2022-English-Core-EKS_Optimized-1.33/image_id"
        );
    }
}
