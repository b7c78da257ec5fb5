//! Reading the rows of one data file of a dataset table, by position: the change log refers
//! to appended files instead of copying their rows (see `changelog`'s module docs).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryFutureExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// How many rows the data file at `path` (as a Delta `add` action names it) holds, from its
/// footer.
pub async fn file_rows(store: &Arc<dyn ObjectStore>, path: &str) -> Result<i64> {
    let reader = StoreReader::open(store, path)?;
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    Ok(builder.metadata().file_metadata().num_rows())
}

/// `take` rows of the data file at `path`, after skipping its first `skip`. Only the row
/// groups and pages holding them are decoded (the page index says where pages start).
pub async fn read_rows(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    skip: i64,
    take: i64,
) -> Result<Vec<RecordBatch>> {
    let count = |n: i64| usize::try_from(n).map_err(|e| ParquetError::General(e.to_string()));
    let selection = RowSelection::from(vec![
        RowSelector::skip(count(skip)?),
        RowSelector::select(count(take)?),
    ]);
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let mut stream =
        ParquetRecordBatchStreamBuilder::new_with_options(StoreReader::open(store, path)?, options)
            .await?
            .with_row_selection(selection)
            .with_batch_size(8192)
            .build()?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch?);
    }
    Ok(batches)
}

/// An `AsyncFileReader` over one object (as in parquet's `object_store` example; the
/// crate's own `ParquetObjectReader` is deprecated).
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl StoreReader {
    /// Delta writes `add` paths URL-encoded and relative to the table's root, which is
    /// where the table's store is rooted.
    fn open(store: &Arc<dyn ObjectStore>, path: &str) -> Result<Self> {
        let path = Path::from_url_path(path).map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(StoreReader {
            store: store.clone(),
            path,
        })
    }
}

fn store_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(store_error)
            .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(store_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Reads the footer without knowing the file's size first.
impl MetadataSuffixFetch for &mut StoreReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let response = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(store_error)?;
            response.bytes().await.map_err(store_error)
        }
        .boxed()
    }
}
