//! The AWS clients setup uses, all from one loaded configuration.

use aws_config::{Region, SdkConfig};

#[derive(Clone, Debug)]
pub struct Clients {
    pub guardduty: aws_sdk_guardduty::Client,
    pub kms: aws_sdk_kms::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sts: aws_sdk_sts::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub organizations: aws_sdk_organizations::Client,
    pub iam: aws_sdk_iam::Client,
    /// The home region: the bucket, the key, the queue and the alert topic live here.
    pub region: String,
    config: SdkConfig,
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
            ec2: aws_sdk_ec2::Client::new(config),
            organizations: aws_sdk_organizations::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            config: config.clone(),
        }
    }

    /// GuardDuty in `region` (the home region's client when it is the home region): each
    /// region has its own detector.
    pub fn guardduty_in(&self, region: &str) -> aws_sdk_guardduty::Client {
        if region == self.region {
            return self.guardduty.clone();
        }
        aws_sdk_guardduty::Client::from_conf(
            aws_sdk_guardduty::config::Builder::from(&self.config)
                .region(Region::new(region.to_string()))
                .build(),
        )
    }

    /// EventBridge in `region`: the rule that forwards that region's findings home.
    pub fn events_in(&self, region: &str) -> aws_sdk_eventbridge::Client {
        if region == self.region {
            return self.events.clone();
        }
        aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(&self.config)
                .region(Region::new(region.to_string()))
                .build(),
        )
    }
}
