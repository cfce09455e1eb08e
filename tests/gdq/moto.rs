//! A real AWS emulator for the tests: moto's HTTP server from the test venv, one per test
//! binary, on a free loopback port. The real aws-sdk-rust clients talk to it; the few
//! GuardDuty calls moto lacks come from `tests/moto_server.py` (DESIGN §6).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;

use crate::support::python;

pub struct Moto {
    pub endpoint: String,
    child: std::sync::Mutex<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// moto's server plus the GuardDuty export calls moto lacks (see the file's docstring).
const MOTO_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/moto_server.py");

/// The shared emulator, started on first use. Fails loudly when it cannot start.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(python())
            .args([MOTO_SERVER, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto server starts (scripts/test installs moto[server] into the venv)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            endpoint,
            child: std::sync::Mutex::new(child),
        }
    })
}

/// Environment for a gdq process talking to the emulator.
pub fn aws_env(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ENDPOINT_URL", &moto().endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// A bucket or queue name no other test (or earlier run) uses.
pub fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "gdq-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new, empty bucket.
pub fn bucket(aws: &Aws, name: &str) -> String {
    let bucket = unique(name);
    aws.rt
        .block_on(aws.s3.create_bucket().bucket(&bucket).send())
        .expect("moto creates the bucket");
    bucket
}

/// Keys under `prefix` in `bucket`.
pub fn keys(aws: &Aws, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = aws
            .rt
            .block_on(
                aws.s3
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .set_continuation_token(token)
                    .send(),
            )
            .expect("moto lists the bucket");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return keys;
        }
    }
}

/// Clients of the test itself (setting up buckets and queues, checking them).
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub rt: tokio::runtime::Runtime,
    /// For the clients of other services a test needs.
    pub config: aws_config::SdkConfig,
}

/// Credentials of another account of the emulator: moto answers an AssumeRole into any
/// account's role with keys that act as that account.
#[derive(Debug, Clone)]
pub struct Account {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: String,
}

impl Account {
    /// Points a gdq process at this account.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_SESSION_TOKEN", &self.session_token)
    }
}

pub fn assume(account: &str) -> Account {
    let aws = aws();
    let sts = aws_sdk_sts::Client::new(&aws.config);
    let got = aws
        .rt
        .block_on(
            sts.assume_role()
                .role_arn(format!(
                    "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
                ))
                .role_session_name("gdq-test")
                .send(),
        )
        .expect("moto assumes the role");
    let c = got.credentials().expect("credentials");
    Account {
        access_key: c.access_key_id().to_string(),
        secret_key: c.secret_access_key().to_string(),
        session_token: c.session_token().to_string(),
    }
}

/// Clients of the test in `region`, acting as `account`.
pub fn aws_as(region: &str, account: &Account) -> Aws {
    clients(
        region,
        aws_sdk_s3::config::Credentials::new(
            account.access_key.clone(),
            account.secret_key.clone(),
            Some(account.session_token.clone()),
            None,
            "test",
        ),
    )
}

/// Clients of the emulator in `region` with `credentials`.
fn clients(region: &str, credentials: aws_sdk_s3::config::Credentials) -> Aws {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&moto().endpoint)
            .region(aws_config::Region::new(region.to_string()))
            .credentials_provider(credentials)
            .load(),
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    Aws {
        s3,
        sqs: aws_sdk_sqs::Client::new(&config),
        rt,
        config,
    }
}

pub fn aws() -> Aws {
    aws_in("us-east-1")
}

/// Clients of the test itself in `region`.
pub fn aws_in(region: &'static str) -> Aws {
    clients(
        region,
        aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test"),
    )
}
