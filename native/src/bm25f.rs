//! SQLite FTS5's `bm25()` (ext/fts5/fts5_aux.c, fts5Bm25Function) as a tantivy `Query`.
//!
//! FTS5 scores a row as one document: for each query term i,
//!   w_i   = sum over the queried columns c of weight[c] * tf(i, c)
//!   score += idf_i * w_i * (k1 + 1) / (w_i + k1 * (1 - b + b * nTok / avgdl))
//! with k1 = 1.2, b = 0.75, nTok the row's token count over ALL its columns (unweighted),
//! avgdl = all tokens / rows, idf_i = ln((N - nHit_i + 0.5) / (nHit_i + 0.5)) floored at 1e-6
//! when <= 0, and nHit_i the rows holding term i in a queried column.
//!
//! Here a "row" is a tantivy document, the columns are per-field postings (with freqs) and
//! nTok is the sum of the documents' decoded fieldnorms. tantivy stores a fieldnorm in one byte:
//! exact up to 40 tokens, rounded down past that (42, 44, ... then coarser), so nTok is
//! approximate for long fields, where FTS5 counts exactly.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::SegmentId;
use tantivy::postings::{Postings, SegmentPostings, TermInfo};
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, Searcher, SegmentReader, TantivyError, Term, TERMINATED};

/// A top k below this is collected with MaxScore pruning, a deeper one by windows.
const MAX_SCORE_BELOW: usize = 50;

pub const K1: f64 = 1.2;
pub const B: f64 = 0.75;
const IDF_FLOOR: f64 = 1e-6;

/// The corpus statistics FTS5 reads once per query.
#[derive(Clone, Debug)]
pub struct Stats {
    /// N: live documents.
    pub num_docs: u64,
    /// avgdl: tokens of all length fields / documents. tantivy's per-field token totals include
    /// deleted documents until their segment is merged, so the documents counted here do too
    /// (`max_doc`): the average of what the totals cover.
    pub avgdl: f64,
    /// nHit per term: live documents holding it in a weighted field.
    pub hits: Vec<u64>,
    /// Per segment, the term dictionary entry of each (term, weighted field), term-major: the
    /// scorers open their postings from these instead of looking every term up again.
    infos: HashMap<SegmentId, Arc<Vec<Option<TermInfo>>>>,
}

#[derive(Clone)]
pub struct Bm25fQuery {
    terms: Vec<String>,
    weighted: Vec<(Field, f64)>,
    length_fields: Vec<Field>,
    /// How many documents the collector keeps (picks how an unfiltered top k is collected).
    top_k: Option<usize>,
}

impl fmt::Debug for Bm25fQuery {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Bm25f(terms={:?}, fields={:?})", self.terms, self.weighted)
    }
}

impl Bm25fQuery {
    /// `weighted`: the fields searched and their weights (weights <= 0 are left out, as FTS5's
    /// column filter leaves them out); `length_fields`: every field counted in nTok.
    pub fn new(terms: Vec<String>, weighted: Vec<(Field, f64)>, length_fields: Vec<Field>) -> Self {
        let weighted = weighted.into_iter().filter(|(_, w)| *w > 0.0).collect();
        Bm25fQuery { terms, weighted, length_fields, top_k: None }
    }

    /// The collector keeps the `k` best: a hint for how to collect them, never what they are.
    pub fn for_top(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    fn term(&self, field: Field, i: usize) -> Term {
        Term::from_field_text(field, &self.terms[i])
    }

    /// N, avgdl and nHit over every segment of `searcher` (one pass over the terms' postings).
    pub fn stats(&self, searcher: &Searcher) -> tantivy::Result<Stats> {
        let (mut num_docs, mut max_docs, mut tokens) = (0u64, 0u64, 0u64);
        let mut hits = vec![0u64; self.terms.len()];
        let mut infos = HashMap::new();
        for reader in searcher.segment_readers() {
            num_docs += u64::from(reader.num_docs());
            max_docs += u64::from(reader.max_doc());
            for &field in &self.length_fields {
                tokens += reader.inverted_index(field)?.total_num_tokens();
            }
            let found = self.term_infos(reader)?;
            for (i, hit) in hits.iter_mut().enumerate() {
                *hit += self.segment_hits(reader, &found, i)?;
            }
            infos.insert(reader.segment_id(), Arc::new(found));
        }
        let avgdl = if max_docs > 0 && tokens > 0 { tokens as f64 / max_docs as f64 } else { 1.0 };
        Ok(Stats { num_docs, avgdl, hits, infos })
    }

    /// The term dictionary entry of each (term, weighted field) in one segment, term-major.
    fn term_infos(&self, reader: &SegmentReader) -> tantivy::Result<Vec<Option<TermInfo>>> {
        let mut out = Vec::with_capacity(self.terms.len() * self.weighted.len());
        for i in 0..self.terms.len() {
            for &(field, _) in &self.weighted {
                out.push(reader.inverted_index(field)?.get_term_info(&self.term(field, i))?);
            }
        }
        Ok(out)
    }

    /// Live documents of one segment holding term `i` in any weighted field.
    fn segment_hits(&self, reader: &SegmentReader, infos: &[Option<TermInfo>], i: usize) -> tantivy::Result<u64> {
        let mut lists = Vec::new();
        for (f, &(field, _)) in self.weighted.iter().enumerate() {
            if let Some(info) = &infos[i * self.weighted.len() + f] {
                let index = reader.inverted_index(field)?;
                lists.push(index.read_postings_from_terminfo(info, IndexRecordOption::Basic)?);
            }
        }
        let alive = reader.alive_bitset();
        if lists.len() == 1 {
            let p = &lists[0];
            return Ok(u64::from(match alive {
                None => p.doc_freq(),
                Some(bits) => p.doc_freq_given_deletes(bits),
            }));
        }
        if lists.is_empty() {
            return Ok(0);
        }
        // A document holding the term in several fields counts once: a bitset of the union.
        let mut seen = vec![0u64; (reader.max_doc() as usize).div_ceil(64)];
        let mut count = 0u64;
        for mut p in lists {
            let mut doc = p.doc();
            while doc != TERMINATED {
                let (word, bit) = ((doc / 64) as usize, 1u64 << (doc % 64));
                if seen[word] & bit == 0 {
                    seen[word] |= bit;
                    if alive.is_none_or(|bits| bits.is_alive(doc)) {
                        count += 1;
                    }
                }
                doc = p.advance();
            }
        }
        Ok(count)
    }
}

impl Query for Bm25fQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let scored = match enable_scoring.searcher() {
            Some(searcher) if enable_scoring.is_scoring_enabled() => {
                let stats = self.stats(searcher)?;
                let n = stats.num_docs as f64;
                let idf = stats.hits.iter().map(|&h| idf(n, h as f64)).collect();
                Some((idf, stats.avgdl, stats.infos))
            }
            _ => None, // matching only (a count): no statistics needed
        };
        let (idf, avgdl, infos) = scored.unwrap_or_else(|| (vec![0.0; self.terms.len()], 1.0, HashMap::new()));
        Ok(Box::new(Bm25fWeight { query: self.clone(), idf, avgdl, infos }))
    }
}

/// FTS5's IDF: a term in more than half the documents gets (almost) none.
pub fn idf(n: f64, hits: f64) -> f64 {
    let v = ((n - hits + 0.5) / (hits + 0.5)).ln();
    if v <= 0.0 {
        IDF_FLOOR
    } else {
        v
    }
}

struct Bm25fWeight {
    query: Bm25fQuery,
    idf: Vec<f64>,
    avgdl: f64,
    infos: HashMap<SegmentId, Arc<Vec<Option<TermInfo>>>>,
}

impl Bm25fWeight {
    fn bm25f_scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Option<Bm25fScorer>> {
        let infos = match self.infos.get(&reader.segment_id()) {
            Some(found) => found.clone(),
            None => Arc::new(self.query.term_infos(reader)?), // a segment the statistics did not see
        };
        let mut lists = Vec::new();
        for i in 0..self.query.terms.len() {
            for (f, &(field, weight)) in self.query.weighted.iter().enumerate() {
                if let Some(info) = &infos[i * self.query.weighted.len() + f] {
                    let index = reader.inverted_index(field)?;
                    let postings = index.read_postings_from_terminfo(info, IndexRecordOption::WithFreqs)?;
                    lists.push(TermField { postings, term: i, weight });
                }
            }
        }
        if lists.is_empty() {
            return Ok(None);
        }
        let mut norms = Vec::with_capacity(self.query.length_fields.len());
        for &field in &self.query.length_fields {
            norms.push(reader.get_fieldnorms_reader(field)?);
        }
        let mut scorer = Bm25fScorer {
            cost: lists.iter().map(|l| u64::from(l.postings.doc_freq())).sum(),
            lists,
            idf: self.idf.clone(),
            norms,
            avgdl: self.avgdl,
            boost: f64::from(boost),
            freqs: vec![0.0; self.idf.len()],
            doc: 0,
        };
        scorer.doc = scorer.min_doc();
        Ok(Some(scorer))
    }
}

impl Weight for Bm25fWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(match self.bm25f_scorer(reader, boost)? {
            Some(s) => Box::new(s),
            None => Box::new(EmptyScorer),
        })
    }

    /// Top-k collection (TopDocs) without filters: MaxScore pruning on the static bound of each
    /// term, idf * (k1 + 1) (its contribution as its weighted frequency grows without end), for
    /// a short top k; window by window for a deep one.
    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        if let Some(mut scorer) = self.bm25f_scorer(reader, 1.0)? {
            // Measured at 100k products, 2 terms: MaxScore is faster for a short top k (its
            // threshold soon passes a term's bound), windows for a deep one (k = 100: -17%).
            if self.query.top_k.is_some_and(|k| k < MAX_SCORE_BELOW) {
                scorer.max_score(threshold, callback);
            } else {
                scorer.windowed(threshold, callback);
            }
        }
        Ok(())
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.doc() > doc || scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!("document #{doc} does not match")));
        }
        Ok(Explanation::new("BM25F (FTS5 bm25)", scorer.score()))
    }
}

struct TermField {
    postings: SegmentPostings,
    term: usize,
    weight: f64,
}

/// The union of every (term, field) posting list, scored as FTS5 scores a row. As a DocSet
/// (inside a BooleanQuery with filters) it scores every matching document it is moved to; an
/// unfiltered top k goes through `max_score` or `windowed` instead.
pub struct Bm25fScorer {
    lists: Vec<TermField>,
    idf: Vec<f64>,
    norms: Vec<FieldNormReader>,
    avgdl: f64,
    boost: f64,
    freqs: Vec<f64>,
    doc: DocId,
    cost: u64,
}

impl Bm25fScorer {
    fn min_doc(&self) -> DocId {
        self.lists.iter().map(|l| l.postings.doc()).min().unwrap_or(TERMINATED)
    }
}

impl Bm25fScorer {
    /// MaxScore (Turtle and Flood, 1995): with the terms in ascending order of their bound, the
    /// longest prefix whose bounds add up to at most the threshold is "non-essential": a document
    /// holding only those terms cannot enter the top k, so candidates come from the other
    /// terms' lists alone and the non-essential lists are only sought to them.
    fn max_score(&mut self, mut threshold: Score, callback: &mut dyn FnMut(DocId, Score) -> Score) {
        // A bound a hair above the exact one: scores are rounded to f32 when compared.
        let bounds: Vec<f64> = self.idf.iter().map(|idf| idf * (K1 + 1.0) * self.boost * (1.0 + 1e-6)).collect();
        let mut order: Vec<usize> = (0..bounds.len()).collect();
        order.sort_by(|&a, &b| bounds[a].total_cmp(&bounds[b]));
        let mut rank = vec![0usize; bounds.len()]; // term -> its position in `order`
        for (pos, &t) in order.iter().enumerate() {
            rank[t] = pos;
        }
        // prefix[p]: the bounds of the p terms with the smallest ones
        let mut prefix = vec![0.0f64; order.len() + 1];
        for (p, &t) in order.iter().enumerate() {
            prefix[p + 1] = prefix[p] + bounds[t];
        }
        let essential_from = |threshold: Score| prefix.iter().rposition(|&s| s <= f64::from(threshold)).unwrap_or(0);
        let mut first = essential_from(threshold);
        loop {
            if first >= order.len() {
                return; // even every term together cannot beat the threshold
            }
            let candidate = self
                .lists
                .iter()
                .filter(|l| rank[l.term] >= first)
                .map(|l| l.postings.doc())
                .min()
                .unwrap_or(TERMINATED);
            if candidate == TERMINATED {
                return;
            }
            for l in &mut self.lists {
                if rank[l.term] < first && l.postings.doc() < candidate {
                    l.postings.seek(candidate);
                }
            }
            self.doc = candidate;
            let score = self.score();
            if score > threshold {
                threshold = callback(candidate, score);
                first = essential_from(threshold);
            }
            for l in &mut self.lists {
                if l.postings.doc() == candidate {
                    l.postings.advance();
                }
            }
        }
    }
}

impl Bm25fScorer {
    /// Exhaustive scoring a window of documents at a time (term at a time inside it): each
    /// posting list adds its weighted frequencies to the window's slots, then every document
    /// seen in the window is scored once. Same sums in the same order as `score`.
    fn windowed(&mut self, mut threshold: Score, callback: &mut dyn FnMut(DocId, Score) -> Score) {
        let terms = self.idf.len();
        // 4096 documents a window, fewer with many terms (the slots stay within 512 KiB)
        let window = ((65_536 / terms.max(1)) as u32).clamp(64, 4096) / 64 * 64;
        let mut slots = vec![0.0f64; window as usize * terms];
        let mut seen = vec![0u64; (window / 64) as usize];
        let mut base = self.min_doc();
        while base != TERMINATED {
            let end = base + window;
            for l in &mut self.lists {
                let mut d = l.postings.doc();
                while d < end {
                    let off = (d - base) as usize;
                    slots[off * terms + l.term] += l.weight * f64::from(l.postings.term_freq());
                    seen[off / 64] |= 1u64 << (off % 64);
                    d = l.postings.advance();
                }
            }
            for (w, word) in seen.iter_mut().enumerate() {
                let mut bits = *word;
                *word = 0;
                while bits != 0 {
                    let off = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let doc = base + off as u32;
                    let ntok: u32 = self.norms.iter().map(|n| n.fieldnorm(doc)).sum();
                    let k = K1 * (1.0 - B + B * f64::from(ntok) / self.avgdl);
                    let mut score = 0.0;
                    for (f, idf) in slots[off * terms..(off + 1) * terms].iter_mut().zip(&self.idf) {
                        if *f > 0.0 {
                            score += idf * (*f * (K1 + 1.0)) / (*f + k);
                            *f = 0.0;
                        }
                    }
                    let score = (score * self.boost) as Score;
                    if score > threshold {
                        threshold = callback(doc, score);
                    }
                }
            }
            base = self.min_doc();
        }
        self.doc = TERMINATED;
    }
}

impl DocSet for Bm25fScorer {
    fn advance(&mut self) -> DocId {
        let doc = self.doc;
        if doc == TERMINATED {
            return TERMINATED;
        }
        let mut next = TERMINATED;
        for l in &mut self.lists {
            let mut d = l.postings.doc();
            if d == doc {
                d = l.postings.advance();
            }
            next = next.min(d);
        }
        self.doc = next;
        next
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        let mut next = TERMINATED;
        for l in &mut self.lists {
            let mut d = l.postings.doc();
            if d < target {
                d = l.postings.seek(target);
            }
            next = next.min(d);
        }
        self.doc = next;
        next
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.cost.min(u64::from(u32::MAX)) as u32
    }

    fn cost(&self) -> u64 {
        self.cost
    }
}

impl Scorer for Bm25fScorer {
    fn score(&mut self) -> Score {
        let doc = self.doc;
        self.freqs.iter_mut().for_each(|f| *f = 0.0);
        for l in &self.lists {
            if l.postings.doc() == doc {
                self.freqs[l.term] += l.weight * f64::from(l.postings.term_freq());
            }
        }
        let ntok: u32 = self.norms.iter().map(|n| n.fieldnorm(doc)).sum();
        let k = K1 * (1.0 - B + B * f64::from(ntok) / self.avgdl);
        let mut score = 0.0;
        for (f, idf) in self.freqs.iter().zip(&self.idf) {
            if *f > 0.0 {
                score += idf * (f * (K1 + 1.0)) / (f + k);
            }
        }
        (score * self.boost) as Score
    }
}
