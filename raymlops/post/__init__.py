"""The post-search layer: the summary and plots on the parent run, test-set evaluation, and the Model Registry."""
