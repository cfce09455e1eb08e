//! A warehouse in S3 (`s3://bucket/prefix`): the same layout as a local one, reached through
//! `object_store` (the crate DataFusion reads with, so readers and writers agree on paths).
//!
//! Credentials and region come from the standard AWS chain (aws-config: environment,
//! profiles with SSO, container and instance roles) and are handed to `object_store`, so an
//! S3 warehouse works wherever the SQS worker does, `AWS_ENDPOINT_URL` included.
//!
//! The writer side is synchronous (threads of `gdq ingest`, `spawn_blocking` in the worker),
//! so every call here runs on one small runtime of its own and blocks its caller.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::path::Path as ObjectPath;
use object_store::{
    CredentialProvider, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use tokio::io::AsyncWriteExt;

use crate::error::IngestError;

/// How many requests one operation keeps in flight (uploads, copies, ledger reads).
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
    pub fn parse(url: &str) -> Result<S3Location, IngestError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| IngestError::Usage(format!("{url:?} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(IngestError::Usage(format!("{url:?} names no bucket")));
        }
        let prefix = prefix.trim_matches('/').to_string();
        ObjectPath::parse(&prefix)
            .map_err(|e| IngestError::Usage(format!("{url:?} is not a usable prefix: {e}")))?;
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

/// The runtime every remote call runs on; lives as long as the process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gdq-store")
            .enable_all()
            .build()
            .expect("the store runtime starts (threads and timers are available)")
    })
}

/// Runs `future` on the store runtime and waits for it. Safe from any thread, including a
/// `spawn_blocking` thread of another runtime.
fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .expect("store tasks run to completion: the store runtime is never shut down")
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

/// An object under the warehouse prefix.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Key relative to the warehouse prefix.
    pub relative: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// An S3 warehouse location with a connected store.
#[derive(Debug, Clone)]
pub struct Remote {
    location: S3Location,
    store: Arc<dyn ObjectStore>,
}

/// Builds an `object_store` S3 client for `bucket` from the standard AWS configuration.
pub async fn s3_store(bucket: &str) -> Result<Arc<dyn ObjectStore>, IngestError> {
    let config = crate::s3::load_config(None).await;
    let region = config.region().ok_or_else(|| {
        IngestError::Usage(
            "no AWS region configured for the s3:// warehouse (set AWS_REGION or a profile region)"
                .into(),
        )
    })?;
    let provider = config.credentials_provider().ok_or_else(|| {
        IngestError::Usage("no AWS credentials found for the s3:// warehouse".into())
    })?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region.as_ref())
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
    let store = builder.build().map_err(|source| IngestError::Store {
        what: format!("s3://{bucket}"),
        source,
    })?;
    Ok(Arc::new(store))
}

impl Remote {
    /// Connects to the warehouse at `location` with the standard AWS configuration.
    pub fn connect(location: S3Location) -> Result<Remote, IngestError> {
        let bucket = location.bucket.clone();
        let store = block_on(async move { s3_store(&bucket).await })?;
        Ok(Remote { location, store })
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    pub fn url(&self) -> String {
        self.location.url()
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    fn path(&self, relative: &str) -> Result<ObjectPath, IngestError> {
        let full = if self.location.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.location.prefix)
        };
        ObjectPath::parse(&full)
            .map_err(|e| IngestError::Internal(format!("bad key {full:?}: {e}")))
    }

    fn relative<'a>(&self, path: &'a ObjectPath) -> &'a str {
        let full = path.as_ref();
        if self.location.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(self.location.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(full)
        }
    }

    fn error(&self, relative: &str) -> impl FnOnce(object_store::Error) -> IngestError {
        let what = format!("{}/{relative}", self.url());
        move |source| IngestError::Store { what, source }
    }

    /// Reads an object; `None` when it does not exist.
    pub fn get(&self, relative: &str) -> Result<Option<Bytes>, IngestError> {
        let (store, path) = (self.store(), self.path(relative)?);
        let result = block_on(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        result.map_err(self.error(relative))
    }

    /// Writes an object only if none exists at that key; `false` when one did.
    pub fn put_new(&self, relative: &str, bytes: Vec<u8>) -> Result<bool, IngestError> {
        let (store, path) = (self.store(), self.path(relative)?);
        let result = block_on(async move {
            let options = PutOptions::from(PutMode::Create);
            store
                .put_opts(&path, PutPayload::from(bytes), options)
                .await
        });
        match result {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(relative)(e)),
        }
    }

    /// Every object whose key (relative to the warehouse) starts with `relative_prefix`,
    /// a folder such as `_gdq/commits/`.
    pub fn list(&self, relative_prefix: &str) -> Result<Vec<Listed>, IngestError> {
        let (store, path) = (
            self.store(),
            self.path(relative_prefix.trim_end_matches('/'))?,
        );
        let metas = block_on(async move { store.list(Some(&path)).try_collect::<Vec<_>>().await })
            .map_err(self.error(relative_prefix))?;
        Ok(metas
            .into_iter()
            .map(|m| Listed {
                relative: self.relative(&m.location).to_string(),
                size: m.size,
                modified: SystemTime::from(m.last_modified),
            })
            .collect())
    }

    /// Reads the footer of a Parquet object of `size` bytes: two ranged reads, no scan.
    pub fn parquet_footer(
        &self,
        relative: &str,
        size: u64,
    ) -> Result<parquet::file::metadata::ParquetMetaData, IngestError> {
        let bad = |reason: String| IngestError::Ledger {
            path: format!("{}/{relative}", self.url()).into(),
            reason,
        };
        if size < 12 {
            return Err(bad(format!("{size} bytes is too short for Parquet")));
        }
        let (store, path) = (self.store(), self.path(relative)?);
        let tail = {
            let (store, path) = (Arc::clone(&store), path.clone());
            block_on(async move { store.get_range(&path, size - 8..size).await })
                .map_err(self.error(relative))?
        };
        if &tail[4..] != b"PAR1" {
            return Err(bad("no Parquet footer".into()));
        }
        let length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if length + 8 > size {
            return Err(bad(format!("footer of {length} bytes exceeds the file")));
        }
        let footer =
            block_on(async move { store.get_range(&path, size - 8 - length..size - 8).await })
                .map_err(self.error(relative))?;
        parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
            .map_err(|e| bad(e.to_string()))
    }

    /// Downloads an object to a local file, streaming.
    pub fn download(&self, relative: &str, local: &Path) -> Result<(), IngestError> {
        let (store, path) = (self.store(), self.path(relative)?);
        let local = local.to_path_buf();
        let what = format!("{}/{relative}", self.url());
        block_on(async move {
            let io_error = |source: std::io::Error| IngestError::Warehouse {
                path: local.clone(),
                source,
            };
            let mut stream = store
                .get(&path)
                .await
                .map_err(|source| IngestError::Store {
                    what: what.clone(),
                    source,
                })?
                .into_stream();
            let mut file = tokio::fs::File::create(&local).await.map_err(io_error)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| IngestError::Store {
                    what: what.clone(),
                    source,
                })?;
                file.write_all(&chunk).await.map_err(io_error)?;
            }
            file.flush().await.map_err(io_error)
        })
    }

    /// Writes an object, replacing any.
    pub fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), IngestError> {
        let (store, path) = (self.store(), self.path(relative)?);
        block_on(async move { store.put(&path, PutPayload::from(bytes)).await })
            .map(|_| ())
            .map_err(self.error(relative))
    }

    /// Reads many objects at once; missing ones are `None`.
    pub fn get_many(&self, relatives: &[String]) -> Result<Vec<Option<Bytes>>, IngestError> {
        let paths = relatives
            .iter()
            .map(|r| self.path(r))
            .collect::<Result<Vec<_>, _>>()?;
        let store = self.store();
        let results = block_on(async move {
            futures::stream::iter(paths)
                .map(|path| {
                    let store = Arc::clone(&store);
                    async move {
                        match store.get(&path).await {
                            Ok(r) => r.bytes().await.map(Some),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        }
                    }
                })
                .buffered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await
        });
        results
            .into_iter()
            .zip(relatives)
            .map(|(r, rel)| r.map_err(self.error(rel)))
            .collect()
    }

    /// Uploads local files to the given keys, several at a time; large files in parts.
    pub fn upload(&self, files: Vec<(std::path::PathBuf, String)>) -> Result<(), IngestError> {
        let jobs = files
            .into_iter()
            .map(|(local, rel)| Ok((local, self.path(&rel)?, rel)))
            .collect::<Result<Vec<_>, IngestError>>()?;
        let store = self.store();
        let url = self.url();
        block_on(async move {
            futures::stream::iter(jobs)
                .map(|(local, path, rel)| {
                    let store = Arc::clone(&store);
                    let what = format!("{url}/{rel}");
                    async move { upload_file(store, &local, path, what).await }
                })
                .buffer_unordered(CONCURRENCY / 2)
                .try_collect::<Vec<()>>()
                .await
        })?;
        Ok(())
    }

    /// Copies objects (`from`, `to`) within the warehouse; a missing source is skipped (a
    /// concurrent recovery published it first). Returns how many were copied.
    pub fn copy_many(&self, pairs: Vec<(String, String)>) -> Result<usize, IngestError> {
        let jobs = pairs
            .into_iter()
            .map(|(from, to)| Ok((self.path(&from)?, self.path(&to)?, from)))
            .collect::<Result<Vec<_>, IngestError>>()?;
        let store = self.store();
        let url = self.url();
        let copied = block_on(async move {
            futures::stream::iter(jobs)
                .map(|(from, to, rel)| {
                    let store = Arc::clone(&store);
                    let what = format!("{url}/{rel}");
                    async move {
                        match store.copy(&from, &to).await {
                            Ok(()) => Ok(1),
                            Err(object_store::Error::NotFound { .. }) => Ok(0),
                            Err(source) => Err(IngestError::Store { what, source }),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .try_fold(0usize, |n, c| async move { Ok(n + c) })
                .await
        })?;
        Ok(copied)
    }

    /// Deletes objects; already missing ones are fine.
    pub fn delete_many(&self, relatives: Vec<String>) -> Result<(), IngestError> {
        let jobs = relatives
            .into_iter()
            .map(|rel| Ok((self.path(&rel)?, rel)))
            .collect::<Result<Vec<_>, IngestError>>()?;
        let store = self.store();
        let url = self.url();
        block_on(async move {
            futures::stream::iter(jobs)
                .map(|(path, rel)| {
                    let store = Arc::clone(&store);
                    let what = format!("{url}/{rel}");
                    async move {
                        match store.delete(&path).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                            Err(source) => Err(IngestError::Store { what, source }),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
        })?;
        Ok(())
    }

    /// Takes the lease object at `relative`, waiting while someone else holds it. A lease
    /// older than `ttl` belongs to a writer that died: it is taken over with a conditional
    /// write on its ETag, so two writers can never both take over the same stale lease.
    pub fn acquire_lease(&self, relative: &str, ttl: Duration) -> Result<Lease, IngestError> {
        let path = self.path(relative)?;
        let store = self.store();
        let owner = format!(
            "{{\"pid\":{},\"host\":{:?}}}",
            std::process::id(),
            std::env::var("HOSTNAME").unwrap_or_default()
        );
        let what = format!("{}/{relative}", self.url());
        let etag = block_on(async move {
            let mut pause = Duration::from_millis(25);
            loop {
                let body = PutPayload::from(owner.clone().into_bytes());
                match store
                    .put_opts(&path, body, PutOptions::from(PutMode::Create))
                    .await
                {
                    Ok(put) => return Ok(put.e_tag),
                    Err(object_store::Error::AlreadyExists { .. }) => {}
                    Err(source) => return Err(IngestError::Store { what, source }),
                }
                match store.head(&path).await {
                    Ok(held) => {
                        let age = SystemTime::now()
                            .duration_since(SystemTime::from(held.last_modified))
                            .unwrap_or_default();
                        if age > ttl {
                            let mode = PutMode::Update(UpdateVersion {
                                e_tag: held.e_tag.clone(),
                                version: held.version.clone(),
                            });
                            let body = PutPayload::from(owner.clone().into_bytes());
                            match store.put_opts(&path, body, PutOptions::from(mode)).await {
                                Ok(put) => {
                                    tracing::warn!(lease = %what, age_s = age.as_secs(), "took over a lease left by a writer that stopped");
                                    return Ok(put.e_tag);
                                }
                                Err(
                                    object_store::Error::Precondition { .. }
                                    | object_store::Error::NotFound { .. },
                                ) => continue,
                                Err(source) => return Err(IngestError::Store { what, source }),
                            }
                        }
                    }
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(source) => return Err(IngestError::Store { what, source }),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        })?;
        Ok(Lease {
            remote: self.clone(),
            relative: relative.to_string(),
            etag,
        })
    }
}

async fn upload_file(
    store: Arc<dyn ObjectStore>,
    local: &Path,
    path: ObjectPath,
    what: String,
) -> Result<(), IngestError> {
    let io_error = |source: std::io::Error| IngestError::Warehouse {
        path: local.to_path_buf(),
        source,
    };
    let size = tokio::fs::metadata(local).await.map_err(io_error)?.len();
    if size <= SINGLE_PUT_BYTES {
        let bytes = tokio::fs::read(local).await.map_err(io_error)?;
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|source| IngestError::Store { what, source })?;
        return Ok(());
    }
    let mut file = tokio::fs::File::open(local).await.map_err(io_error)?;
    let mut writer = object_store::buffered::BufWriter::new(store, path);
    if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
        let _ = writer.abort().await;
        return Err(IngestError::Store {
            what,
            source: object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            },
        });
    }
    writer.shutdown().await.map_err(|e| IngestError::Store {
        what,
        source: object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        },
    })
}

/// A held lease; released (deleted, if still ours) on drop.
pub struct Lease {
    remote: Remote,
    relative: String,
    etag: Option<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Ok(path) = self.remote.path(&self.relative) else {
            return;
        };
        let store = self.remote.store();
        let etag = self.etag.clone();
        let released = block_on(async move {
            // A lease taken over after we stalled past its ttl is no longer ours to delete.
            match store.head(&path).await {
                Ok(held) if etag.is_none() || held.e_tag == etag => store.delete(&path).await,
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        });
        if let Err(e) = released {
            tracing::warn!(lease = %self.relative, error = %e, "could not release a lease; it expires on its own");
        }
    }
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
    }
}
