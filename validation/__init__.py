"""tumblebench.validation: scoring against the truth, the end-to-end pipeline and the command line."""
