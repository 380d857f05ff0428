"""Shop search on top of relevance: facets, sort, variant collapse and stable pages (issue 23)."""
