//! Where an object store is and how to sign in to it: an `s3://` URL, an
//! endpoint, a region and credentials, from the caller or the standard
//! `AWS_*` environment variables. Credentials are [`Secret`]s.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// An S3-compatible object store for recordings: `s3://BUCKET/PREFIX`,
/// with an endpoint (any S3-compatible server; default: AWS), a region
/// (default `us-east-1`) and credentials (default: the provider chain of
/// the AWS environment, e.g. an instance role).
#[derive(Clone, Debug, Default)]
pub struct ObjectStoreConfig {
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub url: String,
    /// `http(s)://HOST:PORT` of an S3-compatible server; plain `http://`
    /// is allowed when named here.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret<String>>,
    pub session_token: Option<Secret<String>>,
}

/// The environment variables [`ObjectStoreConfig::from_env`] reads, in the
/// order tried for each setting.
pub const ENDPOINT_VARS: [&str; 2] = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"];
/// See [`ENDPOINT_VARS`].
pub const REGION_VARS: [&str; 2] = ["AWS_REGION", "AWS_DEFAULT_REGION"];

impl ObjectStoreConfig {
    /// `url` with the endpoint, region and credentials of the standard AWS
    /// variables (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_REGION` or
    /// `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`); set fields afterwards to override them.
    pub fn from_env(url: &str) -> ObjectStoreConfig {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        ObjectStoreConfig {
            url: url.to_string(),
            endpoint: var(&ENDPOINT_VARS),
            region: var(&REGION_VARS),
            access_key_id: var(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: var(&["AWS_SECRET_ACCESS_KEY"]).map(Secret::new),
            session_token: var(&["AWS_SESSION_TOKEN"]).map(Secret::new),
        }
    }

    /// The bucket and the prefix (no leading or trailing slash) of the URL;
    /// the error names the URL and what is wrong with it.
    pub fn bucket_and_prefix(&self) -> Result<(String, String)> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "recording store `{}`: {why} (expected s3://BUCKET or s3://BUCKET/PREFIX)",
                self.url
            ))
        };
        let url = url::Url::parse(&self.url).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "s3" {
            return Err(bad(&format!("the scheme `{}` is not s3", url.scheme())));
        }
        let bucket = url.host_str().unwrap_or_default();
        if bucket.is_empty() {
            return Err(bad("no bucket"));
        }
        if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
            return Err(bad(
                "credentials and ports do not go in the URL; name the endpoint and credentials apart",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment is not allowed"));
        }
        let prefix = url.path().trim_matches('/').to_string();
        if prefix.split('/').any(|s| s == "." || s == "..") || prefix.contains("//") {
            return Err(bad("the prefix has an empty, `.` or `..` part"));
        }
        Ok((bucket.to_string(), prefix))
    }

    /// The URL and endpoint, for messages (never the credentials).
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("{} at {e}", self.url),
            None => self.url.clone(),
        }
    }

    /// The S3 client and the prefix. Requests time out after 10 s and are
    /// retried for at most 10 s: the uploader retries on its own, with
    /// backoff, for as long as the store is down.
    pub(crate) fn build(&self) -> Result<(Arc<dyn ObjectStore>, String)> {
        let (bucket, prefix) = self.bucket_and_prefix()?;
        let mut client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10));
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(self.region.clone().unwrap_or_else(|| "us-east-1".into()))
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 3,
                retry_timeout: Duration::from_secs(10),
            });
        if let Some(endpoint) = &self.endpoint {
            let parsed = url::Url::parse(endpoint).map_err(|e| {
                Error::invalid(format!("recording store endpoint `{endpoint}`: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(Error::invalid(format!(
                    "recording store endpoint `{endpoint}` must be http(s)://HOST[:PORT]"
                )));
            }
            client = client.with_allow_http(parsed.scheme() == "http");
            // S3-compatible servers are reached path-style.
            b = b
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(id) = &self.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(secret) = &self.secret_access_key {
            b = b.with_secret_access_key(secret.expose());
        }
        if let Some(token) = &self.session_token {
            b = b.with_token(token.expose());
        }
        let store = b
            .with_client_options(client)
            .build()
            .map_err(|e| Error::invalid(format!("recording store {}: {e}", self.describe())))?;
        Ok((Arc::new(store), prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> std::result::Result<(String, String), String> {
        ObjectStoreConfig {
            url: url.into(),
            ..ObjectStoreConfig::default()
        }
        .bucket_and_prefix()
        .map_err(|e| e.message().to_string())
    }

    #[test]
    fn urls() {
        assert_eq!(parse("s3://rec"), Ok(("rec".into(), String::new())));
        assert_eq!(parse("s3://rec/a/b/"), Ok(("rec".into(), "a/b".into())));
        for (url, says) in [
            ("rec/a", "relative URL"),
            ("https://rec/a", "the scheme `https` is not s3"),
            ("s3:///a", "no bucket"),
            ("s3://key:secret@rec/a", "credentials and ports"),
            ("s3://rec:9000/a", "credentials and ports"),
            ("s3://rec/a?x=1", "query"),
            ("s3://rec/a//b", "empty"),
        ] {
            let e = parse(url).expect_err(url);
            assert!(e.contains(url) && e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn endpoint_checked_and_secrets_never_printed() {
        let mut c = ObjectStoreConfig {
            url: "s3://rec/p".into(),
            endpoint: Some("ftp://127.0.0.1:1".into()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some(Secret::new("hunter2".into())),
            ..ObjectStoreConfig::default()
        };
        let e = c.build().expect_err("ftp refused");
        assert!(e.message().contains("ftp://127.0.0.1:1"), "{e}");
        c.endpoint = Some("http://127.0.0.1:1".into());
        assert!(c.build().is_ok());
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.describe(), "s3://rec/p at http://127.0.0.1:1");
    }
}
