//! The AWS clients setup uses, from the standard configuration chain.

use aws_config::{BehaviorVersion, Region};

#[derive(Clone, Debug)]
pub struct Clients {
    pub guardduty: aws_sdk_guardduty::Client,
    pub kms: aws_sdk_kms::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sts: aws_sdk_sts::Client,
    /// The region every client works in.
    pub region: String,
}

impl Clients {
    /// Clients of `region`, or of the chain's region (`AWS_REGION`, the profile). With a
    /// custom endpoint (`AWS_ENDPOINT_URL`), S3 uses path-style addressing.
    pub async fn from_env(region: Option<String>) -> Clients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        let config = loader.load().await;
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Clients {
            guardduty: aws_sdk_guardduty::Client::new(&config),
            kms: aws_sdk_kms::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}
