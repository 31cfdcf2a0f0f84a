"""The report stage: cost table from benchmark files, rule graph, human summary page."""
