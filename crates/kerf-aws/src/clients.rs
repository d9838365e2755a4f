//! One SDK configuration, from the standard chain, shared by the EC2, SSM, SQS, IAM and
//! Pricing clients, over one hyper + rustls (ring) HTTP client.

use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls;

#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub iam: aws_sdk_iam::Client,
    /// The Pricing API, in the region whose endpoint serves this one
    /// ([`crate::pricing::endpoint_region`]); the endpoint URL, when one is configured
    /// (`AWS_ENDPOINT_URL`), is the same as the other clients'.
    pub pricing: aws_sdk_pricing::Client,
    pub region: String,
}

/// The SDK's standard loader (`AWS_REGION`, `AWS_ENDPOINT_URL`, the credentials chain)
/// with kerf's HTTP client; tests set endpoint, region and credentials on it.
pub fn loader() -> aws_config::ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http)
}

/// The SDK configuration from the environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    loader().load().await
}

impl Clients {
    /// Clients from the standard chain. Errors when no region is configured: every
    /// call kerf makes is regional.
    pub async fn from_env() -> anyhow::Result<Clients> {
        let config = sdk_config().await;
        Clients::from_config(&config, None)
    }

    /// Clients for `endpoint` in `region`, signing with a static `(access key, secret)`
    /// instead of the standard chain: for tests and benches against moto.
    pub async fn with_keys(
        endpoint: &str,
        region: &str,
        (key, secret): (&str, &str),
        ec2_interceptor: Option<aws_smithy_runtime_api::client::interceptors::SharedInterceptor>,
    ) -> anyhow::Result<Clients> {
        let config = loader()
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(region.to_string()))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                key, secret, None, None, "static",
            ))
            .load()
            .await;
        Clients::from_config(&config, ec2_interceptor)
    }

    /// Clients from `config`; `ec2_interceptor` is added to the EC2 client only (tests
    /// inject faults moto does not produce through it).
    pub fn from_config(
        config: &aws_config::SdkConfig,
        ec2_interceptor: Option<aws_smithy_runtime_api::client::interceptors::SharedInterceptor>,
    ) -> anyhow::Result<Clients> {
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            anyhow::anyhow!("no AWS region configured: set AWS_REGION (or a profile's region)")
        })?;
        let mut ec2 = aws_sdk_ec2::config::Builder::from(config);
        if let Some(i) = ec2_interceptor {
            ec2.push_interceptor(i);
        }
        Ok(Clients {
            ec2: aws_sdk_ec2::Client::from_conf(ec2.build()),
            ssm: aws_sdk_ssm::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            pricing: aws_sdk_pricing::Client::from_conf(
                aws_sdk_pricing::config::Builder::from(config)
                    .region(aws_config::Region::new(crate::pricing::endpoint_region(
                        &region,
                    )))
                    .build(),
            ),
            region,
        })
    }
}
