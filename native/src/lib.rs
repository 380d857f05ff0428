//! ctir_es_native: FTS5's BM25F over the tantivy index the embedded store keeps beside SQLite
//! (written by tantivy-py; read here with the same tantivy version).

mod bm25f;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;
use tantivy::collector::TopDocs;
use tantivy::directory::error::OpenDirectoryError;
use tantivy::query::{BooleanQuery, ConstScoreQuery, EmptyQuery, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::{Field, FieldType, IndexRecordOption, Schema};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyError, Term};

use bm25f::Bm25fQuery;

create_exception!(ctir_es_native, NativeError, PyException, "Base of this module's errors.");
create_exception!(ctir_es_native, IndexUnavailable, NativeError, "The index folder cannot be opened.");
create_exception!(ctir_es_native, IndexDamaged, NativeError, "The index files cannot be read (I/O or damaged data).");
create_exception!(ctir_es_native, BadQuery, NativeError, "A field, filter or argument the index does not have.");

fn tantivy_err(err: TantivyError) -> PyErr {
    let msg = err.to_string();
    match err {
        TantivyError::FieldNotFound(_) | TantivyError::SchemaError(_) | TantivyError::InvalidArgument(_) => {
            BadQuery::new_err(msg)
        }
        TantivyError::OpenDirectoryError(OpenDirectoryError::DoesNotExist(_))
        | TantivyError::OpenDirectoryError(OpenDirectoryError::NotADirectory(_))
        | TantivyError::LockFailure(..) => IndexUnavailable::new_err(msg),
        _ => IndexDamaged::new_err(msg),
    }
}

/// Runs `f`, turning a tantivy panic (damaged files can make it index out of bounds) into
/// `IndexDamaged` rather than pyo3's PanicException.
fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(IndexDamaged::new_err(format!("tantivy panicked: {what}")))
        }
    }
}

enum Values {
    Text(Vec<String>),
    Int(Vec<u64>),
}

/// One filter clause as plain data.
struct Filter {
    field: Field,
    occur: Occur,
    values: Values,
}

impl Filter {
    fn query(&self) -> Option<(Occur, Box<dyn Query>)> {
        let terms: Vec<Term> = match &self.values {
            Values::Text(v) => v.iter().map(|s| Term::from_field_text(self.field, s)).collect(),
            Values::Int(v) => v.iter().map(|&n| Term::from_field_u64(self.field, n)).collect(),
        };
        let q: Box<dyn Query> = match terms.len() {
            0 if self.occur == Occur::MustNot => return None, // excludes nothing
            0 => Box::new(EmptyQuery),
            1 => Box::new(TermQuery::new(terms.into_iter().next()?, IndexRecordOption::Basic)),
            _ => Box::new(TermSetQuery::new(terms)),
        };
        // A filter decides membership only: score 0 leaves the BM25F score as it is.
        Some((self.occur, Box::new(ConstScoreQuery::new(q, 0.0))))
    }
}

/// A reader of one index folder: `reload()` to see new commits, `search()` to rank.
#[pyclass(frozen, module = "ctir_es_native")]
struct Reader {
    reader: IndexReader,
    schema: Schema,
    rowid: String,
    length_fields: Vec<Field>,
}

impl Reader {
    fn field(&self, name: &str) -> PyResult<Field> {
        self.schema.get_field(name).map_err(tantivy_err)
    }

    fn text_query(&self, terms: Vec<String>, weights: &[(String, f64)]) -> PyResult<Bm25fQuery> {
        let mut weighted = Vec::with_capacity(weights.len());
        for (name, w) in weights {
            weighted.push((self.field(name)?, *w));
        }
        Ok(Bm25fQuery::new(terms, weighted, self.length_fields.clone()))
    }

    fn filter(&self, field: &str, occur: &str, values: &Bound<'_, PyList>) -> PyResult<Filter> {
        let f = self.field(field)?;
        let occur = match occur {
            "must" => Occur::Must,
            "must_not" => Occur::MustNot,
            other => return Err(BadQuery::new_err(format!("unknown occur {other:?} (must, must_not)"))),
        };
        let bad = |e: PyErr| BadQuery::new_err(format!("the values of the filter on {field:?}: {e}"));
        let values = match self.schema.get_field_entry(f).field_type() {
            FieldType::U64(_) => Values::Int(values.extract().map_err(bad)?),
            FieldType::Str(_) => Values::Text(values.extract().map_err(bad)?),
            other => {
                return Err(BadQuery::new_err(format!("cannot filter on {field:?} ({:?})", other.value_type())))
            }
        };
        Ok(Filter { field: f, occur, values })
    }
}

#[pymethods]
impl Reader {
    /// `length_fields`: the fields whose tokens make a document's length (FTS5's nTok: every
    /// column of the row); `rowid`: the u64 fast field returned with each hit.
    #[new]
    #[pyo3(signature = (path, length_fields, rowid = "rowid".to_string()))]
    fn new(py: Python<'_>, path: PathBuf, length_fields: Vec<String>, rowid: String) -> PyResult<Self> {
        let (index, reader) = py.allow_threads(|| {
            guarded(|| {
                let index = Index::open_in_dir(&path).map_err(tantivy_err)?;
                let reader = index
                    .reader_builder()
                    .reload_policy(ReloadPolicy::Manual)
                    .try_into()
                    .map_err(tantivy_err)?;
                Ok((index, reader))
            })
        })?;
        let schema = index.schema();
        let mut fields = Vec::with_capacity(length_fields.len());
        for name in &length_fields {
            fields.push(schema.get_field(name).map_err(tantivy_err)?);
        }
        schema.get_field(&rowid).map_err(tantivy_err)?;
        Ok(Reader { reader, schema, rowid, length_fields: fields })
    }

    /// See the latest commit.
    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| guarded(|| self.reader.reload().map_err(tantivy_err)))
    }

    /// Live documents in the view.
    fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The `limit` best (rowid, score) for `terms` (analysed tokens) by FTS5's BM25F over
    /// `field_weights` [(field, weight)], best first, among the documents passing `filters`
    /// [(field, "must" | "must_not", values)]: a document passes a "must" filter holding any
    /// of its values (none: no document passes), a "must_not" one holding none of them.
    #[pyo3(signature = (terms, field_weights, filters = Vec::new(), limit = 10))]
    fn search(
        &self,
        py: Python<'_>,
        terms: Vec<String>,
        field_weights: Vec<(String, f64)>,
        filters: Vec<(String, String, Bound<'_, PyList>)>,
        limit: usize,
    ) -> PyResult<Vec<(u64, f32)>> {
        let text = self.text_query(terms, &field_weights)?;
        let filters = filters
            .iter()
            .map(|(f, o, v)| self.filter(f, o, v))
            .collect::<PyResult<Vec<_>>>()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        py.allow_threads(|| guarded(|| self.run(text, &filters, limit)))
    }

    /// (N, avgdl, nHit per term): the statistics one `search` reads, for checks.
    fn stats(&self, py: Python<'_>, terms: Vec<String>, field_weights: Vec<(String, f64)>) -> PyResult<(u64, f64, Vec<u64>)> {
        let text = self.text_query(terms, &field_weights)?;
        py.allow_threads(|| {
            guarded(|| {
                let s = text.stats(&self.reader.searcher()).map_err(tantivy_err)?;
                Ok((s.num_docs, s.avgdl, s.hits))
            })
        })
    }
}

impl Reader {
    fn run(&self, text: Bm25fQuery, filters: &[Filter], limit: usize) -> PyResult<Vec<(u64, f32)>> {
        let searcher = self.reader.searcher();
        let text = text.for_top(limit);
        let clauses: Vec<_> = filters.iter().filter_map(Filter::query).collect();
        let query: Box<dyn Query> = if clauses.is_empty() {
            Box::new(text)
        } else {
            let mut all: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(text))];
            all.extend(clauses);
            Box::new(BooleanQuery::new(all))
        };
        let top = searcher
            .search(query.as_ref(), &TopDocs::with_limit(limit).order_by_score())
            .map_err(tantivy_err)?;
        let mut columns = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let column = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let reader = searcher.segment_reader(addr.segment_ord);
                    e.insert(reader.fast_fields().u64(&self.rowid).map_err(tantivy_err)?)
                }
            };
            let rowid = column
                .first(addr.doc_id)
                .ok_or_else(|| IndexDamaged::new_err(format!("a document without {}", self.rowid)))?;
            out.push((rowid, score));
        }
        Ok(out)
    }
}

#[pymodule]
fn ctir_es_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Panics are caught and raised as IndexDamaged with their message (`guarded`); the default
    // hook would also print them to stderr. This hook belongs to this library's copy of std only.
    std::panic::set_hook(Box::new(|_| {}));
    m.add_class::<Reader>()?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add("IndexUnavailable", m.py().get_type::<IndexUnavailable>())?;
    m.add("IndexDamaged", m.py().get_type::<IndexDamaged>())?;
    m.add("BadQuery", m.py().get_type::<BadQuery>())?;
    m.add("K1", bm25f::K1)?;
    m.add("B", bm25f::B)?;
    Ok(())
}
