//! The object store queries read the data dir through: the local file system, except that a
//! file a compaction replaced after a query listed it is read from the retired folder (where it
//! stays until no query can still read it).

use std::{fmt, ops::Range, path::Path as FsPath};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, local::LocalFileSystem, path::Path,
};
use futures::stream::BoxStream;
use wiretrace_storage::paths::RETIRED_DIR;

/// Local files, with the retired folder of one data dir as fallback for its files.
#[derive(Debug)]
pub struct DataDirFiles {
    local: LocalFileSystem,
    /// `<data dir>/` as an object path.
    live: String,
}

impl DataDirFiles {
    /// Files of the (canonical) `data_dir`.
    pub fn new(data_dir: &FsPath) -> object_store::Result<Self> {
        Ok(Self {
            local: LocalFileSystem::new(),
            live: format!("{}/", Path::from_filesystem_path(data_dir)?),
        })
    }

    /// Where `location` is kept once retired, if it is a file of the data dir.
    fn retired(&self, location: &Path) -> Option<Path> {
        let rest = location.as_ref().strip_prefix(&self.live)?;
        (!rest.starts_with(RETIRED_DIR))
            .then(|| Path::from(format!("{}{RETIRED_DIR}/{rest}", self.live)))
    }
}

impl fmt::Display for DataDirFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataDirFiles({})", self.live)
    }
}

/// Runs `$call` on `$location`, then on its retired path when it is not found.
macro_rules! with_fallback {
    ($self:ident, $location:ident, |$loc:ident| $call:expr) => {{
        let $loc = $location;
        match $call {
            Err(object_store::Error::NotFound { path, source }) => match $self.retired($location) {
                Some(retired) => {
                    let $loc = &retired;
                    $call
                }
                None => Err(object_store::Error::NotFound { path, source }),
            },
            other => other,
        }
    }};
}

#[async_trait]
impl ObjectStore for DataDirFiles {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.local.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.local.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        with_fallback!(self, location, |loc| self
            .local
            .get_opts(loc, options.clone())
            .await)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        with_fallback!(self, location, |loc| self
            .local
            .get_ranges(loc, ranges)
            .await)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.local.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.local.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.local.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.local.copy_opts(from, to, options).await
    }
}
