//! The AWS clients setup uses, all from one loaded configuration.

use aws_config::SdkConfig;

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
    /// Clients of `config`'s region. S3 and SQS come built by the caller, so that they are
    /// the ones the worker and ingest use (same addressing of custom endpoints).
    pub fn new(config: &SdkConfig, s3: aws_sdk_s3::Client, sqs: aws_sdk_sqs::Client) -> Clients {
        Clients {
            guardduty: aws_sdk_guardduty::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            s3,
            sqs,
            sns: aws_sdk_sns::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}
