"""Running it: health and metrics over HTTP, and leadership of the jobs one instance runs."""
