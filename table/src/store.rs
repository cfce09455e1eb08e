//! The one storage abstraction of a warehouse: an `object_store` (the local file system or an
//! S3 bucket) and the warehouse's prefix in it. Everything that reads or writes warehouse
//! files goes through [`Store`], so local and S3 warehouses share every code path; only
//! publishing a locally built file differs (a hard link on the same disk, an upload to S3).
//!
//! S3 credentials and region come from the standard AWS chain (aws-config: environment,
//! profiles with SSO, container and instance roles), handed to `object_store`, so an S3
//! warehouse works wherever the SQS worker does, `AWS_ENDPOINT_URL` included.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, CredentialProvider, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};
use tokio::io::AsyncWriteExt;

use crate::error::{Result, TableError};

/// Requests one operation keeps in flight (uploads, deletes, small reads).
const CONCURRENCY: usize = 8;
/// Files up to this size are uploaded in one request; larger ones in parts.
const SINGLE_PUT_BYTES: u64 = 32 << 20;

/// Bucket and key prefix of an `s3://` warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket root.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<S3Location> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| TableError::Usage(format!("{url:?} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(TableError::Usage(format!("{url:?} names no bucket")));
        }
        let prefix = prefix.trim_matches('/').to_string();
        ObjectPath::parse(&prefix)
            .map_err(|e| TableError::Usage(format!("{url:?} is not a usable prefix: {e}")))?;
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Where a warehouse is, as its user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
}

impl Location {
    /// A local path, or `s3://bucket[/prefix]`; other schemes are refused.
    pub fn parse(text: &str) -> Result<Location> {
        if text.starts_with("s3://") {
            return S3Location::parse(text).map(Location::S3);
        }
        if text.contains("://") {
            return Err(TableError::Usage(format!(
                "warehouse {text:?}: only local paths and s3:// URLs are supported"
            )));
        }
        Ok(Location::Local(PathBuf::from(text)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3(s3) => f.write_str(&s3.url()),
        }
    }
}

/// Hands the aws-config credential chain to `object_store`, caching until near expiry so a
/// role or SSO session is not resolved once per request.
#[derive(Debug)]
struct SdkCredentials {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let refresh_before = SystemTime::now() + Duration::from_secs(300);
        if let Some((credential, expiry)) = &*self.cached.lock().unwrap_or_else(|p| p.into_inner())
            && expiry.is_none_or(|e| e > refresh_before)
        {
            return Ok(Arc::clone(credential));
        }
        let fresh = self.provider.provide_credentials().await.map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            }
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: fresh.access_key_id().to_string(),
            secret_key: fresh.secret_access_key().to_string(),
            token: fresh.session_token().map(str::to_string),
        });
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Arc::clone(&credential), fresh.expiry()));
        Ok(credential)
    }
}

/// A duration from the environment, for the S3 client settings.
fn env_duration(name: &str) -> Option<Duration> {
    parse_duration(&std::env::var(name).ok()?)
}

/// `2s`, `500ms`, `1m`, or plain seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    text.parse::<f64>()
        .ok()
        .map(Duration::from_secs_f64)
        .or_else(|| {
            let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let value: f64 = digits.parse().ok()?;
            match &text[digits.len()..] {
                "ms" => Some(Duration::from_secs_f64(value / 1000.0)),
                "s" => Some(Duration::from_secs_f64(value)),
                "m" => Some(Duration::from_secs_f64(value * 60.0)),
                _ => None,
            }
        })
}

/// Builds an `object_store` S3 client for `bucket` from the standard AWS configuration.
///
/// `GDQ_S3_TIMEOUT` (default 30s) bounds one request and `GDQ_S3_RETRIES` (default 10) the
/// retries of a failed one: a request that is still unanswered when both are spent fails,
/// and for a commit that means an unconfirmed commit (`TableError::Unconfirmed`).
pub async fn s3_store(bucket: &str) -> Result<Arc<dyn ObjectStore>> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let region = config.region().ok_or_else(|| {
        TableError::Usage(
            "no AWS region configured for the s3:// warehouse (set AWS_REGION or a profile region)"
                .into(),
        )
    })?;
    let provider = config.credentials_provider().ok_or_else(|| {
        TableError::Usage("no AWS credentials found for the s3:// warehouse".into())
    })?;
    let mut client = ClientOptions::new();
    if let Some(timeout) = env_duration("GDQ_S3_TIMEOUT") {
        client = client.with_timeout(timeout);
    }
    let mut retry = RetryConfig::default();
    if let Some(retries) = std::env::var("GDQ_S3_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        retry.max_retries = retries;
    }
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region.as_ref())
        .with_client_options(client)
        .with_retry(retry)
        .with_credentials(Arc::new(SdkCredentials {
            provider,
            cached: Mutex::new(None),
        }));
    if let Some(endpoint) = config.endpoint_url() {
        // S3-compatible services and emulators are addressed path-style, often over http.
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    let store = builder
        .build()
        .map_err(TableError::store(format!("s3://{bucket}")))?;
    Ok(Arc::new(store))
}

/// An object under the warehouse root.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Key relative to the warehouse root (`findings/type=…/x.parquet`).
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// A warehouse's storage: an object store and the warehouse root in it.
#[derive(Debug, Clone)]
pub struct Store {
    location: Location,
    root: Arc<dyn ObjectStore>,
    /// The warehouse root within `root`, without a trailing `/`.
    prefix: String,
    /// For a local warehouse, its absolute path (files built beside it are linked in).
    local_root: Option<PathBuf>,
}

impl Store {
    /// Connects to the warehouse at `location` (for S3: with the standard AWS configuration).
    /// Nothing is created: a local folder that does not exist yet reads as empty, and the
    /// first write creates it.
    pub async fn connect(location: &Location) -> Result<Store> {
        match location {
            Location::Local(path) => {
                let absolute = match std::fs::canonicalize(path) {
                    Ok(absolute) => absolute,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        std::path::absolute(path).map_err(TableError::io(path))?
                    }
                    Err(e) => return Err(TableError::io(path)(e)),
                };
                let prefix = ObjectPath::from_absolute_path(&absolute)
                    .map_err(|e| TableError::Usage(format!("{}: {e}", path.display())))?
                    .to_string();
                Ok(Store {
                    location: location.clone(),
                    root: Arc::new(LocalFileSystem::new()),
                    prefix,
                    local_root: Some(absolute),
                })
            }
            Location::S3(s3) => Ok(Store {
                location: location.clone(),
                root: s3_store(&s3.bucket).await?,
                prefix: s3.prefix.clone(),
                local_root: None,
            }),
        }
    }

    /// A store over an existing object store (a bucket root, or the file system root).
    pub fn with_object_store(
        location: Location,
        root: Arc<dyn ObjectStore>,
        prefix: String,
    ) -> Store {
        let local_root = match &location {
            Location::Local(path) => Some(path.clone()),
            Location::S3(_) => None,
        };
        Store {
            location,
            root,
            prefix: prefix.trim_matches('/').to_string(),
            local_root,
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// What users call the warehouse: its path or `s3://` URL.
    pub fn name(&self) -> String {
        self.location.to_string()
    }

    /// The object store, rooted at the bucket (or the file system root).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.root)
    }

    /// The local warehouse folder; `None` for S3.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// The URL of the store's root (`file:///` or `s3://bucket/`), as DataFusion registers it.
    pub fn root_url(&self) -> url::Url {
        let text = match &self.location {
            Location::Local(_) => "file:///".to_string(),
            Location::S3(s3) => format!("s3://{}/", s3.bucket),
        };
        url::Url::parse(&text).expect("a root URL of a scheme and a bucket name parses")
    }

    /// The URL of a folder of the warehouse (relative key), with a trailing `/`.
    pub fn folder_url(&self, relative: &str) -> Result<url::Url> {
        let text = match &self.location {
            Location::Local(_) => format!("file:///{}/{relative}/", self.prefix),
            Location::S3(s3) => format!("s3://{}/{}/", s3.bucket, self.full(relative)),
        };
        url::Url::parse(&text).map_err(|e| TableError::Usage(format!("{text}: {e}")))
    }

    /// The warehouse root within the object store (no leading or trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else if relative.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// The object path of a key relative to the warehouse root.
    pub fn path(&self, relative: &str) -> Result<ObjectPath> {
        let full = self.full(relative);
        ObjectPath::parse(&full).map_err(|e| TableError::Internal(format!("bad key {full:?}: {e}")))
    }

    /// A key relative to the warehouse root from an object path of the store.
    pub fn relative<'a>(&self, path: &'a ObjectPath) -> &'a str {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(self.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    /// `what` for errors: the object's full name as users see it.
    pub fn describe(&self, relative: &str) -> String {
        format!("{}/{relative}", self.name().trim_end_matches('/'))
    }

    /// Makes everything written to a local warehouse so far durable (files, hard links,
    /// renames): one `syncfs` of its file system, where a commit of 135 files took 270
    /// `fsync`s and as many journal commits. Nothing to do in S3, where a write that
    /// returned is durable.
    pub async fn sync(&self) -> Result<()> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || sync_file_system(&root))
            .await
            .map_err(|e| TableError::Internal(format!("syncing the warehouse: {e}")))?
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>> {
        let path = self.path(relative)?;
        let got = match self.root.get(&path).await {
            Ok(r) => r.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        got.map_err(TableError::store(self.describe(relative)))
    }

    /// Reads many objects at once; missing ones are `None`.
    pub async fn get_many(&self, relatives: &[String]) -> Result<Vec<Option<Bytes>>> {
        let gets: Vec<_> = relatives.iter().map(|r| self.get(r)).collect();
        futures::stream::iter(gets)
            .buffered(CONCURRENCY * 2)
            .try_collect()
            .await
    }

    /// Writes an object, replacing any.
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(relative)?;
        self.root
            .put(&path, PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(TableError::store(self.describe(relative)))
    }

    /// Writes an object only if none exists at that key; `false` when one did.
    pub async fn put_new(&self, relative: &str, bytes: Vec<u8>) -> Result<bool> {
        let path = self.path(relative)?;
        let options = PutOptions::from(PutMode::Create);
        match self
            .root
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(TableError::store(self.describe(relative))(e)),
        }
    }

    /// Every object whose key (relative to the warehouse) is under the folder `relative`.
    pub async fn list(&self, relative: &str) -> Result<Vec<Listed>> {
        let folder = relative.trim_end_matches('/');
        let path = self.path(folder)?;
        let metas: Vec<_> = match self.root.list(Some(&path)).try_collect().await {
            Ok(metas) => metas,
            // A local folder that does not exist yet lists as empty, as an S3 prefix does.
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(TableError::store(self.describe(folder))(e)),
        };
        Ok(metas
            .into_iter()
            .map(|m| Listed {
                key: self.relative(&m.location).to_string(),
                size: m.size,
                modified: SystemTime::from(m.last_modified),
            })
            .collect())
    }

    /// Deletes objects; already missing ones are fine.
    pub async fn delete_many(&self, relatives: &[String]) -> Result<()> {
        futures::stream::iter(relatives)
            .map(|relative| async move {
                let path = self.path(relative)?;
                match self.root.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(TableError::store(self.describe(relative))(e)),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// Reads a byte range of an object.
    pub async fn get_range(&self, relative: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
        let path = self.path(relative)?;
        self.root
            .get_range(&path, range)
            .await
            .map_err(TableError::store(self.describe(relative)))
    }

    /// Downloads an object to a local file, streaming.
    pub async fn download(&self, relative: &str, local: &Path) -> Result<()> {
        let what = self.describe(relative);
        let path = self.path(relative)?;
        let io_error = TableError::io(local);
        let mut stream = self
            .root
            .get(&path)
            .await
            .map_err(TableError::store(what.clone()))?
            .into_stream();
        let mut file = tokio::fs::File::create(local).await.map_err(io_error)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(TableError::store(what.clone()))?;
            file.write_all(&chunk)
                .await
                .map_err(TableError::io(local))?;
        }
        file.flush().await.map_err(TableError::io(local))
    }

    /// Puts a locally built file at `relative`: a hard link when the warehouse is on the same
    /// disk (the build copy stays, so a later attempt can rewrite from it), else an upload.
    pub async fn publish_file(&self, local: &Path, relative: &str) -> Result<()> {
        if let Some(root) = &self.local_root {
            let target = root.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(TableError::io(parent))?;
            }
            match std::fs::hard_link(local, &target) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(TableError::Internal(format!(
                        "{} already exists: batch names collided",
                        target.display()
                    )));
                }
                // Another file system (a staging folder elsewhere): copy through the store.
                Err(_) => {}
            }
        }
        self.upload(local, relative).await
    }

    /// Publishes many files, several at a time.
    pub async fn publish_files(&self, files: &[(PathBuf, String)]) -> Result<()> {
        futures::stream::iter(files)
            .map(|(local, relative)| self.publish_file(local, relative))
            .buffer_unordered(CONCURRENCY / 2)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    async fn upload(&self, local: &Path, relative: &str) -> Result<()> {
        let what = self.describe(relative);
        let path = self.path(relative)?;
        let size = tokio::fs::metadata(local)
            .await
            .map_err(TableError::io(local))?
            .len();
        if size <= SINGLE_PUT_BYTES {
            let bytes = tokio::fs::read(local)
                .await
                .map_err(TableError::io(local))?;
            self.root
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(TableError::store(what))?;
            return Ok(());
        }
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(TableError::io(local))?;
        let mut writer = object_store::buffered::BufWriter::new(Arc::clone(&self.root), path);
        let generic = |e: std::io::Error| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        };
        if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
            let _ = writer.abort().await;
            return Err(TableError::store(what)(generic(e)));
        }
        writer
            .shutdown()
            .await
            .map_err(|e| TableError::store(what)(generic(e)))
    }
}

/// Flushes the file system holding `dir` (Linux: `syncfs`; elsewhere `sync_all` of the folder
/// tree's files is not worth emulating, so the whole system is synced).
fn sync_file_system(dir: &Path) -> Result<()> {
    // The warehouse folder may not exist yet (nothing written): nothing to flush.
    let folder = match std::fs::File::open(dir) {
        Ok(folder) => folder,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TableError::io(dir)(e)),
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `folder` is an open file descriptor for the duration of the call, and
        // syncfs only reads it.
        if unsafe { libc::syncfs(folder.as_raw_fd()) } != 0 {
            return Err(TableError::io(dir)(std::io::Error::last_os_error()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        drop(folder);
        // SAFETY: sync takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_give_bucket_and_prefix() {
        assert_eq!(
            S3Location::parse("s3://b/some/prefix/").unwrap(),
            S3Location {
                bucket: "b".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(S3Location::parse("s3://b").unwrap().prefix, "");
        assert_eq!(S3Location::parse("s3://b/p").unwrap().url(), "s3://b/p");
        assert!(S3Location::parse("s3:///p").is_err());
        assert!(S3Location::parse("/local").is_err());
        assert!(matches!(
            Location::parse("gs://bucket/x"),
            Err(TableError::Usage(_))
        ));
        assert_eq!(
            Location::parse("./wh").unwrap(),
            Location::Local(PathBuf::from("./wh"))
        );
    }

    #[test]
    fn client_durations_accept_units() {
        for (text, expected) in [("2", 2.0), ("1.5s", 1.5), ("250ms", 0.25), ("1m", 60.0)] {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_secs_f64(expected))
            );
        }
        assert_eq!(parse_duration("soon"), None);
    }

    #[tokio::test]
    async fn a_local_store_writes_lists_and_deletes_under_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Location::Local(dir.path().join("wh")))
            .await
            .unwrap();
        assert!(store.put_new("a/b%3Ac.txt", b"1".to_vec()).await.unwrap());
        assert!(!store.put_new("a/b%3Ac.txt", b"2".to_vec()).await.unwrap());
        assert!(
            dir.path().join("wh/a/b%3Ac.txt").exists(),
            "keys are file names as they are"
        );
        let listed = store.list("a").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "a/b%3Ac.txt");
        assert!(store.list("missing").await.unwrap().is_empty());
        assert_eq!(store.get("a/b%3Ac.txt").await.unwrap().unwrap(), "1");
        store
            .delete_many(&["a/b%3Ac.txt".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(store.get("a/b%3Ac.txt").await.unwrap(), None);
    }
}
