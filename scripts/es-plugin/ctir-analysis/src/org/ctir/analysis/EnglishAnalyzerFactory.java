package org.ctir.analysis;

import org.apache.lucene.analysis.Analyzer;
import org.apache.lucene.analysis.en.EnglishAnalyzer;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.AnalyzerFactory;

/**
 * The {@code english} analyzer for Elasticsearch distributions without the analysis-common
 * module (the Maven Central test distribution): Lucene's {@link EnglishAnalyzer} - standard
 * tokenizer, English possessives, lowercase, the English stop words, Porter stemming - which
 * is what analysis-common's {@code english} analyzer builds with its defaults. Installed by
 * scripts/elasticsearch-local only; never on a distribution that has analysis-common.
 */
@NamedComponent("english")
public class EnglishAnalyzerFactory implements AnalyzerFactory {
    @Override
    public Analyzer create() {
        return new EnglishAnalyzer();
    }
}
